"""Action plans: a playbook per category turns an approved improvement into owned, dated steps."""

import logging
import math
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import and_, exists, func, update
from sqlmodel import Session, col, select

from improve.errors import IllegalTransition, InvalidInput, LinkRefused, NotFound
from improve.formatting import money, quantity
from models import (
    ActionItem,
    ActionStatus,
    ApprovalRequest,
    ApprovalStatus,
    Basis,
    Case,
    Category,
    Channel,
    Colleague,
    Customer,
    Improvement,
    ImprovementPartner,
    Status,
)
from models.db import MAX_AMOUNT, utcnow
from tasks import links
from tasks.estimates import ActivityIn, activity_totals, add_measured_activity
from tasks.follow_up import action_email_context, link_expires_at, step_url
from tasks.lifecycle import get_improvement, move, raised_for_case
from tasks.mail import queue_email
from tasks.routing import load_fallback

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One step of a playbook.

    owner: "submitter", "approver" (who approved at the highest level), or a role from the
    colleague table such as "Facilities Coordinator"; whoever cannot be found falls back to the
    submitter. An automatic step is carried out by the named function (tasks/automatic.py); its
    owner is only accountable for it and gets no email.
    """

    title: str
    owner: str
    due_in_days: int
    automatic_step: str | None = None


NOTIFY_PARTNERS_TITLE = "Tell the partners involved what changes for them"

PLAYBOOKS: dict[Category, list[Step]] = {
    Category.energy: [
        Step("Book the site survey", "Facilities Coordinator", 7),
        Step("Make the change the survey recommends", "Facilities Coordinator", 30),
        Step("Measure kWh after a month", "submitter", 45),
    ],
    Category.carbon: [
        Step("Confirm the baseline emissions", "Sustainability Analyst", 7),
        Step("Make the change to routes, vehicles or suppliers", "submitter", 30),
        Step("Measure kg CO2e avoided after a month", "Sustainability Analyst", 45),
    ],
    Category.waste: [
        Step("Agree bins and collections with the waste contractor", "Facilities Coordinator", 14),
        Step("Brief colleagues on what goes in which bin", "submitter", 21),
        Step("Weigh the waste diverted after a month", "Facilities Coordinator", 45),
    ],
    Category.resource: [
        Step("Agree the switch with the billing team", "submitter", 7),
        Step("Switch affected customers to e-statements", "submitter", 8, "switch_to_estatements"),
        Step("Tell affected customers", "submitter", 8, "notify_customers"),
        Step("Measure paper saved after one cycle", "submitter", 45),
    ],
    Category.customer_update: [
        Step("Send the customer an update on their case", "submitter", 0, "send_customer_update"),
        Step("Agree the next update date with the case owner", "submitter", 2),
        Step("Check the case is back on track", "approver", 7),
    ],
    Category.alternative_solution: [
        Step("Confirm the alternative with whoever provides it", "submitter", 5),
        Step("Send the customer the agreed alternative", "submitter", 6, "send_customer_update"),
        Step("Check with the customer that the alternative worked", "submitter", 30),
    ],
    Category.goodwill: [
        Step("Arrange the goodwill gesture", "submitter", 3),
        Step("Tell the customer", "submitter", 4, "send_customer_update"),
        Step("Record the cost against the goodwill budget", "approver", 14),
    ],
    Category.process: [
        Step("Write the new procedure", "submitter", 14),
        Step("Approve and publish the procedure", "approver", 21),
        Step("Brief the team on the change", "Team Leader", 28),
        Step("Measure the effect after a month", "submitter", 60),
    ],
}


def case_update_steps(session: Session, case: Case) -> list[Step]:
    """An overdue update is one step for the case owner: write and send it, today.

    Not the automatic send_customer_update of the playbook: only the owner knows what to say.
    """
    customer = session.get(Customer, case.customer_id)
    who = customer.name if customer else "the customer"
    return [Step(f"Send {who} an update on {case.reference}"[:200], "submitter", 0)]


def steps_for(category: Category | str, *, has_partners: bool) -> list[Step]:
    """The playbook for a category; an improvement that touches partners also tells them."""
    steps = list(PLAYBOOKS[Category(category)])
    if has_partners and not any(s.automatic_step == "notify_partners" for s in steps):
        # Once the change is in place, before the last (measuring) step, on the same day.
        change = steps[-2] if len(steps) > 1 else steps[-1]
        steps.insert(
            len(steps) - 1,
            Step(NOTIFY_PARTNERS_TITLE, "submitter", change.due_in_days, "notify_partners"),
        )
    return steps


# --- owners -----------------------------------------------------------------------------------


def _away(colleague: Colleague, today: date, due: date) -> bool:
    # Away now and still away when the step is due: a short absence keeps the step its owner's.
    return colleague.is_absent_on(today) and colleague.is_absent_on(due)


def _present(
    session: Session, colleague: Colleague | None, today: date, due: date
) -> Colleague | None:
    """The colleague, or their deputy while they are away; None if neither can act."""
    if colleague is None or not colleague.active:
        return None
    if _away(colleague, today, due) and colleague.deputy_id is not None:
        deputy = session.get(Colleague, colleague.deputy_id)
        if deputy is not None and deputy.active and not _away(deputy, today, due):
            return deputy
    return colleague


def highest_approver_id(*, session: Session, improvement_id: int) -> int | None:
    """Who approved at the highest level (the last to do so, if two did)."""
    return session.exec(
        select(ApprovalRequest.approver_id)
        .where(
            ApprovalRequest.improvement_id == improvement_id,
            ApprovalRequest.status == ApprovalStatus.approved,
        )
        .order_by(col(ApprovalRequest.level).desc(), col(ApprovalRequest.id).desc())
    ).first()


class _Owners:
    """Finds who owns a step: the named person or role, else submitter, approver, fallback."""

    def __init__(self, session: Session, improvement: Improvement, today: date) -> None:
        self.session, self.today, self.improvement = session, today, improvement
        assert improvement.id is not None
        self.approver_id = highest_approver_id(session=session, improvement_id=improvement.id)

    def _by_id(self, colleague_id: int | None, due: date) -> Colleague | None:
        if colleague_id is None:
            return None
        return _present(self.session, self.session.get(Colleague, colleague_id), self.today, due)

    def _fallback(self, due: date) -> Colleague | None:
        return _present(self.session, load_fallback(self.session), self.today, due)

    def _role(self, name: str, due: date) -> Colleague | None:
        candidates = self.session.exec(
            select(Colleague)
            .where(func.lower(Colleague.role) == name.lower(), Colleague.active == True)  # noqa: E712
            .order_by(col(Colleague.id))
        ).all()
        # Prefer someone in the role who is around; an away one's deputy only if nobody is.
        for colleague in candidates:
            if not _away(colleague, self.today, due):
                return colleague
        return _present(self.session, candidates[0], self.today, due) if candidates else None

    def resolve(self, owner: str, due: date) -> Colleague | None:
        if owner == "approver":
            ids = [self.approver_id, self.improvement.submitter_id]
        else:
            ids = [self.improvement.submitter_id, self.approver_id]
        found = None if owner in ("submitter", "approver") else self._role(owner, due)
        for colleague_id in ids:
            found = found or self._by_id(colleague_id, due)
        return found or self._fallback(due)


# --- the plan ---------------------------------------------------------------------------------


def action_items(session: Session, improvement_id: int) -> list[ActionItem]:
    """The items of an improvement's plan in order, as the database has them now."""
    return list(
        session.exec(
            select(ActionItem)
            .where(ActionItem.improvement_id == improvement_id)
            .order_by(col(ActionItem.position))
            .execution_options(populate_existing=True)
        ).all()
    )


