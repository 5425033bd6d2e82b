"""Initiatives and invitations: who is invited (consent), once each, the emails they read, their
answers by link, the owner told once, and the counts the pages and the impact report show."""

import re
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from improve.errors import InvalidInput, LinkRefused
from models import (
    ContactFormat,
    Invitation,
    InvitationStatus,
    OutboxEmail,
    OutboxStatus,
    Purpose,
)
from models.db import utcnow
from tasks.consent import record_consent
from tasks.links import check_invitation_link
from tasks.outbox import send_due
from tasks.participation import (
    NotExpired,
    answer,
    contacts_by_email,
    create_initiative,
    invite,
    invite_again,
    participation,
    participation_summary,
)
from tests.factories import (
    link_in,
    make_colleague,
    make_customer,
    make_improvement,
    make_partner,
)
from tests.smtpd import SmtpServer

INVITED = (Purpose.invitations,)


def start(session: Session, **fields: object):
    owner = fields.pop("owner", None) or make_colleague(session, "Priya Shah")
    initiative = create_initiative(
        session=session,
        title=str(fields.pop("title", "Paperless statements")),
        description=str(fields.pop("description", "Your statements by email, not by post.")),
        owner_id=owner.id,
        **fields,  # type: ignore[arg-type]
    )
    session.commit()
    return initiative, owner


def emails(session: Session, template: str | None = None) -> list[OutboxEmail]:
    query = select(OutboxEmail).order_by(OutboxEmail.id)
    if template:
        query = query.where(OutboxEmail.template == template)
    return list(session.exec(query).all())


def token_of(row: OutboxEmail) -> str:
    return link_in(row).rsplit("/", 1)[-1]


def invitation_for(session: Session, row: OutboxEmail) -> Invitation:
    invitation_id = int(link_in(row).rsplit("/", 2)[-2])
    found = session.get(Invitation, invitation_id, populate_existing=True)
    assert found is not None
    return found


def test_an_initiative_needs_a_title_a_real_owner_and_a_real_improvement(session: Session) -> None:
    owner = make_colleague(session)

    with pytest.raises(InvalidInput) as refused:
        create_initiative(
            session=session, title="  ", description="x" * 4001, owner_id=owner.id,
            improvement_id=999,
        )  # fmt: skip

    assert set(refused.value.errors) == {"title", "description", "improvement_id"}
    assert "IMP-999" in refused.value.errors["improvement_id"]
    improvement = make_improvement(session, owner)
    initiative, _ = start(session, owner=owner, improvement_id=improvement.id)
    assert initiative.improvement_id == improvement.id and initiative.owner_id == owner.id


def test_customers_are_invited_only_with_consent_partners_always_and_each_once(
    session: Session,
) -> None:
    initiative, _ = start(session)
    yes = make_customer(session, "Ann Yes", consents=INVITED)
    no = make_customer(session, "Bob No", consents=(Purpose.improvement_updates,))
    partner = make_partner(session, "Swift Parcels")

    first = invite(
        session=session, initiative_id=initiative.id, customer_ids=[yes.id, no.id],
        partner_ids=[partner.id],
    )  # fmt: skip
    session.commit()
    again = invite(
        session=session, initiative_id=initiative.id, customer_ids=[yes.id, no.id, yes.id],
        partner_ids=[partner.id],
    )  # fmt: skip
    session.commit()

    assert first.as_dict() == {"invited": 2, "already_invited": 0, "not_consented": 1}
    assert again.as_dict() == {"invited": 0, "already_invited": 2, "not_consented": 1}
    rows = session.exec(select(Invitation)).all()
    assert {(r.customer_id, r.partner_id) for r in rows} == {(yes.id, None), (None, partner.id)}
    queued = emails(session)
    assert sorted(e.template for e in queued) == ["invitation", "partner_invitation"]
    assert {e.idempotency_key for e in queued} == {f"invitation:{r.id}" for r in rows}
    assert {e.recipient for e in queued} == {yes.email, partner.email}
    customer_email = emails(session, "invitation")[0]
    assert customer_email.context["purpose"] == Purpose.invitations.value
    # Only the hash is stored: the link in the email is what opens it.
    invitation = invitation_for(session, customer_email)
    assert invitation.token_hash and token_of(customer_email) not in str(invitation.token_hash)


def test_unknown_people_are_named_and_nothing_is_stored(session: Session) -> None:
    initiative, _ = start(session)
    known = make_customer(session, consents=INVITED)

    with pytest.raises(InvalidInput) as refused:
        contacts_by_email(
            session=session,
            customer_emails=[known.email, "nobody@example.com"],
            partner_emails=["ghost@example.net"],
        )
    with pytest.raises(InvalidInput) as by_id:
        invite(session=session, initiative_id=initiative.id, customer_ids=[known.id, 999_999])

    assert refused.value.errors == {
        "customer_emails": "unknown: nobody@example.com",
        "partner_emails": "unknown: ghost@example.net",
    }
    assert by_id.value.errors == {"customer_ids": "unknown: 999999"}
    session.rollback()
    assert session.exec(select(Invitation)).all() == [] and emails(session) == []


