"""route-improvement: a submitted improvement goes to the colleagues with authority to decide."""

from prefect import flow

from flows.steps import (
    awaits_plan,
    label_run,
    plan_actions,
    route_to_approvers,
    run_name,
    send_outbox,
)


@flow(name="route-improvement", flow_run_name=run_name("route"))
async def route_improvement(improvement_id: int) -> int:
    """Route a submitted improvement to its approvers and email them; then wait for nobody."""
    await label_run(improvement_id)
    asked = await route_to_approvers(improvement_id)
    if await awaits_plan(improvement_id):  # a goodwill gesture within the submitter's authority
        await plan_actions(improvement_id)
    await send_outbox()
    return asked