def plan_actions(
    *, session: Session, improvement_id: int, actor: str, today: date | None = None
) -> list[ActionItem]:
    """Turn an approved improvement into its action plan and start it; idempotent. Caller commits.

    approved → in_progress; one item per playbook step with its owner and due date; each item a
    person does gets a single-use link and an action_assigned email. Planned already: the existing
    items come back and nothing is queued.
    """
    improvement = get_improvement(session=session, improvement_id=improvement_id)
    existing = action_items(session, improvement_id)
    if existing:
        return existing
    today = today or utcnow().date()
    has_partners = (
        session.exec(
            select(ImprovementPartner).where(ImprovementPartner.improvement_id == improvement_id)
        ).first()
        is not None
    )
    case = raised_for_case(session=session, improvement_id=improvement_id)
    steps = (
        case_update_steps(session, case)
        if case is not None
        else steps_for(improvement.category, has_partners=has_partners)
    )
    automatic = sum(1 for s in steps if s.automatic_step)
    try:
        # First, so that of two planners at once only one gets past this line.
        move(
            session=session,
            improvement_id=improvement_id,
            to=Status.in_progress,
            actor=actor,
            channel=Channel.flow,
            reason=f"action plan of {len(steps)} steps ({automatic} automatic) "
            f"from the {improvement.category} playbook",
        )
    except IllegalTransition:
        existing = action_items(session, improvement_id)
        if existing:  # another planner won the race
            return existing
        raise

    owners = _Owners(session, improvement, today)
    now = utcnow()
    items: list[ActionItem] = []
    for position, step in enumerate(steps, start=1):
        due_on = today + timedelta(days=step.due_in_days)
        owner = owners.resolve(step.owner, due_on)
        item = ActionItem(
            improvement_id=improvement_id,
            position=position,
            title=step.title,
            owner_id=owner.id if owner else None,
            due_on=due_on,
            automatic_step=step.automatic_step,
        )
        token = None
        if step.automatic_step is None and owner is not None:
            token, item.token_hash = links.new_token()
            item.token_expires_at = link_expires_at(due_on, now)
        session.add(item)
        session.flush()
        assert item.id is not None
        if token is not None and owner is not None:
            queue_email(
                session=session,
                key=f"action:{item.id}:assigned",
                to=owner.email,
                template="action_assigned",
                context=action_email_context(improvement, item, owner, case),
                links={"url": step_url(item.id, token, case)},
                improvement_id=improvement_id,
            )
        items.append(item)
    return items


