"""The invitation link (public, scanner-safe) and the initiative pages and API staff use."""

import re
from datetime import timedelta

import httpx
from sqlalchemy import update
from sqlmodel import Session, select

from improve.settings import settings
from models import Colleague, Invitation, InvitationStatus, OutboxEmail, Purpose
from models.db import utcnow
from tasks.outbox import send_due
from tasks.participation import create_initiative, invite
from tests.factories import link_in, make_colleague, make_customer, make_partner
from tests.smtpd import SmtpServer
from tests.web.conftest import sign_in
from tests.web.helpers import snapshot

INVITED = (Purpose.invitations,)


def invited_partner(session: Session, owner: Colleague | None = None) -> tuple[Invitation, str]:
    """An initiative with one partner invited, and the path of the link their email carries."""
    owner = owner or make_colleague(session, "Priya Shah")
    initiative = create_initiative(
        session=session,
        title="Consolidated deliveries",
        description="One delivery a week to each depot instead of five.",
        owner_id=owner.id,  # type: ignore[arg-type]
    )
    partner = make_partner(session, "Swift Parcels")
    invite(session=session, initiative_id=initiative.id, partner_ids=[partner.id])  # type: ignore[arg-type]
    session.commit()
    row = session.exec(select(OutboxEmail).where(OutboxEmail.template == "partner_invitation"))
    url = link_in(row.one())
    invitation = session.exec(select(Invitation)).one()
    return invitation, url.removeprefix(settings.base_url)


def status_of(session: Session, invitation: Invitation) -> InvitationStatus:
    session.refresh(invitation)
    return invitation.status


def told(session: Session) -> list[OutboxEmail]:
    return list(
        session.exec(select(OutboxEmail).where(OutboxEmail.template == "invitation_answer")).all()
    )


# --- the link ------------------------------------------------------------------------------------


