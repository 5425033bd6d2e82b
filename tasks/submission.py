"""Taking in an improvement: validate it, store it with its first history row."""

from typing import TypeVar

from sqlmodel import Session, col, select

from improve.errors import Forbidden, InvalidInput
from models import (
    Access,
    Channel,
    Colleague,
    Customer,
    Improvement,
    ImprovementCreate,
    ImprovementCustomer,
    ImprovementPartner,
    Partner,
    Status,
)
from tasks.lifecycle import record_creation


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
    Everything is checked before anything is written, so bad input leaves no trace.
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
    customers = _find(session, Customer, data.customer_emails, "customer_emails", errors)
    partners = _find(session, Partner, data.partner_emails, "partner_emails", errors)
    if errors:
        raise InvalidInput(errors)
    assert submitter is not None

    improvement = Improvement.model_validate(
        data.model_dump(exclude={"submitter_email", "customer_emails", "partner_emails"}),
        update={"submitter_id": submitter.id, "status": Status.submitted},
    )
    session.add(improvement)
    session.flush()
    assert improvement.id is not None
    for customer_id in customers:
        session.add(ImprovementCustomer(improvement_id=improvement.id, customer_id=customer_id))
    for partner_id in partners:
        session.add(ImprovementPartner(improvement_id=improvement.id, partner_id=partner_id))
    by = by or submitter
    record_creation(
        session=session,
        improvement=improvement,
        actor=by.email,
        channel=channel,
        reason=f"submitted by {by.name} on behalf of {submitter.name}"
        if by.id != submitter.id
        else "",
    )
    return improvement


Contact = TypeVar("Contact", Customer, Partner)


def _find(
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
