"""Taking in an improvement: validate it, store it with its first history row, once per key."""

import hashlib
import json
from datetime import datetime, timedelta
from typing import TypeVar

from sqlmodel import Session, col, select

from improve.errors import Forbidden, InvalidInput
from models import (
    Access,
    Basis,
    Channel,
    Colleague,
    Customer,
    IdempotencyKey,
    Improvement,
    ImprovementCreate,
    ImprovementCustomer,
    ImprovementPartner,
    Partner,
    Source,
    Status,
)
from models.db import utcnow
from tasks.estimates import set_activity
from tasks.lifecycle import record_creation

# How long a key answers for its submission; after that it is forgotten and may be used again.
KEY_LIFETIME = timedelta(hours=24)


class IdempotencyKeyReused(InvalidInput):
    """A key that already made an improvement, sent again with a different submission."""

    def __init__(self, field: str, improvement_id: int) -> None:
        super().__init__(
            {
                field: f"was already used for IMP-{improvement_id} with a different submission; "
                "send a new key for a new improvement"
            }
        )
        self.improvement_id = improvement_id


def submit_improvement(
    *, session: Session, data: ImprovementCreate, channel: Channel, by: Colleague | None = None
) -> Improvement:
    """Store a submitted improvement in the caller's transaction, or raise InvalidInput.

    The one submission path of the web form, the API and the CLI. Each field was checked when
    `data` was made (ImprovementCreate: numbers finite, non-negative and in range; a real title);
    here what needs the database: the submitter, the customers and partners, who may submit for
    whom. `by` is the signed-in colleague (web and API): the submitter unless the data names
    someone else, which only operations may do; the history then says who submitted it for whom.
    Without `by` (the CLI, run by whoever runs Improve) the data must name the submitter.
    Everything is checked before anything is written, so bad input leaves no trace; activity
    lines (worked out into the estimate) are checked as they are written, and the caller's
    transaction, never committed, takes them back.
    The caller commits, then announces it (improve.events.emit_submitted).
    """
    errors: dict[str, str] = {}
    email = (data.submitter_email or (by.email if by else "")).strip().lower()
    submitter = session.exec(select(Colleague).where(Colleague.email == email)).first()
    if by is not None and by.email != email and not Access(by.access).includes(Access.operations):
        raise Forbidden(
            f"Submitting for someone else needs the operations role; you are signed in as "
            f"{by.name}, whose role is {by.access}. Leave submitter_email out to submit as "
            "yourself."
        )
    if not email:
        errors["submitter_email"] = "is required: the colleague who suggests it"
    elif submitter is None:
        errors["submitter_email"] = f"no colleague has the email {email!r}"
    elif not submitter.active:
        errors["submitter_email"] = f"{submitter.name} is no longer active"
    customers = find_contacts(session, Customer, data.customer_emails, "customer_emails", errors)
    partners = find_contacts(session, Partner, data.partner_emails, "partner_emails", errors)
    if errors:
        raise InvalidInput(errors)
    assert submitter is not None

    by = by or submitter
    return _store(
        session,
        data,
        submitter_id=submitter.id,
        customer_ids=customers,
        partner_ids=partners,
        actor=by.email,
        channel=channel,
        reason=f"submitted by {by.name} on behalf of {submitter.name}"
        if by.id != submitter.id
        else "",
    )


def submit_customer_suggestion(
    *, session: Session, data: ImprovementCreate, customer: Customer, channel: Channel
) -> Improvement:
    """Store a customer's confirmed suggestion as a `customer` improvement, uncommitted.

    Submitted by no colleague (so any colleague with the authority may approve it), linked to the
    customer, who hears what becomes of it; otherwise stored as every other submission is. The
    caller commits, then announces it (improve.events.emit_submitted).
    """
    assert customer.id is not None
    return _store(
        session,
        data.model_copy(update={"source": Source.customer}),
        submitter_id=None,
        customer_ids=[customer.id],
        partner_ids=[],
        actor=customer.email,
        channel=channel,
        reason="suggested by a customer through the public suggestion form",
    )


def _store(
    session: Session,
    data: ImprovementCreate,
    *,
    submitter_id: int | None,
    customer_ids: list[int],
    partner_ids: list[int],
    actor: str,
    channel: Channel,
    reason: str,
) -> Improvement:
    """Write a checked submission: the improvement, its estimate, whom it touches, its history."""
    improvement = Improvement.model_validate(
        data.model_dump(
            exclude={"submitter_email", "customer_emails", "partner_emails", "activities"}
        ),
        update={"submitter_id": submitter_id, "status": Status.submitted},
    )
    session.add(improvement)
    session.flush()
    assert improvement.id is not None
    if data.activities:
        # The lines set the estimate (typed figures give way), in this transaction: a missing
        # factor refuses the whole submission, naming the line (activities[n].activity).
        set_activity(
            session=session,
            improvement_id=improvement.id,
            basis=Basis.forecast,
            lines=data.activities,
        )
    for customer_id in customer_ids:
        session.add(ImprovementCustomer(improvement_id=improvement.id, customer_id=customer_id))
    for partner_id in partner_ids:
        session.add(ImprovementPartner(improvement_id=improvement.id, partner_id=partner_id))
    record_creation(
        session=session, improvement=improvement, actor=actor, channel=channel, reason=reason
    )
    return improvement


Contact = TypeVar("Contact", Customer, Partner)


def find_contacts(
    session: Session,
    table: type[Contact],
    emails: list[str],
    field: str,
    errors: dict[str, str],
) -> list[int]:
    """The ids of the contacts with these emails; any unknown email is reported under `field`."""
    wanted = {email.strip().lower() for email in emails if email.strip()}
    if not wanted:
        return []
    found = session.exec(select(table).where(col(table.email).in_(wanted))).all()
    missing = wanted - {row.email for row in found}
    if missing:
        errors[field] = f"unknown: {', '.join(sorted(missing))}"
    return [row.id for row in found if row.id is not None]


def request_hash(data: ImprovementCreate) -> str:
    """A fingerprint of a submission as validated, so a repeat can be told from a new one."""
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def find_submission(
    *,
    session: Session,
    colleague_id: int,
    key: str,
    data: ImprovementCreate,
    field: str,
    now: datetime | None = None,
) -> int | None:
    """The improvement this colleague's key already made, or None if it made none yet.

    The same key with a different submission raises IdempotencyKeyReused naming `field` (the
    header or form field the key came in). A key older than KEY_LIFETIME is forgotten: its row
    is deleted in the caller's transaction, so the key may make a new improvement.
    """
    row = session.exec(
        select(IdempotencyKey).where(
            IdempotencyKey.colleague_id == colleague_id, IdempotencyKey.key == key
        )
    ).first()
    if row is None:
        return None
    if row.created_at <= (now or utcnow()) - KEY_LIFETIME:
        session.delete(row)
        session.flush()
        return None
    if row.request_hash != request_hash(data):
        raise IdempotencyKeyReused(field, row.improvement_id)
    return row.improvement_id


def remember_submission(
    *, session: Session, colleague_id: int, key: str, data: ImprovementCreate, improvement_id: int
) -> None:
    """Record in the caller's transaction that this key made this improvement.

    The unique (colleague_id, key) constraint fails the commit of a second, concurrent
    submission with the same key; its caller rolls back and answers with the first.
    """
    session.add(
        IdempotencyKey(
            colleague_id=colleague_id,
            key=key,
            request_hash=request_hash(data),
            improvement_id=improvement_id,
        )
    )