async def test_each_reads_the_invitation_in_their_language_and_format_with_a_way_out(
    session: Session, smtp: SmtpServer
) -> None:
    initiative, _ = start(session, title="Returnable packaging")
    welsh = make_customer(session, "Siân Jones", consents=INVITED, language="cy")
    plain = make_customer(session, "Ken Ito", consents=INVITED, contact_format=ContactFormat.text)
    partner = make_partner(session, "Swift Parcels", contact_name="Lee Ray")
    invite(
        session=session, initiative_id=initiative.id, customer_ids=[welsh.id, plain.id],
        partner_ids=[partner.id],
    )  # fmt: skip
    session.commit()

    await send_due()

    [cy] = smtp.handler.to(welsh.email)
    assert cy.subject == "Gwahoddiad i gymryd rhan: Returnable packaging"
    assert "Annwyl Siân Jones" in cy.text and "/invitations/" in cy.text
    assert "/unsubscribe/" in cy.message["List-Unsubscribe"]
    [text] = smtp.handler.to(plain.email)
    assert not text.message.is_multipart() and "Your statements by email" in text.text
    [business] = smtp.handler.to(partner.email)
    assert business.subject == "An invitation for Swift Parcels: Returnable packaging"
    assert "Dear Lee Ray" in business.text and "/invitations/" in business.text
    assert business.message["List-Unsubscribe"] is None


async def test_an_invitation_waiting_when_consent_is_withdrawn_is_not_sent(
    session: Session, smtp: SmtpServer
) -> None:
    from tasks.consent import record_consent

    initiative, _ = start(session)
    customer = make_customer(session, consents=INVITED)
    invite(session=session, initiative_id=initiative.id, customer_ids=[customer.id])
    session.commit()
    record_consent(
        session=session, customer=customer, purpose=Purpose.invitations, granted=False,
        channel="phone",
    )  # fmt: skip
    session.commit()

    await send_due()

    assert smtp.received == []
    [row] = emails(session)
    session.refresh(row)
    assert row.status == OutboxStatus.skipped


def test_accepting_records_when_and_tells_the_owner_once(session: Session) -> None:
    initiative, owner = start(session)
    partner = make_partner(session, "Swift Parcels")
    invite(session=session, initiative_id=initiative.id, partner_ids=[partner.id])
    session.commit()
    [row] = emails(session, "partner_invitation")
    invitation = invitation_for(session, row)
    before = utcnow()

    answered = answer(
        session=session, invitation_id=invitation.id, token=token_of(row), accept=True,
        note="  We can start in March.  ",
    )  # fmt: skip
    session.commit()

    assert answered.status == InvitationStatus.accepted
    assert answered.note == "We can start in March."
    assert answered.answered_at is not None and answered.answered_at >= before
    [told] = emails(session, "invitation_answer")
    assert told.recipient == owner.email
    assert told.context["who"] == "Swift Parcels" and told.context["accepted"] is True
    assert told.context["counts"] == {"invited": 1, "accepted": 1, "declined": 0, "waiting": 0}
    with pytest.raises(LinkRefused) as again:
        answer(session=session, invitation_id=invitation.id, token=token_of(row), accept=False)
    assert again.value.kind == "used" and "accepted" in str(again.value)
    session.rollback()
    assert len(emails(session, "invitation_answer")) == 1


def test_declining_keeps_the_note_and_a_long_note_is_refused_naming_it(session: Session) -> None:
    initiative, _ = start(session)
    customer = make_customer(session, consents=INVITED)
    invite(session=session, initiative_id=initiative.id, customer_ids=[customer.id])
    session.commit()
    [row] = emails(session, "invitation")
    invitation = invitation_for(session, row)

    with pytest.raises(InvalidInput) as refused:
        answer(
            session=session, invitation_id=invitation.id, token=token_of(row), accept=False,
            note="x" * 2001,
        )  # fmt: skip
    session.rollback()
    assert set(refused.value.errors) == {"note"}
    assert invitation_for(session, row).status == InvitationStatus.invited

    answer(
        session=session, invitation_id=invitation.id, token=token_of(row), accept=False,
        note="We already get e-statements from our bank.",
    )  # fmt: skip
    session.commit()
    declined = invitation_for(session, row)
    assert declined.status == InvitationStatus.declined
    assert declined.note == "We already get e-statements from our bank."


def test_expired_and_foreign_links_are_refused_saying_why(session: Session) -> None:
    initiative, _ = start(session)
    first, second = make_partner(session), make_partner(session)
    invite(session=session, initiative_id=initiative.id, partner_ids=[first.id, second.id])
    session.commit()
    mine, theirs = emails(session, "partner_invitation")
    invitation = invitation_for(session, mine)

    with pytest.raises(LinkRefused) as foreign:
        check_invitation_link(session=session, invitation_id=invitation.id, token=token_of(theirs))
    later = invitation.expires_at + timedelta(seconds=1)  # type: ignore[operator]
    with pytest.raises(LinkRefused) as expired:
        answer(
            session=session, invitation_id=invitation.id, token=token_of(mine), accept=True,
            now=later,
        )  # fmt: skip

    assert foreign.value.kind == "foreign" and expired.value.kind == "expired"
    assert invitation_for(session, mine).status == InvitationStatus.invited


