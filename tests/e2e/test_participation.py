"""A partner accepts an invitation, on the running stack: invited through the API, the email sent
by the sweep, the link followed as a person would (look, then press Accept), the owner told once,
and the initiative's page and API show it accepted."""

import httpx
import pytest
from sqlmodel import Session

from improve.stack import Stack
from models import Access
from tests.e2e.helpers import browser_of, links, mail_to, run_sweep, wait_for_mail
from tests.factories import make_colleague, make_partner
from tests.smtpd import SmtpServer

pytestmark = pytest.mark.e2e


async def test_a_partner_accepts_an_invitation_and_the_owner_is_told_once(
    session: Session,
    smtp: SmtpServer,
    web: httpx.Client,
    stack: Stack,
    request: pytest.FixtureRequest,
) -> None:
    owner = make_colleague(session, "Priya Shah", access=Access.colleague)
    swift = make_partner(session, "Swift Parcels", contact_name="Lee Ray")
    made = web.post(
        "/api/initiatives",
        json={
            "title": "Consolidated deliveries",
            "description": "One delivery a week to each depot instead of five.",
            "owner_email": owner.email,
        },
    )
    assert made.status_code == 201, made.text
    initiative = made.json()

    invited = web.post(
        f"/api/initiatives/{initiative['id']}/invitations",
        json={"partner_emails": [swift.email]},
    )
    assert invited.json() == {"invited": 1, "already_invited": 0, "not_consented": 0}
    await run_sweep()  # sends the outbox, as the scheduled sweep does every few minutes

    (invitation,) = await wait_for_mail(smtp, swift.email, "An invitation for Swift Parcels")
    assert "Dear Lee Ray" in invitation.text and "One delivery a week" in invitation.text
    (link,) = links(invitation, "invitations")
    # The partner's own browser: no sign-in, only the link.
    partner = httpx.Client(timeout=30.0)
    request.addfinalizer(partner.close)
    shown = partner.get(link)
    assert shown.status_code == 200 and "Accept" in shown.text
    waiting = web.get(f"/api/initiatives/{initiative['id']}").json()
    assert waiting["partners"] == {"invited": 1, "accepted": 0, "declined": 0, "waiting": 1}

    accepted = partner.post(link, data={"decision": "accept", "note": "Mondays suit us."})
    assert accepted.status_code == 200 and "Thank you for taking part" in accepted.text
    assert partner.post(link, data={"decision": "decline"}).status_code == 410
    await run_sweep()
    await run_sweep()  # a second sweep sends nothing more

    (told,) = await wait_for_mail(smtp, owner.email, "Swift Parcels accepted")
    assert "Mondays suit us." in told.text
    assert len(mail_to(smtp, owner.email, "accepted")) == 1
    assert len(mail_to(smtp, swift.email, "An invitation")) == 1
    read = web.get(f"/api/initiatives/{initiative['id']}").json()
    assert read["partners"] == {"invited": 1, "accepted": 1, "declined": 0, "waiting": 0}
    [answer] = read["invitations"]
    assert answer["status"] == "accepted" and answer["note"] == "Mondays suit us."
    assert answer["answered_at"] is not None
    with browser_of(stack, owner.id) as browser:  # type: ignore[arg-type]
        page = browser.get(f"/initiatives/{initiative['id']}")
    assert page.status_code == 200
    assert "Swift Parcels" in page.text and "Accepted" in page.text
    assert "Mondays suit us." in page.text
