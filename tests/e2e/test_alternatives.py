"""A customer whose need cannot be met, on the running stack: alternatives approved, offered by
email, chosen by link, planned, done and told; or declined and back with the owner."""

from collections import Counter
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from improve.stack import Stack
from models import (
    Alternative,
    AlternativeStatus,
    Case,
    CaseNote,
    CaseStatus,
    Category,
    Improvement,
    Status,
)
from tests.e2e.helpers import eventually, links, mail_to, wait_for_mail
from tests.factories import make_approver, make_authority, make_case, make_colleague, make_customer
from tests.smtpd import SmtpServer

pytestmark = pytest.mark.e2e
REASON = "The heater model is no longer made and no replacement part fits it."


def cannot_meet(web: httpx.Client, case: Case, **alternative: str) -> None:
    """The owner's form, as the case page sends it (here with an operations API token)."""
    fields = {f"alternatives.1.{name}": value for name, value in alternative.items()}
    sent = web.post(f"/cases/{case.id}/cannot-meet", data={"reason": REASON, **fields})
    assert sent.status_code == 303, sent.text


def case_status(session: Session, case: Case) -> CaseStatus:
    session.expire_all()
    found = session.get(Case, case.id)
    assert found is not None
    return found.status


def assert_each_email_once(smtp: SmtpServer) -> None:
    repeated = [mid for mid, n in Counter(m.message_id for m in smtp.received).items() if n > 1]
    assert repeated == [], f"sent more than once: {repeated}"


async def test_an_approved_alternative_is_offered_accepted_planned_and_done(
    session: Session, smtp: SmtpServer, web: httpx.Client, stack: Stack
) -> None:
    dana = make_colleague(session, "Dana Owner")
    make_authority(session, dana, Category.alternative_solution, 100)
    alex = make_approver(session, "Alex Approver", category=Category.alternative_solution)
    ames = make_customer(session, "Mrs Ames", email="ames@example.com")
    case = make_case(session, dana, ames)

    cannot_meet(
        web,
        case,
        description="Fit a new efficient heater",
        cost="900",
        benefit="a modern heater that costs less to run",
        days_to_deliver="10",
    )

    # Beyond Dana's £100: Alex is asked, and reads the cost and benefit in the email.
    summary = "£900 to us; the customer gets a modern heater that costs less to run within 10 days"
    (request,) = await wait_for_mail(smtp, alex.email, "Alternative for CASE-")
    assert summary in request.text and REASON in request.text
    assert case_status(session, case) == CaseStatus.cannot_meet
    (approve,) = links(request, "approvals")
    decided = web.post(approve, data={"decision": "approve", "comment": "Fair for a failed heater"})
    assert decided.status_code == 200, decided.text

    # The customer is offered it, with the reason, and one link to choose.
    (offer,) = await wait_for_mail(smtp, ames.email, "Other ways we can help")
    assert REASON in offer.text and "Fit a new efficient heater" in offer.text
    assert "£900" not in offer.text
    (choose,) = links(offer, "choices")
    assert case_status(session, case) == CaseStatus.awaiting_customer
    shown = web.get(choose)
    assert shown.status_code == 200 and "Fit a new efficient heater" in shown.text
    assert case_status(session, case) == CaseStatus.awaiting_customer  # looking changed nothing
    alternative = session.exec(select(Alternative).where(Alternative.case_id == case.id)).one()
    accepted = web.post(choose, data={"decision": "accept", "alternative": str(alternative.id)})
    assert accepted.status_code == 200, accepted.text

    # The plan: Dana is told, and owns the steps a person does, each with its own link.
    await wait_for_mail(smtp, dana.email, "accepted an alternative")
    assignments = await wait_for_mail(smtp, dana.email, "Action for you", count=2)
    action_links = sorted(
        (link for m in assignments for link in links(m, "actions")),
        key=lambda link: int(link.rsplit("/", 2)[-2]),
    )
    for link in action_links:
        done = web.post(link, data={"note": "Done with the customer"})
        assert done.status_code == 200, done.text
        # The automatic step after the first tells the customer what is being arranged.
        await wait_for_mail(smtp, ames.email, "We are arranging what you chose")

    # Completed, and the customer hears it is done; the case is closed.
    (told,) = await wait_for_mail(smtp, ames.email, "Done: Fit a new efficient heater")
    assert "what you chose is now done" in told.text

    def closed() -> bool:
        return case_status(session, case) == CaseStatus.closed

    await eventually(closed, "the case to close", lambda: str(case_status(session, case)))
    session.expire_all()
    improvement = session.get(Improvement, alternative.improvement_id)
    assert improvement is not None and improvement.status == Status.completed
    notes = [n.what for n in session.exec(select(CaseNote).where(CaseNote.case_id == case.id))]
    assert notes == [
        "cannot_meet",
        "alternative_proposed",
        "alternative_approved",
        "offered",
        "accepted",
        "closed",
    ]
    assert web.get(choose).status_code == 410  # the choice link is used up
    assert len(mail_to(smtp, ames.email, "Other ways we can help")) == 1
    assert_each_email_once(smtp)


async def test_a_declined_offer_goes_back_to_the_owner_with_the_note(
    session: Session, smtp: SmtpServer, web: httpx.Client
) -> None:
    dana = make_colleague(session, "Dana Owner")
    make_authority(session, dana, Category.alternative_solution, 100)
    ames = make_customer(session, "Mrs Ames", email="ames@example.com")
    case = make_case(session, dana, ames)

    # Within Dana's own authority: offered at once, with no approver asked.
    cannot_meet(
        web,
        case,
        description="Lend a portable heater",
        cost="40",
        benefit="a warm home until the heater is replaced",
        days_to_deliver="1",
    )
    (offer,) = await wait_for_mail(smtp, ames.email, "Other ways we can help")
    (choose,) = links(offer, "choices")
    note = "A loan does not help: I need the heater itself replaced."

    declined = web.post(choose, data={"decision": "decline", "note": note})

    assert declined.status_code == 200, declined.text
    (told,) = await wait_for_mail(smtp, dana.email, "declined the alternatives")
    assert note in told.text
    session.expire_all()
    reopened = session.get(Case, case.id)
    assert reopened is not None and reopened.status == CaseStatus.open
    assert reopened.next_update_due is not None
    alternative: Any = session.exec(select(Alternative).where(Alternative.case_id == case.id)).one()
    assert alternative.status == AlternativeStatus.declined
    assert session.exec(select(Improvement)).all() == []
    again = web.post(choose, data={"decision": "accept", "alternative": str(alternative.id)})
    assert again.status_code == 410 and "already been used" in again.text
