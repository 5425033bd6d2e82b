"""Customer cases: opening, changing, delaying and closing them, and reading them (updates to the
customer and the overdue check are in tasks/updates.py).

Every function takes a session and keyword arguments and leaves the commit to its caller; every
change to a case writes a CaseNote saying who made it and through which door.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func
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
    Channel,
    Colleague,
    Customer,
    Improvement,
    Status,
)
from models.db import utcnow
from tasks.lifecycle import get_improvement, move

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


def record_note(
    session: Session, case: Case, what: str, note: str, actor: str, channel: str
) -> None:
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
    # No address holds a NUL, and PostgreSQL refuses one even in a query: nobody is found.
    found = (
        session.exec(select(Colleague).where(Colleague.email == email)).first()
        if "\x00" not in email
        else None
    )
    if found is None:
        errors[field_name] = f"no colleague has the email {email!r}"
    elif not found.active:
        errors[field_name] = f"{found.name} is no longer active"
        return None
    return found


def checked_text(
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


def checked_due(
    value: datetime | None, name: str, now: datetime, errors: dict[str, str]
) -> datetime | None:
    """When an update is due, in UTC; it must lie ahead, or the case would be overdue at once."""
    if value is None:
        return None
    value = as_utc(value)
    if value <= now:
        errors[name] = f"must be in the future, not {value:%Y-%m-%d %H:%M} UTC"
    return value


def refuse_if_closed(case: Case) -> None:
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
    customer = (
        session.exec(select(Customer).where(Customer.email == email)).first()
        if "\x00" not in email  # as in _colleague: no address holds a NUL
        else None
    )
    if not email:
        errors["customer_email"] = "is required: the customer the case is for"
    elif customer is None:
        errors["customer_email"] = f"no customer has the email {email!r}"
    subject = checked_text(subject, "subject", SUBJECT_MAX, errors, required=True)
    details = checked_text(details, "details", DETAILS_MAX, errors, required=False)
    owner = _colleague(session, owner_email, "owner_email", errors) if owner_email else by
    due = checked_due(next_update_due, "next_update_due", now, errors)
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
    record_note(
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
    refuse_if_closed(case)
    errors: dict[str, str] = {}
    changes: list[tuple[str, str]] = []
    if subject is not None:
        subject = checked_text(subject, "subject", SUBJECT_MAX, errors, required=True)
        if subject != case.subject:
            changes.append(("subject", f"subject: {case.subject!r} → {subject!r}"))
    if details is not None:
        details = checked_text(details, "details", DETAILS_MAX, errors, required=False)
        if details != case.details:
            changes.append(("details", "details rewritten"))
    owner = _colleague(session, owner_email, "owner_email", errors) if owner_email else None
    if owner is not None and owner.id != case.owner_id:
        before = session.get(Colleague, case.owner_id)
        changes.append(("owner", f"owner: {before.name if before else '?'} → {owner.name}"))
    if promised_on is not UNSET and promised_on != case.promised_on:
        changes.append(("promised", f"promised date: {case.promised_on or 'none'} → {promised_on}"))
    due = checked_due(next_update_due, "next_update_due", now, errors)
    if due is not None and due != case.next_update_due:
        changes.append(("next_update", f"next update due {due:%Y-%m-%d %H:%M} UTC"))
    reason = checked_text(reason, "reason", REASON_MAX, errors, required=False)
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
        record_note(session, case, what, text, by.email, channel)
    if close:
        cancel_overdue(session, case, actor=by.email, channel=channel, why="the case was closed")
        case.status = CaseStatus.closed
        case.next_update_due = None  # a closed case is never due
        case.overdue_improvement_id = None
        record_note(session, case, "closed", reason, by.email, channel)
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
    refuse_if_closed(case)
    errors: dict[str, str] = {}
    reason = checked_text(reason, "reason", REASON_MAX, errors, required=True)
    if "reason" in errors and not reason:
        errors["reason"] = "is required: say why the case is off plan"
    due = checked_due(next_update_due, "next_update_due", now, errors) or default_next_update(now)
    if errors:
        raise InvalidInput(errors)
    case.status = CaseStatus.delayed
    case.delay_reason = reason
    case.next_update_due = due
    case.updated_at = now
    session.add(case)
    record_note(
        session, case, "delayed", f"{reason} (next update due {due:%Y-%m-%d %H:%M} UTC)",
        by.email, channel,
    )  # fmt: skip
    session.flush()
    return case


def open_steps(session: Session, improvement_id: int) -> list[ActionItem]:
    return list(
        session.exec(
            select(ActionItem).where(
                ActionItem.improvement_id == improvement_id,
                ActionItem.status == ActionStatus.open,
            )
        ).all()
    )


def cancel_overdue(
    session: Session, case: Case, *, actor: str, channel: Channel | str, why: str
) -> None:
    """An overdue raise nobody needs any more (closed, or answered before it was planned)."""
    if case.overdue_improvement_id is None:
        return
    improvement = get_improvement(session=session, improvement_id=case.overdue_improvement_id)
    if improvement.status in (Status.completed, Status.cancelled, Status.rejected):
        return
    for item in open_steps(session, case.overdue_improvement_id):
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
