"""The steps the flows take: each a Prefect task that opens its own session and passes ids.

The work itself lives in tasks/*; a step only gives it a transaction, a name in the Prefect UI
and a retry policy. Results are not cached or persisted: the database is the record of what
happened, and every step is idempotent, so running one again is always safe.
"""

from collections.abc import Callable
from datetime import date
from functools import partial
from typing import Any
from uuid import UUID

from prefect import task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run
from sqlmodel import select

from improve import events
from improve.errors import IllegalTransition, ImproveError, ImprovementNotFound
from improve.settings import settings
from models import Channel, Improvement, Status
from models.db import session_scope, utcnow
from tasks import (
    approvals,
    automatic,
    decisions,
    detection,
    digest,
    escalation,
    follow_up,
    impact,
    offers,
    outbox,
    planning,
    report,
    suggestions,
    updates,
)
from tasks.escalation import EVENT_GRACE
from tasks.lifecycle import get_improvement


def worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Retry what may pass (a busy database, a dropped connection), never a refusal by the rules.

    An illegal transition is the exception: two runs for one event race, the other moved the
    improvement first, and a second look finds there is nothing left to do.
    """
    error = state.data
    return isinstance(error, IllegalTransition) or not isinstance(error, ImproveError)


step = partial(task, cache_policy=NO_CACHE, persist_result=False)
# A step that changes the database or calls out may meet a busy database or a dropped connection.
side_effect = partial(
    step, retries=3, retry_delay_seconds=[2, 10, 60], retry_condition_fn=worth_retrying
)
read = step  # a step that only looks


def _actor() -> str:
    """Who the history names for a change a flow makes: the flow itself."""
    return flow_run.get_flow_name() or "improve"


def _improvement(improvement_id: int) -> Improvement | None:
    """The improvement, or None where a missing one only means less to show."""
    with session_scope() as session:
        try:
            return get_improvement(session=session, improvement_id=improvement_id)
        except ImprovementNotFound:
            return None


# --- Names and tags that let operations read the Prefect UI -------------------------------------


def run_name(verb: str) -> Callable[[], str]:
    """A `flow_run_name` that reads like `route · IMP-42 Paperless statements`."""

    def name() -> str:
        improvement_id = flow_run.parameters.get("improvement_id")
        improvement = _improvement(improvement_id) if isinstance(improvement_id, int) else None
        title = f" {improvement.title[:60]}" if improvement else ""
        return f"{verb} · IMP-{improvement_id}{title}"

    return name


async def label_run(improvement_id: int) -> None:
    """Tag this flow run with the improvement and its category, so the UI can filter on them."""
    improvement = _improvement(improvement_id)
    tags = {f"IMP-{improvement_id}", *([str(improvement.category)] if improvement else [])}
    run_id = flow_run.get_id()
    if run_id is None:
        return
    async with get_client() as client:
        await client.update_flow_run(UUID(run_id), tags=sorted(tags | set(flow_run.get_tags())))


# --- Steps that change something ---------------------------------------------------------------


@side_effect
async def route_to_approvers(improvement_id: int) -> int:
    """Ask the colleagues whose authority covers the improvement, and queue their emails."""
    with session_scope() as session:
        requests = approvals.route_improvement(
            session=session, improvement_id=improvement_id, actor=_actor(), channel=Channel.flow
        )
        return len(requests)


@side_effect
async def advance_after_decision(improvement_id: int) -> str:
    """Take the step the decisions so far allow: wait, ask the next level, approve or reject."""
    with session_scope() as session:
        step = decisions.advance_after_decision(
            session=session, improvement_id=improvement_id, actor=_actor()
        )
        # A customer's suggestion turned down: they hear why, in the same commit as the move.
        suggestions.tell_outcome(session=session, improvement_id=improvement_id)
        return step


@side_effect
async def settle_alternatives(improvement_id: int) -> str:
    """An alternative's approval landed: offer the customer the approved ones once none waits,
    or give the case back to its owner when all were rejected."""
    with session_scope() as session:
        return offers.settle_after_decision(
            session=session, improvement_id=improvement_id, actor=_actor()
        )


@side_effect
async def settle_case(case_id: int) -> str:
    """Offer a case's approved alternatives, or give it back to its owner, once decided."""
    with session_scope() as session:
        return offers.settle_case(
            session=session, case_id=case_id, actor=_actor(), channel=Channel.sweep
        )


@side_effect
async def plan_actions(improvement_id: int) -> int:
    """Draw up the action plan from the category's playbook and email each owner their items."""
    with session_scope() as session:
        items = planning.plan_actions(
            session=session, improvement_id=improvement_id, actor=_actor()
        )
        # A customer's suggestion approved and planned: they hear it is going ahead, and by when.
        suggestions.tell_outcome(session=session, improvement_id=improvement_id)
        return len(items)


