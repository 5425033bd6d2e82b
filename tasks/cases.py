"""Customer cases: opening, delays, updates to the customer, and the overdue check.

Every function takes a session and keyword arguments and leaves the commit to its caller; every
change to a case writes a CaseNote saying who made it and through which door.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import uuid4

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from improve.errors import ImproveError, InvalidInput, NotFound
from improve.settings import settings
from models import (
    ActionItem,
    ActionStatus,
    Case,
    CaseNote,
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
from tasks.consent import queue_customer_email
from tasks.escalation import SWEEP
from tasks.lifecycle import get_improvement, move, record_creation
from tasks.mail import queue_email
from tasks.planning import complete_action

SUBJECT_MAX, DETAILS_MAX, REASON_MAX, BODY_MAX = 200, 10_000, 2000, 10_000


class CaseNotFound(NotFound):
    def __init__(self, case_id: int) -> None:
        super().__init__("case", f"CASE-{case_id}")


class CaseClosed(ImproveError):
    """A change to a case that is closed: the request was fine, the case's state refuses it."""

    status_code = 409

    def __init__(self, reference: str) -> None:
        super().__init__(f"{reference} is closed; it cannot change")


def get_case(*, session: Session, case_id: int) -> Case:
    """The case as the database has it now, or CaseNotFound."""
    case = session.get(Case, case_id, populate_existing=True)
    if case is None:
        raise CaseNotFound(case_id)
    return case


