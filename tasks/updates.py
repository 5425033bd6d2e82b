"""Updates to a customer on their case: the drafted update, sending it, and the overdue check
that raises a customer_update improvement when one falls due and none was sent.

Every function takes a session and keyword arguments and leaves the commit to its caller.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import uuid4

from sqlalchemy import update
from sqlmodel import Session, col, select

from improve.errors import InvalidInput
from improve.settings import settings
from models import (
    Case,
    CaseStatus,
    CaseUpdate,
    Category,
    Channel,
    Colleague,
    Customer,
    Improvement,
    ImprovementCustomer,
    OutboxEmail,
    Source,
    Status,
)
from models.db import utcnow
from tasks.cases import (
    BODY_MAX,
    SUBJECT_MAX,
    cancel_overdue,
    case_url,
    checked_due,
    checked_text,
    default_next_update,
    get_case,
    open_steps,
    record_note,
    refuse_if_closed,
)
from tasks.consent import queue_customer_email
from tasks.escalation import SWEEP
from tasks.lifecycle import get_improvement, record_creation
from tasks.mail import queue_email
from tasks.planning import complete_action

# --- updates to the customer -------------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    """An update as the owner will see it before sending: theirs to edit."""

    subject: str
    body: str
    next_update_due: datetime


def preview_update(*, session: Session, case_id: int, now: datetime | None = None) -> Draft:
    """The templated subject and body for the case's next update, in plain words."""
    now = now or utcnow()
    case = get_case(session=session, case_id=case_id)
    customer = session.get(Customer, case.customer_id)
    owner = session.get(Colleague, case.owner_id)
    next_due = default_next_update(now)
    name = customer.name if customer else "there"
    signed = owner.name if owner else "Customer Service"
    if customer is not None and customer.language == "cy":
        return _welsh_draft(case, name, signed, next_due)
    lines = [f"Dear {name},", ""]
    if case.status == CaseStatus.delayed:
        lines += [
            f"I am sorry that “{case.subject}” is taking longer than we hoped. "
            + (f"The reason is: {case.delay_reason}" if case.delay_reason else ""),
            "",
            "Here is where things stand now: ",
        ]
    else:
        lines += [f"I wanted to let you know where things stand with “{case.subject}”.", ""]
    if case.promised_on:
        lines += [f"We are still working towards {case.promised_on:%-d %B %Y}.", ""]
    lines += [
        f"I will be in touch again by {next_due:%-d %B %Y}, sooner if anything changes. "
        "If you have a question in the meantime, just reply to this email.",
        "",
        "With best wishes,",
        signed,
    ]
    return Draft(
        subject=f"An update on your case {case.reference}: {case.subject}"[:SUBJECT_MAX],
        body="\n".join(lines).strip(),
        next_update_due=next_due,
    )


def _welsh_draft(case: Case, name: str, signed: str, next_due: datetime) -> Draft:
    """The same draft for a customer who reads Welsh (dates as numbers: no month names)."""
    lines = [f"Annwyl {name},", ""]
    if case.status == CaseStatus.delayed:
        lines += [
            f"Mae'n ddrwg gennyf fod “{case.subject}” yn cymryd mwy o amser nag yr oeddem yn ei "
            "obeithio. " + (f"Y rheswm yw: {case.delay_reason}" if case.delay_reason else ""),
            "",
            "Dyma sut mae pethau ar hyn o bryd: ",
        ]
    else:
        lines += [f"Roeddwn am roi gwybod i chi sut mae pethau gyda “{case.subject}”.", ""]
    if case.promised_on:
        lines += [f"Rydym yn dal i weithio tuag at {case.promised_on:%d/%m/%Y}.", ""]
    lines += [
        f"Byddaf mewn cysylltiad eto erbyn {next_due:%d/%m/%Y}, yn gynt os bydd unrhyw beth yn "
        "newid. Os oes gennych gwestiwn yn y cyfamser, atebwch yr e-bost hwn.",
        "",
        "Gyda dymuniadau gorau,",
        signed,
    ]
    return Draft(
        subject=f"Diweddariad ar eich achos {case.reference}: {case.subject}"[:SUBJECT_MAX],
        body="\n".join(lines).strip(),
        next_update_due=next_due,
    )


@dataclass
class Sent:
    """What sending an update did: the update, and any action items it completed."""

    update: CaseUpdate
    completed_action_ids: list[int] = field(default_factory=list)
    replayed: bool = False
    improvement_id: int | None = None  # the overdue raise it answered, if any


# The same words to the same customer this close together are one update sent twice (a double
# click, a retried request): the second sends nothing.
REPEAT_WINDOW = timedelta(minutes=10)


def _lock(session: Session, case_id: int) -> None:
    """Take the case's row for this transaction (a no-op UPDATE, as lock_improvement does), so
    two sends of one update take turns and the second finds the first."""
    session.execute(update(Case).where(col(Case.id) == case_id).values(updated_at=Case.updated_at))


