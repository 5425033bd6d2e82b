"""The demo's initiatives: paperless statements with customers invited (some answered), and a
partner's consolidated deliveries with one partner invited, waiting for its answer."""

from sqlmodel import Session, col, select

from models import (
    Colleague,
    Customer,
    Improvement,
    Initiative,
    Invitation,
    OutboxEmail,
    Partner,
    Purpose,
)
from tasks.consent import consenting_customer_ids
from tasks.mail import context_of
from tasks.participation import answer, create_initiative, invite

PAPERLESS = "Paperless statements"
DELIVERIES = "Consolidated deliveries with Swift Parcels"
INVITED = 8  # customers who agreed to invitations, by id
# (accept, note) of the first customers invited, answered as each would from their email's link;
# the others have not answered yet.
ANSWERS = [
    (True, ""),
    (True, "Happy to, as long as I can still ask for a paper copy."),
    (True, ""),
    (False, "I file my statements on paper, thank you."),
]


def seed_initiatives(*, session: Session, owner_email: str) -> int:
    """The two demo initiatives, once (by title); how many were made (0 the second time)."""
    if session.exec(select(Initiative.id).where(Initiative.title == PAPERLESS)).first():
        return 0
    owner = session.exec(select(Colleague).where(Colleague.email == owner_email)).one()
    assert owner.id is not None
    improvement = session.exec(
        select(Improvement).where(col(Improvement.title).startswith("Paperless statements"))
    ).first()
    paperless = create_initiative(
        session=session,
        title=PAPERLESS,
        description=(
            "Get your statements by email instead of by post: the same statement, on the same "
            "day, with no paper, no envelope and no van to bring it. You can ask for a paper copy "
            "of any statement whenever you need one."
        ),
        improvement_id=improvement.id if improvement else None,
        owner_id=owner.id,
    )
    assert paperless.id is not None
    everyone = [i for i in session.exec(select(Customer.id).order_by(col(Customer.id))) if i]
    agreed = consenting_customer_ids(
        session=session, customer_ids=everyone, purpose=Purpose.invitations
    )
    invite(session=session, initiative_id=paperless.id, customer_ids=sorted(agreed)[:INVITED])
    invitations = session.exec(
        select(Invitation)
        .where(Invitation.initiative_id == paperless.id)
        .order_by(col(Invitation.id))
    ).all()
    for (accept, note), invitation in zip(ANSWERS, invitations, strict=False):
        email = session.exec(
            select(OutboxEmail).where(OutboxEmail.idempotency_key == f"invitation:{invitation.id}")
        ).one()
        token = str(context_of(email)["url"]).rsplit("/", 1)[-1]
        assert invitation.id is not None
        answer(session=session, invitation_id=invitation.id, token=token, accept=accept, note=note)

    deliveries = create_initiative(
        session=session,
        title=DELIVERIES,
        description=(
            "One collection and one delivery a week to each depot instead of one a day: fewer van "
            "miles for Swift Parcels and for us, and one delivery note to check instead of five."
        ),
        owner_id=owner.id,
    )
    assert deliveries.id is not None
    swift = session.exec(select(Partner).where(Partner.name == "Swift Parcels")).first()
    if swift is not None and swift.id is not None:
        invite(session=session, initiative_id=deliveries.id, partner_ids=[swift.id])
    session.flush()
    return 2