MEASURES = ("measured_saving", "measured_kwh", "measured_kg_co2e", "measured_kg_waste")
LINE_MEASURES = ("saving", "kwh", "kg_co2e", "kg_waste")  # the same, as activity lines name them
PAPER = "measured_sheets_paper"


def complete_action(
    *,
    session: Session,
    action_id: int,
    by: str,
    measured_saving: float | None = None,
    measured_kwh: float | None = None,
    measured_kg_co2e: float | None = None,
    measured_kg_waste: float | None = None,
    note: str = "",
    channel: Channel | str = Channel.web,
    token: str | None = None,
    activities: list[ActivityIn] | None = None,
) -> ActionItem:
    """Mark an open item done with its measured result. Caller commits, then emits ACTION_COMPLETED.

    The result is typed figures, or measured `activities` ("300 fewer van miles a week"): lines
    are added to the improvement's actual lines, worked out with its factor set, and the typed
    figures of this item are then ignored, so one result is never counted twice (the item has no
    lines of its own: ActivityLine belongs to the improvement).

    The update is conditional on the item being open: of two completions (a double click, two tabs)
    one wins and the other gets LinkRefused("used"). A `token` from an emailed link must still be
    the item's live one when the result is written.
    """
    values = dict(
        zip(
            MEASURES,
            (measured_saving, measured_kwh, measured_kg_co2e, measured_kg_waste),
            strict=True,
        )
    )
    errors: dict[str, str] = {}
    for field, value in values.items():
        if value is None:
            continue
        if not isinstance(value, int | float) or not math.isfinite(value):
            errors[field] = f"must be a number, not {value!r}"
        elif value < 0:
            errors[field] = f"must be zero or more, not {value:g}"
        elif value > MAX_AMOUNT:
            errors[field] = f"must be at most {MAX_AMOUNT:,.0f}"
    if len(note) > 2000:
        errors["note"] = f"is {len(note)} characters long; at most 2000 fit"
    if not by.strip():
        errors["by"] = "say who completed it"
    if errors:
        raise InvalidInput(errors)
    if activities:
        values = dict.fromkeys(MEASURES)

    item = session.get(ActionItem, action_id)
    if item is None:
        raise NotFound("action", action_id)
    now = utcnow()
    live = [col(ActionItem.token_hash) == links.hash_token(token)] if token is not None else []
    result = session.execute(
        update(ActionItem)
        .where(col(ActionItem.id) == action_id, col(ActionItem.status) == ActionStatus.open, *live)
        .values(
            status=ActionStatus.done,
            completed_by=by.strip()[:254],
            completed_at=now,
            result_note=note,
            **values,
        )
    )
    session.refresh(item)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        if token is not None and item.token_hash != links.hash_token(token):
            raise links.refusal(session, links.hash_token(token))
        when = f" on {item.completed_at:%Y-%m-%d %H:%M} UTC" if item.completed_at else ""
        who = f" by {item.completed_by}" if item.completed_by else ""
        raise LinkRefused("used", f"This action is already {item.status}{who}{when}.", 410)
    if activities:
        add_measured_activity(session=session, improvement_id=item.improvement_id, lines=activities)
    # ActionItem has no channel column; the log keeps which door the completion came through.
    log.info("action %s of IMP-%s done by %s via %s", action_id, item.improvement_id, by, channel)
    return item


