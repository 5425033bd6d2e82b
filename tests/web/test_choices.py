"""The customer's choice link, and the staff form that says a need cannot be met."""

from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from improve import events as event_names
from improve.settings import settings
from models import (
    Alternative,
    AlternativeStatus,
    Case,
    CaseNote,
    CaseStatus,
    Category,
    Channel,
    Colleague,
    Customer,
    Improvement,
    OutboxEmail,
    Status,
)
from models.db import utcnow
from tasks.alternatives import AlternativeIn, mark_cannot_meet
from tests.factories import (
    link_in,
    make_approver,
    make_authority,
    make_case,
    make_colleague,
    make_customer,
    make_improvement,
)
from tests.smtpd import SmtpServer
from tests.web.conftest import Events, sign_in
from tests.web.helpers import approval_link, snapshot

REASON = "The heater model is no longer made and no part fits it."


@dataclass
class Offer:
    owner: Colleague
    customer: Customer
    case: Case
    path: str  # the choice link, as the offer email carries it
    first: Alternative
    second: Alternative


def offer(session: Session, monkeypatch: pytest.MonkeyPatch, second_cost: float = 150) -> Offer:
    monkeypatch.setattr(settings, "two_level_threshold", 10_000.0)
    owner = make_colleague(session, "Dana Owner")
    make_authority(session, owner, Category.alternative_solution, 200)
    customer = make_customer(session, "Mrs Ames", email="ames@example.com")
    case = make_case(session, owner, customer)
    mark_cannot_meet(
        session=session,
        case_id=case.id,
        reason=REASON,
        alternatives=[
            AlternativeIn("Lend a portable heater", "", 120, "a warm home until it is fixed", 1),
            AlternativeIn("Pay for a week's electric heating", "", second_cost, "no extra bill", 0),
        ],
        actor=owner.email,
        channel=Channel.web,
    )
    session.commit()
    email = session.exec(select(OutboxEmail).where(OutboxEmail.template == "alternatives_offer"))
    url = link_in(email.one())
    first, second = session.exec(
        select(Alternative).where(Alternative.case_id == case.id).order_by(Alternative.position)
    ).all()
    return Offer(owner, customer, case, url.removeprefix(settings.base_url), first, second)


def case_now(session: Session, case: Case) -> Case:
    found = session.get(Case, case.id, populate_existing=True)
    assert found is not None
    return found


def status_of(session: Session, alternative: Alternative) -> AlternativeStatus:
    session.refresh(alternative)
    return alternative.status