def as_utc(moment: datetime) -> datetime:
    """A time from a form, the API or the CLI: one without a zone is read as UTC, as shown."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def default_next_update(now: datetime) -> datetime:
    return now + timedelta(days=settings.case_update_days)


def _record(session: Session, case: Case, what: str, note: str, actor: str, channel: str) -> None:
    assert case.id is not None
    session.add(
        CaseNote(
            case_id=case.id,
            what=what,
            note=note[:2000],
            actor=actor[:254],
            channel=str(channel),
        )
    )


def _colleague(
    session: Session, email: str, field_name: str, errors: dict[str, str]
) -> Colleague | None:
    """The active colleague with this email, or None with the problem written to `errors`."""
    email = email.strip().lower()
    found = session.exec(select(Colleague).where(Colleague.email == email)).first()
    if found is None:
        errors[field_name] = f"no colleague has the email {email!r}"
    elif not found.active:
        errors[field_name] = f"{found.name} is no longer active"
        return None
    return found


def _text(
    value: str | None, name: str, limit: int, errors: dict[str, str], *, required: bool
) -> str:
    """Trimmed text, with what is wrong with it (NUL, blank, too long) written to `errors`."""
    text = (value or "").strip()
    if "\x00" in text:
        errors[name] = "must not contain a NUL character"
    elif required and not text:
        errors[name] = "is required"
    elif len(text) > limit:
        errors[name] = f"is {len(text)} characters long; at most {limit} fit"
    return text


def _due(
    value: datetime | None, name: str, now: datetime, errors: dict[str, str]
) -> datetime | None:
    """When an update is due, in UTC; it must lie ahead, or the case would be overdue at once."""
    if value is None:
        return None
    value = as_utc(value)
    if value <= now:
        errors[name] = f"must be in the future, not {value:%Y-%m-%d %H:%M} UTC"
    return value


def _still_open(case: Case) -> None:
    if case.status == CaseStatus.closed:
        raise CaseClosed(case.reference)


# --- opening and changing ----------------------------------------------------------------------


def open_case(
    *,
    session: Session,
    by: Colleague,
    channel: Channel | str,
    customer_email: str,
    subject: str,
    details: str = "",
    owner_email: str | None = None,
    promised_on: date | None = None,
    next_update_due: datetime | None = None,
    now: datetime | None = None,
) -> Case:
    """Open a case for a known customer, owned by `owner_email` or else by whoever opens it.

    The next update is due when given, or settings.case_update_days from now. Everything is
    checked before anything is written, so bad input leaves no trace.
    """
    now = now or utcnow()
    errors: dict[str, str] = {}
    email = customer_email.strip().lower()
    customer = session.exec(select(Customer).where(Customer.email == email)).first()
    if not email:
        errors["customer_email"] = "is required: the customer the case is for"
    elif customer is None:
        errors["customer_email"] = f"no customer has the email {email!r}"
    subject = _text(subject, "subject", SUBJECT_MAX, errors, required=True)
    details = _text(details, "details", DETAILS_MAX, errors, required=False)
    owner = _colleague(session, owner_email, "owner_email", errors) if owner_email else by
    due = _due(next_update_due, "next_update_due", now, errors)
    if errors:
        raise InvalidInput(errors)
    assert customer is not None and owner is not None and customer.id and owner.id
    case = Case(
        customer_id=customer.id,
        subject=subject,
        details=details,
        owner_id=owner.id,
        promised_on=promised_on,
        next_update_due=due or default_next_update(now),
        created_at=now,
        updated_at=now,
    )
    session.add(case)
    session.flush()
    _record(
        session,
        case,
        "opened",
        f"for {customer.name}, owned by {owner.name}; next update due "
        f"{case.next_update_due:%Y-%m-%d %H:%M} UTC",
        by.email,
        channel,
    )
    return case


UNSET: Any = object()  # "leave it as it is", where None means "clear it"


def change_case(
    *,
    session: Session,
    case_id: int,
    by: Colleague,
    channel: Channel | str,
    subject: str | None = None,
    details: str | None = None,
    owner_email: str | None = None,
    promised_on: date | None = UNSET,
    next_update_due: datetime | None = None,
    close: bool = False,
    reason: str = "",
    now: datetime | None = None,
) -> Case:
    """Change what is given (None: leave it); close ends the case and its overdue raise.

    A note per change says what it was and what it became.
    """
    now = now or utcnow()
    case = get_case(session=session, case_id=case_id)
    _still_open(case)
    errors: dict[str, str] = {}
    changes: list[tuple[str, str]] = []
    if subject is not None:
        subject = _text(subject, "subject", SUBJECT_MAX, errors, required=True)
        if subject != case.subject:
            changes.append(("subject", f"subject: {case.subject!r} → {subject!r}"))
    if details is not None:
        details = _text(details, "details", DETAILS_MAX, errors, required=False)
        if details != case.details:
            changes.append(("details", "details rewritten"))
    owner = _colleague(session, owner_email, "owner_email", errors) if owner_email else None
    if owner is not None and owner.id != case.owner_id:
        before = session.get(Colleague, case.owner_id)
        changes.append(("owner", f"owner: {before.name if before else '?'} → {owner.name}"))
    if promised_on is not UNSET and promised_on != case.promised_on:
        changes.append(("promised", f"promised date: {case.promised_on or 'none'} → {promised_on}"))
    due = _due(next_update_due, "next_update_due", now, errors)
    if due is not None and due != case.next_update_due:
        changes.append(("next_update", f"next update due {due:%Y-%m-%d %H:%M} UTC"))
    reason = _text(reason, "reason", REASON_MAX, errors, required=False)
    if errors:
        raise InvalidInput(errors)
    if subject is not None:
        case.subject = subject
    if details is not None:
        case.details = details
    if owner is not None:
        assert owner.id is not None
        case.owner_id = owner.id
    if promised_on is not UNSET:
        case.promised_on = promised_on
    if due is not None:
        case.next_update_due = due
    for what, text in changes:
        _record(session, case, what, text, by.email, channel)
    if close:
        _cancel_overdue(session, case, actor=by.email, channel=channel, why="the case was closed")
        case.status = CaseStatus.closed
        case.next_update_due = None  # a closed case is never due
        case.overdue_improvement_id = None
        _record(session, case, "closed", reason, by.email, channel)
    case.updated_at = now
    session.add(case)
    session.flush()
    return case


def mark_delayed(
    *,
    session: Session,
    case_id: int,
    by: Colleague,
    channel: Channel | str,
    reason: str,
    next_update_due: datetime | None = None,
    now: datetime | None = None,
) -> Case:
    """Off plan, with a reason: and a delay always sets when the customer next hears from us."""
    now = now or utcnow()
    case = get_case(session=session, case_id=case_id)
    _still_open(case)
    errors: dict[str, str] = {}
    reason = _text(reason, "reason", REASON_MAX, errors, required=True)
    if "reason" in errors and not reason:
        errors["reason"] = "is required: say why the case is off plan"
    due = _due(next_update_due, "next_update_due", now, errors) or default_next_update(now)
    if errors:
        raise InvalidInput(errors)
    case.status = CaseStatus.delayed
    case.delay_reason = reason
    case.next_update_due = due
    case.updated_at = now
    session.add(case)
    _record(
        session, case, "delayed", f"{reason} (next update due {due:%Y-%m-%d %H:%M} UTC)",
        by.email, channel,
    )  # fmt: skip
    session.flush()
    return case


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
    _still_open(case)
    errors: dict[str, str] = {}
    subject = " ".join(_text(subject, "subject", SUBJECT_MAX, errors, required=True).split())
    body = _text(body, "body", BODY_MAX, errors, required=True)
    due = _due(next_update_due, "next_update_due", now, errors) or default_next_update(now)
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
    _record(
        session, case, "update_sent", f"“{subject}”; next update due {due:%Y-%m-%d %H:%M} UTC",
        by.email, channel,
    )  # fmt: skip
    session.flush()
    return Sent(update_row, completed, improvement_id=raised)


def _open_steps(session: Session, improvement_id: int) -> list[ActionItem]:
    return list(
        session.exec(
            select(ActionItem).where(
                ActionItem.improvement_id == improvement_id,
                ActionItem.status == ActionStatus.open,
            )
        ).all()
    )


def _finish_overdue(
    session: Session, case: Case, *, by: Colleague, channel: Channel | str, subject: str
) -> list[int]:
    """The update is the overdue improvement's one step: complete it (or, unplanned, cancel it)."""
    if case.overdue_improvement_id is None:
        return []
    improvement = get_improvement(session=session, improvement_id=case.overdue_improvement_id)
    if improvement.status in (Status.submitted, Status.awaiting_approval, Status.approved):
        _cancel_overdue(session, case, actor=by.email, channel=channel, why="the update was sent")
        return []
    completed = []
    for item in _open_steps(session, case.overdue_improvement_id):
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