# --- completion -------------------------------------------------------------------------------


def complete_improvement(*, session: Session, improvement_id: int, actor: str) -> bool:
    """in_progress with every item done or cancelled → measured results summed, completed.

    Returns False when it is not ready or already completed. Caller commits, then emits COMPLETED.
    """
    improvement = get_improvement(session=session, improvement_id=improvement_id)
    if improvement.status != Status.in_progress:
        return False
    items = action_items(session, improvement_id)
    if not items or any(i.status == ActionStatus.open for i in items):
        return False
    done = [i for i in items if i.status == ActionStatus.done]
    # What owners typed plus what their measured activity works out to: an item that gave
    # activity stored no typed figures (complete_action), so nothing is counted twice. A measure
    # nobody gave stays None, unknown; paper is measured only through activity.
    lines = activity_totals(session=session, improvement_id=improvement_id, basis=Basis.actual)
    totals: dict[str, float | None] = {}
    for field, measure in [*zip(MEASURES, LINE_MEASURES, strict=True), (PAPER, "sheets_paper")]:
        measured = [getattr(i, field) for i in done if getattr(i, field, None) is not None]
        if measure in lines:
            measured.append(lines[measure])
        totals[field] = max(0.0, float(sum(measured))) if measured else None
    try:
        move(
            session=session,
            improvement_id=improvement_id,
            to=Status.completed,
            actor=actor,
            channel=Channel.flow,
            reason=_completion_reason(len(done), len(items), totals),
        )
    except IllegalTransition:
        return False  # someone else completed it a moment ago
    session.execute(
        update(Improvement).where(col(Improvement.id) == improvement_id).values(**totals)
    )
    session.refresh(improvement)
    return True


def _completion_reason(done: int, total: int, totals: dict[str, float | None]) -> str:
    parts = []
    if totals["measured_saving"] is not None:
        parts.append(f"{money(totals['measured_saving'])} saved")
    if totals["measured_kwh"] is not None:
        parts.append(quantity(totals["measured_kwh"], "kWh"))
    if totals["measured_kg_co2e"] is not None:
        parts.append(quantity(totals["measured_kg_co2e"], "kg CO2e"))
    if totals["measured_kg_waste"] is not None:
        parts.append(quantity(totals["measured_kg_waste"], "kg waste diverted"))
    if totals.get(PAPER) is not None:
        parts.append(quantity(totals[PAPER] or 0, "sheets of paper"))
    impact = "measured " + ", ".join(parts) if parts else "no measured result recorded"
    steps = (
        f"all {total} steps done"
        if done == total
        else (f"{done} of {total} steps done, {total - done} cancelled")
    )
    return f"Plan finished: {steps}; {impact}."


def improvements_ready_to_complete(*, session: Session) -> list[int]:
    """In progress, with a plan and no open item left (the sweep's net for a lost event)."""
    same = col(ActionItem.improvement_id) == col(Improvement.id)
    any_item = exists().where(same)
    open_item = exists().where(and_(same, col(ActionItem.status) == ActionStatus.open))
    return [
        i
        for i in session.exec(
            select(Improvement.id)
            .where(Improvement.status == Status.in_progress, any_item, ~open_item)
            .order_by(col(Improvement.id))
        ).all()
        if i is not None
    ]