def _already_sent(
    session: Session, case: Case, *, key: str | None, subject: str, body: str, now: datetime
) -> CaseUpdate | None:
    """The update this request already sent: by the caller's key, or else by the same words
    within REPEAT_WINDOW."""
    if key is not None:
        return session.exec(
            select(CaseUpdate)
            .join(OutboxEmail, col(OutboxEmail.id) == col(CaseUpdate.email_id))
            .where(OutboxEmail.idempotency_key == key)
        ).first()
    return session.exec(
        select(CaseUpdate)
        .where(
            CaseUpdate.case_id == case.id,
            CaseUpdate.subject == subject,
            CaseUpdate.body == body,
            col(CaseUpdate.at) >= now - REPEAT_WINDOW,
        )
        .order_by(col(CaseUpdate.id).desc())
    ).first()


def send_update(
    *,
    session: Session,
    case_id: int,
    by: Colleague,
    channel: Channel | str,
    subject: str,
    body: str,
    next_update_due: datetime | None = None,
    key: str | None = None,
    now: datetime | None = None,
) -> Sent:
    """Queue the owner's words to the customer, record it, and move the next update on.

    It clears the overdue raise and completes the open step of its customer_update improvement
    (the caller commits, then announces each completed action). Sent again with the same key, or
    the same words within REPEAT_WINDOW, it sends nothing more and answers with the first update.
    """
    now = now or utcnow()
    _lock(session, case_id)
    case = get_case(session=session, case_id=case_id)
    refuse_if_closed(case)
    errors: dict[str, str] = {}
    subject = " ".join(checked_text(subject, "subject", SUBJECT_MAX, errors, required=True).split())
    body = checked_text(body, "body", BODY_MAX, errors, required=True)
    due = checked_due(next_update_due, "next_update_due", now, errors) or default_next_update(now)
    if errors:
        raise InvalidInput(errors)
    own_key = f"case:{case.id}:update:{key[:64]}" if key else None
    existing = _already_sent(session, case, key=own_key, subject=subject, body=body, now=now)
    if existing is not None:
        return Sent(existing, replayed=True)
    # A new update: a key of its own, unless the caller gave one.
    idempotency_key = own_key or f"case:{case.id}:update:{uuid4().hex}"
    customer = session.get(Customer, case.customer_id)
    assert customer is not None and case.id is not None
    email = queue_customer_email(
        session=session,
        key=idempotency_key,
        customer=customer,
        template="case_update",
        purpose=None,  # service on their own case
        context={
            "customer_name": customer.name,
            "reference": case.reference,
            "case_subject": case.subject,
            "update_subject": subject,
            "body": body,
            "sender_name": by.name,
        },
        improvement_id=case.overdue_improvement_id,
    )
    update_row = CaseUpdate(
        case_id=case.id,
        subject=subject,
        body=body,
        sent_by=by.email,
        channel=str(channel),
        email_id=email.id,
        at=now,
    )
    session.add(update_row)
    raised = case.overdue_improvement_id
    completed = _finish_overdue(session, case, by=by, channel=channel, subject=subject)
    case.next_update_due = due
    case.overdue_improvement_id = None
    case.updated_at = now
    session.add(case)
    record_note(
        session, case, "update_sent", f"“{subject}”; next update due {due:%Y-%m-%d %H:%M} UTC",
        by.email, channel,
    )  # fmt: skip
    session.flush()
    return Sent(update_row, completed, improvement_id=raised)


def _finish_overdue(
    session: Session, case: Case, *, by: Colleague, channel: Channel | str, subject: str
) -> list[int]:
    """The update is the overdue improvement's one step: complete it (or, unplanned, cancel it)."""
    if case.overdue_improvement_id is None:
        return []
    improvement = get_improvement(session=session, improvement_id=case.overdue_improvement_id)
    if improvement.status in (Status.submitted, Status.awaiting_approval, Status.approved):
        cancel_overdue(session, case, actor=by.email, channel=channel, why="the update was sent")
        return []
    completed = []
    for item in open_steps(session, case.overdue_improvement_id):
        assert item.id is not None
        complete_action(
            session=session,
            action_id=item.id,
            by=by.email,
            note=f"Update sent to the customer: {subject}"[:2000],
            channel=channel,
        )
        completed.append(item.id)
    return completed


# --- the overdue check -------------------------------------------------------------------------