def test_participation_counts_customers_and_partners_apart(session: Session) -> None:
    paperless, _ = start(session, title="Paperless statements")
    deliveries, _ = start(session, title="Consolidated deliveries")
    customers = [make_customer(session, consents=INVITED) for _ in range(3)]
    partner = make_partner(session)
    invite(session=session, initiative_id=paperless.id, customer_ids=[c.id for c in customers])
    invite(session=session, initiative_id=deliveries.id, partner_ids=[partner.id])
    session.commit()
    rows = emails(session, "invitation")
    for row, accept in zip(rows[:2], (True, False), strict=True):
        answer(session=session, invitation_id=invitation_for(session, row).id,
               token=token_of(row), accept=accept)  # fmt: skip
    session.commit()

    one = participation(session=session, initiative_id=paperless.id)
    every = participation(session=session)

    assert one.customers.as_dict() == {"invited": 3, "accepted": 1, "declined": 1, "waiting": 1}
    assert one.partners.as_dict() == {"invited": 0, "accepted": 0, "declined": 0, "waiting": 0}
    assert every.partners.as_dict() == {"invited": 1, "accepted": 0, "declined": 0, "waiting": 1}
    assert every.total.invited == 4
    assert participation_summary(session=session) == [
        {
            "id": paperless.id,
            "title": "Paperless statements",
            "invited": 3,
            "accepted": 1,
            "declined": 1,
            "waiting": 1,
            "customers": {"invited": 3, "accepted": 1, "declined": 1, "waiting": 1},
            "partners": {"invited": 0, "accepted": 0, "declined": 0, "waiting": 0},
        },
        {
            "id": deliveries.id,
            "title": "Consolidated deliveries",
            "invited": 1,
            "accepted": 0,
            "declined": 0,
            "waiting": 1,
            "customers": {"invited": 0, "accepted": 0, "declined": 0, "waiting": 0},
            "partners": {"invited": 1, "accepted": 0, "declined": 0, "waiting": 1},
        },
    ]


async def test_an_expired_invitation_is_sent_again_once_with_a_new_link_that_works(
    session: Session, smtp: SmtpServer
) -> None:
    initiative, _ = start(session)
    partner = make_partner(session, "Swift Parcels")
    invite(session=session, initiative_id=initiative.id, partner_ids=[partner.id])
    session.commit()
    (first,) = emails(session, "partner_invitation")
    invitation = invitation_for(session, first)
    with pytest.raises(NotExpired, match="still open until"):
        invite_again(session=session, invitation_id=invitation.id)
    later = invitation.expires_at + timedelta(days=1)  # type: ignore[operator]
    old_token = token_of(first)

    invite_again(session=session, invitation_id=invitation.id, now=later)
    session.commit()
    with pytest.raises(NotExpired, match="still open until"):  # pressed twice: one new email
        invite_again(session=session, invitation_id=invitation.id, now=later)
    await send_due()

    assert len(emails(session, "partner_invitation")) == 2
    [_, again] = [m for m in smtp.received if partner.email in m.recipients]
    new_link = re.search(r"https?://\S+/invitations/\d+/[\w-]+", again.text)
    assert new_link is not None
    new_token = new_link[0].rsplit("/", 1)[1]
    with pytest.raises(LinkRefused) as replaced:  # the old email's link says it was replaced
        check_invitation_link(session=session, invitation_id=invitation.id, token=old_token,
                              now=later)  # fmt: skip
    assert replaced.value.kind == "replaced"
    answer(session=session, invitation_id=invitation.id, token=new_token, accept=True, now=later)
    session.commit()
    assert invitation_for(session, first).status == InvitationStatus.accepted
    with pytest.raises(NotExpired, match="already accepted"):
        invite_again(session=session, invitation_id=invitation.id, now=later + timedelta(days=60))


def test_a_customer_who_no_longer_agrees_is_not_invited_again(session: Session) -> None:
    initiative, _ = start(session)
    ann = make_customer(session, "Ann Hughes", consents=INVITED)
    invite(session=session, initiative_id=initiative.id, customer_ids=[ann.id])
    session.commit()
    (first,) = emails(session, "invitation")
    invitation = invitation_for(session, first)
    record_consent(session=session, customer=ann, purpose=Purpose.invitations, granted=False,
                   channel="email")  # fmt: skip
    session.commit()

    later = invitation.expires_at + timedelta(days=1)  # type: ignore[operator]
    with pytest.raises(InvalidInput) as refused:
        invite_again(session=session, invitation_id=invitation.id, now=later)
    assert "Ann Hughes no longer agrees to invitations" in refused.value.errors["invitation"]
    assert len(emails(session, "invitation")) == 1