@side_effect
async def run_automatic_step(action_id: int) -> None:
    """Carry out one automatic step of the plan and mark it done."""
    with session_scope() as session:
        automatic.run_automatic_step(session=session, action_id=action_id)


@side_effect
async def complete_improvement(improvement_id: int) -> bool:
    """Record the measured result and mark the improvement completed, if its plan is done."""
    with session_scope() as session:
        return planning.complete_improvement(
            session=session, improvement_id=improvement_id, actor=_actor()
        )


@step  # no retries: events.emit never raises (a lost event is the sweep's to find)
async def emit_completed(improvement_id: int) -> None:
    """Announce the completion (after its commit), which starts announce-impact."""
    events.emit(events.COMPLETED, improvement_id=improvement_id)


@step
async def is_completed(improvement_id: int) -> bool:
    """Whether the improvement is completed: only then is there anything to announce."""
    improvement = _improvement(improvement_id)
    return improvement is not None and improvement.status == Status.completed


@side_effect
async def announce_completion(improvement_id: int) -> dict[str, int]:
    """Queue the completion notices: customers who agreed to hear, partners, the submitter."""
    with session_scope() as session:
        return impact.announce_completion(session=session, improvement_id=improvement_id)


@side_effect
async def publish_impact(improvement_id: int, told: dict[str, int]) -> None:
    """Publish the improvement's impact as a markdown artifact in the Prefect UI."""
    improvement = _improvement(improvement_id)
    if improvement is None:
        return
    await acreate_markdown_artifact(
        key=f"impact-imp-{improvement_id}",
        markdown=impact_markdown(improvement, told),
        description=f"Impact of {improvement.reference} {improvement.title}",
    )


@side_effect
async def remind_and_escalate() -> dict[str, int]:
    """Remind approvers who have not answered, escalate the long silences, expire the old."""
    with session_scope() as session:
        return escalation.remind_and_escalate(session=session, now=utcnow())


@side_effect
async def ask_again(improvement_id: int) -> bool:
    """Ask someone again where every approval request lapsed and nobody is left to ask."""
    with session_scope() as session:
        return escalation.ask_again(session=session, improvement_id=improvement_id, now=utcnow())


@side_effect
async def raise_overdue_updates() -> dict[str, int]:
    """Raise a customer_update improvement for each case whose update fell due, once, announce
    each after the commit, and tell managers of overdue updates that sat too long."""
    with session_scope() as session:
        raised = updates.raise_overdue_updates(session=session, now=utcnow())
    for improvement_id in raised:  # committed: now route-improvement may start
        events.emit(events.CASE_UPDATE_OVERDUE, improvement_id=improvement_id)
    with session_scope() as session:
        escalated = updates.escalate_overdue_updates(session=session, now=utcnow())
    return {"overdue_raised": len(raised), "overdue_escalated": escalated}


@side_effect
async def review_records() -> detection.ReviewReport:
    """Apply the service review's rules to the records and propose what they find, once each."""
    with session_scope() as session:
        return detection.review_records(session=session, now=utcnow())


@step  # no retries: events.emit never raises (a lost event is the sweep's to find)
async def emit_submitted(improvement_ids: list[int]) -> None:
    """Announce committed proposals: each starts route-improvement."""
    for improvement_id in improvement_ids:
        events.emit_submitted(
            improvement_id=improvement_id, submitter_id=None, channel=Channel.flow
        )


# --- Steps that only look ----------------------------------------------------------------------


@read
async def open_automatic_steps(improvement_id: int) -> list[int]:
    """The automatic steps of the plan that are still open."""
    with session_scope() as session:
        return automatic.open_automatic_steps(session=session, improvement_id=improvement_id)


@read
async def find_lost_decisions() -> list[int]:
    """Improvements whose decisions were recorded but never acted on (a lost event)."""
    with session_scope() as session:
        return decisions.undecided_improvements_needing_advance(
            session=session, decided_before=utcnow() - EVENT_GRACE
        )


@read
async def awaits_plan(improvement_id: int) -> bool:
    """Approved but not yet planned: just decided, within the submitter's own authority, or
    a decision whose planning failed every retry."""
    improvement = _improvement(improvement_id)
    if improvement is None or improvement.status != Status.approved:
        return False
    with session_scope() as session:  # an alternative is planned once the customer accepts it
        return not offers.awaits_customer(session=session, improvement_id=improvement_id)


def _still_in(status: Status, since: Any) -> list[int]:
    """Improvements in `status` since longer ago than an event's own flow would have taken."""
    with session_scope() as session:
        rows = session.exec(
            select(Improvement.id)
            .where(Improvement.status == status)
            .where(since < utcnow() - EVENT_GRACE)
            .order_by(Improvement.id)  # type: ignore[arg-type]
        )
        return [improvement_id for improvement_id in rows if improvement_id is not None]