async def test_opening_the_link_shows_the_choices_and_changes_nothing(
    anonymous: httpx.AsyncClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = offer(session, monkeypatch)
    before = snapshot()

    shown = await anonymous.get(given.path)
    head = await anonymous.head(given.path)

    assert shown.status_code == 200 and head.status_code == 200
    assert REASON in shown.text and "Lend a portable heater" in shown.text
    assert "Pay for a week" in shown.text and "Dear Mrs Ames" in shown.text
    assert "£120" not in shown.text  # what it costs us is not the customer's concern
    assert shown.headers["cache-control"] == "no-store"
    assert snapshot() == before


async def test_accepting_records_who_when_and_what_and_makes_a_plan(
    anonymous: httpx.AsyncClient,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
    events: Events,
) -> None:
    given = offer(session, monkeypatch)

    done = await anonymous.post(
        given.path, data={"decision": "accept", "alternative": str(given.second.id)}
    )

    assert done.status_code == 200, done.text
    assert "we will arrange it" in done.text and "Pay for a week" in done.text
    case = case_now(session, given.case)
    assert case.status == CaseStatus.agreed and case.next_update_due is not None
    assert status_of(session, given.second) == AlternativeStatus.accepted
    assert status_of(session, given.first) == AlternativeStatus.declined
    accepted = session.exec(select(CaseNote).where(CaseNote.what == "accepted")).one()
    assert (accepted.actor, accepted.channel) == (given.customer.email, "email")
    assert "Mrs Ames (ames@example.com) accepted alternative 2" in accepted.note
    # Within the owner's authority, so its improvement is made now, approved, for planning.
    improvement = session.get(Improvement, given.second.improvement_id)
    assert improvement is not None
    assert (improvement.category, improvement.status, improvement.submitter_id) == (
        Category.alternative_solution,
        Status.approved,
        given.owner.id,
    )
    [told] = session.exec(select(OutboxEmail).where(OutboxEmail.template == "case_owner_notice"))
    assert told.recipient == given.owner.email and "accepted" in told.context["headline"]
    assert events.emitted() == [
        (
            event_names.ALTERNATIVE_ACCEPTED,
            f"improve.improvement.{improvement.id}",
            [("case", f"improve.case.{given.case.id}")],
        )
    ]
    again = await anonymous.get(given.path)
    assert again.status_code == 410 and "already been used" in again.text


async def test_accepting_without_choosing_asks_again_and_changes_nothing(
    anonymous: httpx.AsyncClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = offer(session, monkeypatch)
    before = snapshot()

    for chosen in ("", "999999"):
        asked = await anonymous.post(given.path, data={"decision": "accept", "alternative": chosen})
        assert asked.status_code == 422 and "Please choose one of the options" in asked.text
    assert snapshot() == before


async def test_declining_with_a_note_reopens_the_case_for_its_owner(
    anonymous: httpx.AsyncClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = offer(session, monkeypatch)
    note = "I need the heater itself replaced; a loan does not help in my flat."

    done = await anonymous.post(given.path, data={"decision": "decline", "note": note})

    assert done.status_code == 200, done.text
    assert "Thank you for telling us" in done.text and "Dana Owner" in done.text
    case = case_now(session, given.case)
    assert case.status == CaseStatus.open
    assert case.next_update_due is not None and case.next_update_due > utcnow()
    assert {status_of(session, a) for a in (given.first, given.second)} == {
        AlternativeStatus.declined
    }
    declined = session.exec(select(CaseNote).where(CaseNote.what == "declined")).one()
    assert declined.actor == given.customer.email and note in declined.note
    [told] = session.exec(select(OutboxEmail).where(OutboxEmail.template == "case_owner_notice"))
    assert told.recipient == given.owner.email and told.context["lines"] == [f"Their note: {note}"]
    assert session.exec(select(Improvement)).all() == []
    used = await anonymous.post(given.path, data={"decision": "decline", "note": "again"})
    assert used.status_code == 410 and "already been used" in used.text


async def test_declining_cancels_an_alternative_approved_only_to_be_offered(
    anonymous: httpx.AsyncClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = offer(session, monkeypatch)
    # As if the second had been beyond the owner's authority and approved through routing.
    approved = make_improvement(
        session, given.owner, category=Category.alternative_solution, status=Status.approved
    )
    given.second.improvement_id = approved.id
    session.add(given.second)
    session.commit()

    await anonymous.post(given.path, data={"decision": "decline", "note": ""})

    session.refresh(approved)
    assert approved.status == Status.cancelled


async def test_an_expired_link_says_so_and_changes_nothing(
    anonymous: httpx.AsyncClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = offer(session, monkeypatch)
    session.execute(
        update(Case)
        .where(Case.id == given.case.id)  # type: ignore[arg-type]
        .values(choice_expires_at=utcnow() - timedelta(minutes=1))
    )
    session.commit()
    before = snapshot()

    shown = await anonymous.get(given.path)
    posted = await anonymous.post(
        given.path, data={"decision": "accept", "alternative": str(given.first.id)}
    )

    assert shown.status_code == 410 and "This link has expired" in shown.text
    assert posted.status_code == 410
    assert snapshot() == before


async def test_foreign_and_tampered_links_are_refused(
    anonymous: httpx.AsyncClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = offer(session, monkeypatch)
    approver = make_approver(session, "Alex Approver")
    _, other = approval_link(session, make_improvement(session, given.owner), approver)
    before = snapshot()

    foreign = await anonymous.get(f"/choices/{given.case.id}/{other.rsplit('/', 1)[-1]}")
    tampered = await anonymous.get(given.path[:-3] + "abc")
    wrong_case = await anonymous.post(
        given.path.replace(f"/{given.case.id}/", f"/{given.case.id + 1}/"),
        data={"decision": "decline"},
    )

    assert foreign.status_code == 403 and "This link is not yours" in foreign.text
    assert tampered.status_code == 404 and "This link is not valid" in tampered.text
    assert wrong_case.status_code == 403
    assert snapshot() == before


# --- the staff form ---------------------------------------------------------------------------


async def test_the_form_names_what_is_missing_and_keeps_what_was_typed(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    owner = make_colleague(session, "Dana Owner")
    case = make_case(session, owner, make_customer(session))
    sign_in(anonymous, owner)
    before = snapshot()

    refused = await anonymous.post(
        f"/cases/{case.id}/cannot-meet",
        data={
            "reason": REASON,
            "alternatives.2.description": "Loan a dehumidifier",
            "alternatives.2.benefit": "a dry home",
            "alternatives.2.days_to_deliver": "2",
        },
    )

    assert refused.status_code == 422
    assert "alternative 2 (“Loan a dehumidifier”) has no cost" in refused.text
    assert 'value="Loan a dehumidifier"' in refused.text
    assert snapshot() == before


async def test_the_owner_marks_a_case_and_the_panel_shows_the_summary(
    anonymous: httpx.AsyncClient, session: Session, smtp: SmtpServer
) -> None:
    owner = make_colleague(session, "Dana Owner")
    make_authority(session, owner, Category.alternative_solution, 500)
    case = make_case(session, owner, make_customer(session, email="ames@example.com"))
    sign_in(anonymous, owner)

    sent = await anonymous.post(
        f"/cases/{case.id}/cannot-meet",
        data={
            "reason": REASON,
            "alternatives.1.description": "Lend a portable heater",
            "alternatives.1.cost": "£120",
            "alternatives.1.benefit": "a warm home",
            "alternatives.1.days_to_deliver": "1",
        },
    )

    assert sent.status_code == 303, sent.text
    assert case_now(session, case).status == CaseStatus.awaiting_customer
    assert sent.headers["location"] == f"/cases/{case.id}#alternatives"  # the case page
    panel = await anonymous.get(sent.headers["location"])
    assert panel.status_code == 200 and "Help from colleagues" in panel.text
    assert "£120 to us; the customer gets a warm home within 1 day" in panel.text
    assert "within the owner's own authority" in panel.text
    # No second round while the customer chooses.
    assert f'action="/cases/{case.id}/cannot-meet"' not in panel.text
    # The offer was sent at once, not left for the next sweep.
    [sent_offer] = smtp.received
    assert sent_offer.recipients == ["ames@example.com"]


async def test_only_the_owner_or_operations_may_mark_a_case(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    owner = make_colleague(session, "Dana Owner")
    case = make_case(session, owner, make_customer(session))
    sign_in(anonymous, make_colleague(session, "Lucy Evans"))

    refused = await anonymous.post(f"/cases/{case.id}/cannot-meet", data={"reason": REASON})

    assert refused.status_code == 403 and "Only the owner of CASE-" in refused.text


async def test_after_a_decline_a_new_round_is_offered_and_the_old_link_says_it_was_replaced(
    anonymous: httpx.AsyncClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = offer(session, monkeypatch)
    await anonymous.post(given.path, data={"decision": "decline", "note": "Not for me"})

    mark_cannot_meet(
        session=session,
        case_id=given.case.id,
        reason=REASON,
        alternatives=[AlternativeIn("Fit a second-hand heater", "", 180, "heat this week", 3)],
        actor=given.owner.email,
        channel=Channel.web,
    )
    session.commit()

    old = await anonymous.get(given.path)
    assert old.status_code == 410 and "replaced by a newer one" in old.text
    offers = session.exec(
        select(OutboxEmail)
        .where(OutboxEmail.template == "alternatives_offer")
        .order_by(OutboxEmail.id)  # type: ignore[arg-type]
    ).all()
    assert len(offers) == 2
    new = await anonymous.get(link_in(offers[-1]).removeprefix(settings.base_url))
    assert new.status_code == 200
    assert "Fit a second-hand heater" in new.text and "Lend a portable heater" not in new.text
    positions = session.exec(
        select(Alternative.position).where(Alternative.case_id == given.case.id)
    ).all()
    assert sorted(positions) == [1, 2, 3]