def _cancel_overdue(
    session: Session, case: Case, *, actor: str, channel: Channel | str, why: str
) -> None:
    """An overdue raise nobody needs any more (closed, or answered before it was planned)."""
    if case.overdue_improvement_id is None:
        return
    improvement = get_improvement(session=session, improvement_id=case.overdue_improvement_id)
    if improvement.status in (Status.completed, Status.cancelled, Status.rejected):
        return
    for item in _open_steps(session, case.overdue_improvement_id):
        item.status = ActionStatus.cancelled
        session.add(item)
    move(
        session=session,
        improvement_id=case.overdue_improvement_id,
        to=Status.cancelled,
        actor=actor,
        channel=Channel(str(channel)),
        reason=f"Not needed: {why} ({case.reference})",
    )


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
        _record(session, case, "overdue_raised", improvement.reference, SWEEP, Channel.sweep)
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
        _record(
            session, case, "escalated", f"update overdue; {manager.name} told", SWEEP,
            Channel.sweep,
        )  # fmt: skip
        told += 1
    return told


# --- reading -----------------------------------------------------------------------------------


def case_url(case_id: int) -> str:
    return f"{settings.base_url}/cases/{case_id}"


@dataclass(frozen=True)
class CaseFilter:
    """How a list of cases is filtered, the same for the page, the API and the CLI."""

    status: CaseStatus | None = None
    overdue: bool | None = None  # True: the update is due now; False: it is not
    owner_id: int | None = None


def list_cases(
    *,
    session: Session,
    wanted: CaseFilter = CaseFilter(),
    now: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Case], int]:
    """Cases whose update is due soonest first (closed last), and how many match in all."""
    now = now or utcnow()
    conditions = []
    if wanted.status is not None:
        conditions.append(col(Case.status) == wanted.status)
    if wanted.overdue is True:
        conditions.append(col(Case.next_update_due) <= now)
    elif wanted.overdue is False:
        conditions.append(col(Case.next_update_due).is_(None) | (col(Case.next_update_due) > now))
    if wanted.owner_id is not None:
        conditions.append(col(Case.owner_id) == wanted.owner_id)
    rows = session.exec(
        select(Case)
        .where(*conditions)
        .order_by(col(Case.next_update_due).is_(None), col(Case.next_update_due), col(Case.id))
        .offset(offset)
        .limit(limit)
    ).all()
    total = session.exec(select(func.count()).select_from(Case).where(*conditions)).one()
    return list(rows), int(total)


def is_overdue(case: Case, now: datetime) -> bool:
    return case.next_update_due is not None and case.next_update_due <= now


@dataclass
class CaseView:
    """One case with everything its page, the API and the CLI show."""

    case: Case
    customer: Customer
    owner: Colleague
    updates: list[CaseUpdate]
    notes: list[CaseNote]
    overdue_improvement: Improvement | None


def case_view(*, session: Session, case_id: int) -> CaseView:
    case = get_case(session=session, case_id=case_id)
    customer = session.get(Customer, case.customer_id)
    owner = session.get(Colleague, case.owner_id)
    assert customer is not None and owner is not None
    return CaseView(
        case=case,
        customer=customer,
        owner=owner,
        updates=list(
            session.exec(
                select(CaseUpdate).where(CaseUpdate.case_id == case_id).order_by(col(CaseUpdate.id))
            ).all()
        ),
        notes=list(
            session.exec(
                select(CaseNote).where(CaseNote.case_id == case_id).order_by(col(CaseNote.id))
            ).all()
        ),
        overdue_improvement=session.get(Improvement, case.overdue_improvement_id)
        if case.overdue_improvement_id
        else None,
    )