@read
async def find_stranded_approvals() -> list[int]:
    """Improvements awaiting approval whose every request at the waiting level has lapsed."""
    with session_scope() as session:
        stuck = escalation.stuck_improvements(session=session, now=utcnow(), grace=EVENT_GRACE)
        return [s.improvement.id for s in stuck if s.ask_again and s.improvement.id is not None]


@read
async def find_stuck() -> list[str]:
    """What is still stuck, as "IMP-n: reason" lines for the sweep's report."""
    with session_scope() as session:
        stuck = escalation.stuck_improvements(session=session, now=utcnow(), grace=EVENT_GRACE)
        return [f"{s.improvement.reference}: {s.reason}" for s in stuck]


@read
async def find_unplanned() -> list[int]:
    """Improvements approved over a minute ago whose action plan was never made (an alternative
    offered to a customer waits for their choice)."""
    approved = _still_in(Status.approved, Improvement.updated_at)
    with session_scope() as session:
        return [
            i for i in approved if not offers.awaits_customer(session=session, improvement_id=i)
        ]


@read
async def find_cases_to_settle() -> list[int]:
    """Cases whose alternatives' approvals are all decided but were never offered (a lost event)."""
    with session_scope() as session:
        return offers.cases_to_settle(session=session, changed_before=utcnow() - EVENT_GRACE)


@read
async def find_unrouted() -> list[int]:
    """Improvements submitted over a minute ago and still not routed (a lost event)."""
    return _still_in(Status.submitted, Improvement.created_at)


@read
async def find_due_automatic_steps() -> list[int]:
    """Automatic steps whose turn has come but which no flow has carried out."""
    with session_scope() as session:
        return automatic.automatic_steps_due(session=session)


@read
async def find_ready_to_complete() -> list[int]:
    """Improvements whose every action is done but which are not yet completed."""
    with session_scope() as session:
        return planning.improvements_ready_to_complete(session=session)


@read
async def find_unannounced() -> list[int]:
    """Completed improvements whose notices were never sent."""
    with session_scope() as session:
        return impact.improvements_to_announce(session=session)


def impact_markdown(improvement: Improvement, told: dict[str, int]) -> str:
    """The estimate against the measured result, as a markdown table."""
    rows = [
        ("Annual saving (£)", improvement.annual_saving, improvement.measured_saving),
        ("Energy (kWh a year)", improvement.kwh, improvement.measured_kwh),
        ("Emissions avoided (kg CO2e a year)", improvement.kg_co2e, improvement.measured_kg_co2e),
        ("Waste diverted (kg a year)", improvement.kg_waste, improvement.measured_kg_waste),
    ]

    def figure(value: float | None) -> str:
        return "—" if value is None else f"{value:,.0f}"

    lines = [
        f"# {improvement.reference} {improvement.title}",
        "",
        f"Category: **{improvement.category}** · status: **{improvement.status}**",
        "",
        "| | estimated | measured |",
        "|---|---:|---:|",
        *(f"| {label} | {figure(est)} | {figure(got)} |" for label, est, got in rows),
        "",
        "Told: " + (", ".join(f"{n} {who}" for who, n in told.items()) or "nobody"),
    ]
    return "\n".join(lines)


@side_effect
async def remind_and_escalate_actions() -> dict[str, int]:
    """Remind owners of open action items with a fresh link, renew old links, escalate the late."""
    with session_scope() as session:
        return follow_up.remind_and_escalate_actions(session=session, now=utcnow())


@task(name="send-outbox", retries=3, retry_delay_seconds=[2, 10, 60])
async def send_outbox(limit: int | None = None) -> dict[str, int]:
    """Send the due emails in the outbox, at most settings.outbox_batch_limit a run (the next run
    or the sweep sends the rest); how many were sent, deferred, failed and skipped."""
    return await outbox.send_due(limit=limit)


# --- Awareness: the weekly digest and the impact report ----------------------------------------


@side_effect
async def queue_colleague_digests(week_ending: date) -> dict[str, int]:
    """Queue the week's digest to each active colleague, once each per week."""
    with session_scope() as session:
        return digest.queue_digests(session=session, week_ending=week_ending)


@side_effect
async def queue_stakeholder_reports(period: str) -> dict[str, int]:
    """Queue the impact report for the week to each subscribed stakeholder, once each."""
    with session_scope() as session:
        return report.queue_reports(session=session, period=period)


@side_effect
async def publish_report(period: str) -> None:
    """Leave the report's table and charts as artifacts of this run (the charts linked from the
    public page, where anyone the UI shows them to can open them)."""
    _, _, end = report.week_named(period)
    with session_scope() as session:
        figures = report.impact_report(session=session, until=end)
    await acreate_table_artifact(
        key="impact-by-category",
        table=figures.table(),
        description=f"Measured against forecast, a year, by category, to the end of {period}",
    )
    await acreate_markdown_artifact(
        key="impact-report",
        markdown=figures.markdown(f"{settings.base_url}/impact/charts"),
        description=f"The impact report's totals and charts to the end of {period}",
    )