def overdue_case_ids(*, session: Session, now: datetime, limit: int = 500) -> list[int]:
    """Open cases whose next update is due and not yet raised: one range of one index.

    `ix_customer_case_update_due` is (overdue_improvement_id, next_update_due): the rows with no
    improvement raised come first, ordered by when their update is due, so the query reads only
    the due ones however many cases are open.
    """
    return [
        case_id
        for case_id in session.exec(
            select(Case.id)
            .where(col(Case.overdue_improvement_id).is_(None))
            .where(col(Case.next_update_due) <= now)
            .order_by(col(Case.next_update_due))
            .limit(limit)
        )
        if case_id is not None
    ]


def _claim(session: Session, case_id: int, now: datetime) -> bool:
    """Take the case's row if it is still due and unraised: of two sweeps, the second waits here
    for the first to commit, then finds it raised and takes nothing."""
    claimed = session.execute(
        update(Case)
        .where(
            col(Case.id) == case_id,
            col(Case.overdue_improvement_id).is_(None),
            col(Case.next_update_due) <= now,
        )
        .values(updated_at=Case.updated_at)
    )
    return claimed.rowcount == 1  # type: ignore[attr-defined]


def raise_overdue_updates(*, session: Session, now: datetime, limit: int = 500) -> list[int]:
    """A customer_update improvement for each case whose update fell due; the ids raised.

    Submitted by the case owner, who approves it at once as their own remit (approvals.py) and
    gets one step: send the update from the case's page. Raised once per due update: the case
    keeps the improvement until the next update clears it. The caller commits, then emits
    CASE_UPDATE_OVERDUE for each id.
    """
    raised = []
    for case_id in overdue_case_ids(session=session, now=now, limit=limit):
        if not _claim(session, case_id, now):
            continue
        case = get_case(session=session, case_id=case_id)
        customer = session.get(Customer, case.customer_id)
        owner = session.get(Colleague, case.owner_id)
        assert customer is not None and owner is not None
        assert case.next_update_due is not None
        improvement = Improvement(
            title=f"Update overdue: {case.reference} {case.subject}"[:SUBJECT_MAX],
            description=(
                f"{customer.name} was due an update on {case.reference} "
                f"({case.subject}) by {case.next_update_due:%Y-%m-%d %H:%M} UTC, and none was "
                "sent. Send it from the case's page: it previews the email and lets you edit it."
            ),
            category=Category.customer_update,
            source=Source.triggered,
            submitter_id=owner.id,
            status=Status.submitted,
        )
        session.add(improvement)
        session.flush()
        assert improvement.id is not None and customer.id is not None
        session.add(ImprovementCustomer(improvement_id=improvement.id, customer_id=customer.id))
        record_creation(
            session=session,
            improvement=improvement,
            actor=SWEEP,
            channel=Channel.sweep,
            reason=f"{case.reference}: the customer's update fell due and none was sent",
        )
        # Conditional as well, so nothing but the claim above can make it raise twice.
        set_raised = session.execute(
            update(Case)
            .where(col(Case.id) == case_id, col(Case.overdue_improvement_id).is_(None))
            .values(overdue_improvement_id=improvement.id)
        )
        assert set_raised.rowcount == 1  # type: ignore[attr-defined]
        session.refresh(case)
        record_note(session, case, "overdue_raised", improvement.reference, SWEEP, Channel.sweep)
        raised.append(improvement.id)
    return raised


def escalate_overdue_updates(*, session: Session, now: datetime) -> int:
    """Tell the owner's manager, once, about an overdue update that sat past
    settings.overdue_escalate_hours; how many were told."""
    since = now - timedelta(hours=settings.overdue_escalate_hours)
    rows = session.exec(
        select(Case, Improvement)
        .join(Improvement, col(Improvement.id) == col(Case.overdue_improvement_id))
        .where(col(Improvement.created_at) <= since)
        .where(col(Improvement.status).in_([Status.approved, Status.in_progress]))
    ).all()
    told = 0
    for case, improvement in rows:
        owner = session.get(Colleague, case.owner_id)
        manager = session.get(Colleague, owner.manager_id) if owner and owner.manager_id else None
        if owner is None or manager is None or not manager.active:
            continue
        key = f"case:{case.id}:overdue:{improvement.id}:manager"
        if session.exec(select(OutboxEmail.id).where(OutboxEmail.idempotency_key == key)).first():
            continue
        customer = session.get(Customer, case.customer_id)
        queue_email(
            session=session,
            key=key,
            to=manager.email,
            template="case_overdue_escalation",
            context={
                "manager_name": manager.name,
                "owner_name": owner.name,
                "owner_email": owner.email,
                "reference": case.reference,
                "case_subject": case.subject,
                "customer_name": customer.name if customer else "the customer",
                "raised": improvement.reference,
                "hours": int((now - improvement.created_at).total_seconds() // 3600),
                "url_case": case_url(case.id or 0),
            },
            improvement_id=improvement.id,
        )
        record_note(
            session, case, "escalated", f"update overdue; {manager.name} told", SWEEP,
            Channel.sweep,
        )  # fmt: skip
        told += 1
    return told
