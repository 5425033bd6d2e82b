"""advance-improvement: after a decision or a finished action, move the improvement on."""

from prefect import flow

from flows.steps import (
    advance_after_decision,
    awaits_plan,
    complete_improvement,
    emit_completed,
    label_run,
    open_automatic_steps,
    plan_actions,
    run_automatic_step,
    run_name,
    send_outbox,
    settle_alternatives,
)


@flow(name="advance-improvement", flow_run_name=run_name("advance"))
async def advance_improvement(improvement_id: int) -> str:
    """Take an improvement as far as its decisions and done actions allow, then stop."""
    await label_run(improvement_id)
    outcome = await advance_after_decision(improvement_id)
    await settle_alternatives(improvement_id)  # an alternative for a customer: offer it
    if await awaits_plan(improvement_id):
        await plan_actions(improvement_id)
    for action_id in await open_automatic_steps(improvement_id):
        await run_automatic_step(action_id)
    if await complete_improvement(improvement_id):
        await emit_completed(improvement_id)
    await send_outbox()
    return outcome