async def test_opening_the_link_shows_the_initiative_and_changes_nothing(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    _, path = invited_partner(session)
    before = snapshot()

    shown = await anonymous.get(path)
    head = await anonymous.head(path)

    assert shown.status_code == 200 and head.status_code == 200
    assert "Consolidated deliveries" in shown.text and "One delivery a week" in shown.text
    assert "Swift Parcels" in shown.text and 'value="accept"' in shown.text
    assert shown.headers["cache-control"] == "no-store"
    assert snapshot() == before


async def test_accepting_records_it_and_the_owner_is_told_once(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    owner = make_colleague(session, "Priya Shah")
    invitation, path = invited_partner(session, owner)

    done = await anonymous.post(path, data={"decision": "accept"})
    again = await anonymous.post(path, data={"decision": "decline"})

    assert done.status_code == 200 and "Thank you for taking part" in done.text
    assert status_of(session, invitation) == InvitationStatus.accepted
    assert invitation.answered_at is not None
    assert again.status_code == 410 and "already been used" in again.text
    assert [e.recipient for e in told(session)] == [owner.email]


async def test_declining_keeps_the_note(anonymous: httpx.AsyncClient, session: Session) -> None:
    invitation, path = invited_partner(session)
    note = "Our vans are already full on Mondays; ask us again in spring."

    done = await anonymous.post(path, data={"decision": "decline", "note": note})

    assert done.status_code == 200 and "Thank you for letting us know" in done.text
    assert note in done.text
    assert status_of(session, invitation) == InvitationStatus.declined
    assert invitation.note == note
    assert told(session)[0].context["note"] == note


async def test_no_choice_or_a_long_note_asks_again_and_changes_nothing(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    _, path = invited_partner(session)
    before = snapshot()

    unchosen = await anonymous.post(path, data={"note": "hello"})
    too_long = await anonymous.post(path, data={"decision": "accept", "note": "x" * 2001})

    assert unchosen.status_code == 422 and "Please choose Accept or Decline" in unchosen.text
    assert too_long.status_code == 422 and "under 2,000 characters" in too_long.text
    assert snapshot() == before


async def test_expired_and_foreign_links_get_a_page_that_says_so(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    invitation, path = invited_partner(session)
    other_id = invitation.id + 1  # type: ignore[operator]
    token = path.rsplit("/", 1)[-1]
    session.add(
        Invitation(initiative_id=invitation.initiative_id, partner_id=make_partner(session).id)
    )
    session.commit()

    foreign = await anonymous.get(f"/invitations/{other_id}/{token}")
    session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id)  # type: ignore[arg-type]
        .values(expires_at=utcnow() - timedelta(minutes=1))
    )
    session.commit()
    expired = await anonymous.post(path, data={"decision": "accept"})

    assert foreign.status_code == 403 and "belongs to a different request" in foreign.text
    assert expired.status_code == 410 and "This link has expired" in expired.text
    assert status_of(session, invitation) == InvitationStatus.invited


# --- staff pages and API -------------------------------------------------------------------------


async def test_inviting_through_the_api_respects_consent_and_sends_each_once(
    client: httpx.AsyncClient, session: Session, smtp: SmtpServer
) -> None:
    yes = make_customer(session, "Ann Yes", consents=INVITED)
    no = make_customer(session, "Bob No", consents=())
    partner = make_partner(session, "Swift Parcels")
    made = await client.post(
        "/api/initiatives",
        json={"title": "Paperless statements", "description": "Statements by email."},
    )
    assert made.status_code == 201, made.text
    url = made.headers["location"] + "/invitations"
    body = {"customer_emails": [yes.email, no.email], "partner_emails": [partner.email]}

    first = await client.post(url, json=body)
    second = await client.post(url, json=body)
    await send_due()

    assert first.json() == {"invited": 2, "already_invited": 0, "not_consented": 1}
    assert second.json() == {"invited": 0, "already_invited": 2, "not_consented": 1}
    assert sorted(r for m in smtp.received for r in m.recipients) == sorted(
        [yes.email, partner.email]
    )
    read = (await client.get(made.headers["location"])).json()
    assert read["customers"] == {"invited": 1, "accepted": 0, "declined": 0, "waiting": 1}
    assert read["partners"]["invited"] == 1 and read["owner_email"] == "olu.operations@example.org"
    assert [i["name"] for i in read["invitations"]] == ["Ann Yes", "Swift Parcels"]


async def test_the_api_names_an_unknown_email_and_invites_nobody(
    client: httpx.AsyncClient, session: Session
) -> None:
    known = make_customer(session, consents=INVITED)
    made = (await client.post("/api/initiatives", json={"title": "Returnable packaging"})).json()

    refused = await client.post(
        f"/api/initiatives/{made['id']}/invitations",
        json={"customer_emails": [known.email, "nobody@example.com"]},
    )
    missing = await client.post("/api/initiatives/999/invitations", json={})
    bad_owner = await client.post(
        "/api/initiatives", json={"title": "Solar", "owner_email": "who@example.org"}
    )

    assert refused.status_code == 422
    assert refused.json()["errors"] == {"customer_emails": "unknown: nobody@example.com"}
    assert missing.status_code == 404 and "initiative 999 not found" in missing.json()["detail"]
    assert bad_owner.status_code == 422 and "owner_email" in bad_owner.json()["errors"]
    assert session.exec(select(Invitation)).all() == []


async def test_only_the_owner_or_operations_may_invite(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    owner = make_colleague(session, "Priya Shah")
    other = make_colleague(session, "Sam Lee")
    partner = make_partner(session)
    initiative = create_initiative(session=session, title="Solar roofs", owner_id=owner.id)  # type: ignore[arg-type]
    session.commit()
    path = f"/initiatives/{initiative.id}/invitations"

    sign_in(anonymous, other)
    refused = await anonymous.post(path, data={"partner_ids": [str(partner.id)]})
    page = await anonymous.get(f"/initiatives/{initiative.id}")
    sign_in(anonymous, owner)
    sent = await anonymous.post(path, data={"partner_ids": [str(partner.id)]})

    assert refused.status_code == 403 and "owner or operations" in refused.text
    assert "Send invitations" not in page.text
    assert sent.status_code == 303
    assert (
        sent.headers["location"]
        == f"/initiatives/{initiative.id}?invited=1&already_invited=0&not_consented=0"
    )
    assert len(session.exec(select(Invitation)).all()) == 1


async def test_the_pages_show_each_initiative_its_counts_and_who_answered_what(
    client: httpx.AsyncClient, session: Session
) -> None:
    customers = [make_customer(session, f"Customer {n}", consents=INVITED) for n in (1, 2)]
    started = await client.post(
        "/initiatives",
        data={"title": "Paperless statements", "description": "By email.", "improvement": ""},
    )
    assert started.status_code == 303, started.text
    page_path = started.headers["location"]
    emails = f"{customers[0].email},\n{customers[1].email}; nobody@example.com"

    unknown = await client.post(f"{page_path}/invitations", data={"customer_emails": emails})
    sent = await client.post(
        f"{page_path}/invitations", data={"customer_emails": emails.rsplit(";", 1)[0]}
    )
    row = session.exec(select(OutboxEmail).where(OutboxEmail.template == "invitation")).first()
    assert row is not None
    link = link_in(row).removeprefix(settings.base_url)
    await client.post(link, data={"decision": "accept", "note": "Happy to."})
    shown = await client.get(sent.headers["location"])
    listed = await client.get("/initiatives")

    assert unknown.status_code == 422 and "unknown: nobody@example.com" in unknown.text
    assert "2 invited now" in shown.text
    assert "Customer 1" in shown.text and "Happy to." in shown.text and "Accepted" in shown.text
    assert "No answer" in shown.text
    assert "Paperless statements" in listed.text and 'href="/initiatives"' in listed.text


async def test_a_wrong_method_lists_every_method_the_path_takes(client: httpx.AsyncClient) -> None:
    answer = await client.request("OPTIONS", "/api/initiatives")

    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, POST"


async def test_an_expired_invitation_is_sent_again_from_the_page_and_the_api(
    anonymous: httpx.AsyncClient, session: Session, smtp: SmtpServer
) -> None:
    owner = make_colleague(session, "Priya Shah")
    invitation, old_path = invited_partner(session, owner)
    again = f"/initiatives/{invitation.initiative_id}/invitations/{invitation.id}/again"
    sign_in(anonymous, owner)
    page = await anonymous.get(f"/initiatives/{invitation.initiative_id}")
    assert "Invite again" not in page.text  # the link still works
    open_yet = await anonymous.post(again)
    assert open_yet.status_code == 409 and "still open until" in open_yet.text

    session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id)  # type: ignore[arg-type]
        .values(expires_at=utcnow() - timedelta(minutes=1))
    )
    session.commit()
    page = await anonymous.get(f"/initiatives/{invitation.initiative_id}")
    assert "Link expired" in page.text and "Invite again" in page.text
    sign_in(anonymous, make_colleague(session, "Sam Lee"))
    before = snapshot()
    refused = await anonymous.post(again)
    assert refused.status_code == 403 and snapshot() == before
    sign_in(anonymous, owner)

    done = await anonymous.post(again)

    assert done.status_code == 303
    shown = await anonymous.get(done.headers["location"])
    assert "Invited again, with a new link" in shown.text
    assert (await anonymous.post(f"/api{again}")).status_code == 409  # open again: refused
    await send_due()
    [_, renewed] = smtp.received
    found = re.search(r"https?://\S+/invitations/\d+/[\w-]+", renewed.text)
    assert found is not None
    new_path = found[0].removeprefix(settings.base_url)
    assert (await anonymous.get(old_path)).status_code == 410  # replaced by the new one
    accepted = await anonymous.post(new_path, data={"decision": "accept"})
    assert accepted.status_code == 200
    assert status_of(session, invitation) == InvitationStatus.accepted


async def test_a_customer_who_reads_welsh_answers_on_a_welsh_page(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    owner = make_colleague(session, "Priya Shah")
    initiative = create_initiative(session=session, title="Datganiadau di-bapur", owner_id=owner.id)  # type: ignore[arg-type]
    cerys = make_customer(session, "Cerys Owen", consents=INVITED, language="cy")
    ann = make_customer(session, "Ann Hughes", consents=INVITED, language="en")
    invite(session=session, initiative_id=initiative.id, customer_ids=[cerys.id, ann.id])  # type: ignore[arg-type]
    session.commit()
    rows = session.exec(select(OutboxEmail).where(OutboxEmail.template == "invitation")).all()
    path = {r.recipient: link_in(r).removeprefix(settings.base_url) for r in rows}
    welsh, english = path[cerys.email], path[ann.email]

    shown = await anonymous.get(welsh)
    assert shown.status_code == 200 and '<html lang="cy">' in shown.text
    assert "Annwyl Cerys Owen" in shown.text and "Derbyn: rwy'n cymryd rhan" in shown.text
    unanswered = await anonymous.post(welsh, data={})
    assert unanswered.status_code == 422 and "Dewiswch Derbyn neu Gwrthod." in unanswered.text
    done = await anonymous.post(welsh, data={"decision": "accept"})
    assert done.status_code == 200 and "Diolch am gymryd rhan" in done.text

    shown = await anonymous.get(english)
    assert '<html lang="en">' in shown.text and "Accept: count me in" in shown.text
