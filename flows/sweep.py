"""sweep: the scheduled safety net that makes events an optimisation, not a dependency."""

from collections import Counter

from prefect import flow, get_run_logger
from prefect.states import State

from flows.advance_improvement import advance_improvement
from flows.announce_impact import announce_impact
from flows.route_improvement import route_improvement
from flows.steps import (
    complete_improvement,
    emit_completed,
    find_due_automatic_steps,
    find_lost_decisions,
    find_ready_to_complete,
    find_unannounced,
    find_unplanned,
    find_unrouted,
    remind_and_escalate,
    run_automatic_step,
)
from models.db import utcnow
from tasks.mail import send_outbox


def _sweep_name() -> str:
    return f"sweep · {utcnow():%Y-%m-%d %H:%M}"


@flow(name="sweep", flow_run_name=_sweep_name)
async def sweep() -> dict[str, int]:
    """Remind, escalate and expire; move on whatever lost its event; send what is due."""
    summary = Counter(await remind_and_escalate())
    for improvement_id in await find_lost_decisions():
        _count(summary, "advanced", await advance_improvement(improvement_id, return_state=True))
    for improvement_id in await find_unplanned():
        _count(summary, "planned", await advance_improvement(improvement_id, return_state=True))
    for improvement_id in await find_unrouted():
        _count(summary, "routed", await route_improvement(improvement_id, return_state=True))
    for action_id in await find_due_automatic_steps():
        await run_automatic_step(action_id)
        summary["automatic_steps"] += 1
    for improvement_id in await find_ready_to_complete():
        if await complete_improvement(improvement_id):
            await emit_completed(improvement_id)
            summary["completed"] += 1
    for improvement_id in await find_unannounced():
        _count(summary, "announced", await announce_impact(improvement_id, return_state=True))
    summary.update(await send_outbox())
    get_run_logger().info("Swept: %s", dict(summary))
    return dict(summary)


def _count(summary: Counter[str], what: str, state: State) -> None:
    """One recovery failing must not stop the others: count it, and the next sweep tries again."""
    summary[what if state.is_completed() else f"{what}_failed"] += 1
