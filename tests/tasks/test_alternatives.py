"""When a need cannot be met: reasons and alternatives checked, approved on the owner's own
authority or routed, offered to the customer once, or given back to the owner."""

from dataclasses import dataclass

import pytest
from sqlmodel import Session, select

from improve.errors import InvalidInput
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
    ImprovementCustomer,
    Partner,
    Source,
    Status,
)
from tasks.alternatives import AlternativeIn, mark_cannot_meet
from tasks.approvals import route_improvement
from tasks.decisions import advance_after_decision, record_decision
from tasks.mail import build_message, context_of, reader_for, render
from tasks.offers import (
    awaits_customer,
    cases_to_settle,
    cost_benefit_summary,
    settle_after_decision,
)
from tests.factories import (
    make_approver,
    make_authority,
    make_case,
    make_colleague,
    make_customer,
    make_partner,
)
from tests.tasks.helpers import outbox
from tests.web.helpers import snapshot

REASON = "The heater model is no longer made and no part fits it."


@dataclass
class People:
    owner: Colleague  # alternative solutions up to £200 on her own authority
    alex: Colleague  # approves alternative solutions up to £5,000
    customer: Customer
    partner: Partner
    case: Case


@pytest.fixture
def people(session: Session, monkeypatch: pytest.MonkeyPatch) -> People:
    monkeypatch.setattr(settings, "two_level_threshold", 10_000.0)
    owner = make_colleague(session, "Dana Owner")
    make_authority(session, owner, Category.alternative_solution, 200)
    alex = make_approver(session, "Alex Approver", Category.alternative_solution, 5_000)
    olu = make_colleague(session, "Olu Ade")
    monkeypatch.setattr(settings, "fallback_approver", olu.email)
    customer = make_customer(session, "Mrs Ames", email="ames@example.com")
    partner = make_partner(session, "Warm Homes Ltd", email="hello@warmhomes.example")
    case = make_case(session, owner, customer)
    return People(owner, alex, customer, partner, case)


def heater(**fields: object) -> AlternativeIn:
    values: dict = {
        "description": "Lend a portable heater",
        "cost": "120",
        "benefit": "a warm home until the new heater is fitted",
        "days_to_deliver": "1",
        **fields,
    }
    return AlternativeIn(**values)


def new_heater(partner: Partner) -> AlternativeIn:
    return AlternativeIn(
        description="Fit a new efficient heater",
        partner_email=partner.email,
        cost=900,
        benefit="a modern heater that costs less to run",
        days_to_deliver=10,
    )


def mark(session: Session, people: People, *alternatives: AlternativeIn, reason: str = REASON):
    marked = mark_cannot_meet(
        session=session,
        case_id=people.case.id,
        reason=reason,
        alternatives=list(alternatives),
        actor=people.owner.email,
        channel=Channel.web,
    )
    session.commit()
    return marked


def alternatives_of(session: Session, case: Case) -> list[Alternative]:
    return list(
        session.exec(
            select(Alternative)
            .where(Alternative.case_id == case.id)
            .order_by(Alternative.position)
            .execution_options(populate_existing=True)
        ).all()
    )


def case_now(session: Session, case: Case) -> Case:
    found = session.get(Case, case.id, populate_existing=True)
    assert found is not None
    return found


def notes(session: Session, case: Case) -> list[tuple[str, str]]:
    rows = session.exec(select(CaseNote).where(CaseNote.case_id == case.id).order_by(CaseNote.id))
    return [(n.what, n.note) for n in rows]


# --- bad input --------------------------------------------------------------------------------


def test_a_reason_and_at_least_one_alternative_are_required(
    session: Session, people: People
) -> None:
    before = snapshot()

    with pytest.raises(InvalidInput) as refused:
        mark(session, people, reason=" ")

    assert set(refused.value.errors) == {"reason", "alternatives"}
    assert "say why the need cannot be met" in refused.value.errors["reason"]
    session.rollback()
    assert snapshot() == before


def test_each_bad_field_is_named_with_its_alternative_and_nothing_is_written(
    session: Session, people: People
) -> None:
    before = snapshot()

    with pytest.raises(InvalidInput) as refused:
        mark(
            session,
            people,
            heater(),
            heater(description="Loan a dehumidifier", cost=""),
            heater(description="Pay for a hotel", cost="-5", partner_email="nobody@example.net"),
            heater(description="", benefit="", days_to_deliver="2.5"),
        )

    errors = refused.value.errors
    assert errors["alternatives.2.cost"] == (
        "alternative 2 (“Loan a dehumidifier”) has no cost: say what it costs us (0 if nothing)"
    )
    assert errors["alternatives.3.cost"].startswith("alternative 3 (“Pay for a hotel”): the cost")
    assert (
        "no service partner has the email 'nobody@example.net'"
        in (errors["alternatives.3.partner_email"])
    )
    assert set(errors) >= {
        "alternatives.4.description",
        "alternatives.4.benefit",
        "alternatives.4.days_to_deliver",
    }
    assert not any(key.startswith("alternatives.1.") for key in errors)
    session.rollback()
    assert snapshot() == before


def test_a_case_already_waiting_for_the_customer_cannot_be_marked_again(
    session: Session, people: People
) -> None:
    mark(session, people, heater())

    with pytest.raises(InvalidInput) as refused:
        mark(session, people, heater())

    assert "is awaiting customer" in refused.value.errors["status"]


# --- within and beyond the owner's authority ---------------------------------------------------


def test_the_summary_reads_as_cost_to_us_and_gain_to_the_customer() -> None:
    alternative = Alternative(
        case_id=1, position=1, description="x", cost=120, benefit="a warm home.", days_to_deliver=5
    )
    assert (
        cost_benefit_summary(alternative)
        == "£120 to us; the customer gets a warm home within 5 days"
    )
    assert cost_benefit_summary(alternative, "Warm Homes Ltd").endswith(
        "within 5 days (provided by Warm Homes Ltd)"
    )


def test_within_own_authority_it_is_approved_at_once_and_offered(
    session: Session, people: People
) -> None:
    marked = mark(session, people, heater())

    assert marked.outcome == "offered" and marked.submitted == []
    [alternative] = alternatives_of(session, people.case)
    assert alternative.status == AlternativeStatus.offered and alternative.improvement_id is None
    case = case_now(session, people.case)
    assert case.status == CaseStatus.awaiting_customer and case.cannot_meet_reason == REASON
    assert case.choice_token_hash and case.choice_expires_at == case.next_update_due
    assert session.exec(select(Improvement)).all() == []
    assert ("alternative_approved",) == tuple(
        w for w, n in notes(session, people.case) if "own authority" in n
    )
    assert any(
        "within Dana Owner's own authority: their alternative solution limit of £200" in n
        for _, n in notes(session, people.case)
    )
    [offer] = outbox(session, "alternatives_offer")
    assert offer.recipient == people.customer.email
    context = context_of(offer)
    assert context["reason"] == REASON
    assert context["url"].startswith(f"{settings.base_url}/choices/{people.case.id}/")
    assert [a["description"] for a in context["alternatives"]] == ["Lend a portable heater"]
    assert "cost" not in context["alternatives"][0]  # the customer never sees what it costs us
    rendered = render("alternatives_offer", context)
    assert (
        rendered.subject == f"Other ways we can help: CASE-{people.case.id} {people.case.subject}"
    )
    assert REASON in rendered.text and context["url"] in rendered.text
    assert "we are sorry" in rendered.text and "Lend a portable heater" in rendered.html


def test_beyond_own_authority_it_becomes_an_improvement_routed_as_usual(
    session: Session, people: People
) -> None:
    marked = mark(session, people, new_heater(people.partner))

    assert marked.outcome == "waiting"
    [improvement_id] = marked.submitted
    improvement = session.get(Improvement, improvement_id)
    assert improvement is not None
    assert (improvement.category, improvement.source, improvement.status) == (
        Category.alternative_solution,
        Source.triggered,
        Status.submitted,
    )
    assert improvement.estimated_cost == 900 and improvement.submitter_id == people.owner.id
    summary = "£900 to us; the customer gets a modern heater that costs less to run within 10 days"
    assert summary in improvement.description and REASON in improvement.description
    assert session.exec(select(ImprovementCustomer.customer_id)).all() == [people.customer.id]
    [alternative] = alternatives_of(session, people.case)
    assert (alternative.status, alternative.improvement_id) == (
        AlternativeStatus.proposed,
        improvement_id,
    )
    assert case_now(session, people.case).status == CaseStatus.cannot_meet
    assert outbox(session, "alternatives_offer") == []

    [request] = route_improvement(
        session=session, improvement_id=improvement_id, actor="route", channel=Channel.flow
    )
    session.commit()
    assert request.approver_id == people.alex.id
    [email] = outbox(session, "approval_request")
    assert summary in email.context["description"]  # the approver reads the cost and benefit
    assert awaits_customer(session=session, improvement_id=improvement_id)


def approve(session: Session, improvement_id: int, *, yes: bool = True) -> str:
    [request] = route_improvement(
        session=session, improvement_id=improvement_id, actor="route", channel=Channel.flow
    )
    session.commit()
    record_decision(
        session=session,
        approval_id=request.id,
        approve=yes,
        comment="" if yes else "Too dear for a temporary fix",
        channel=Channel.email,
    )
    session.commit()
    advance_after_decision(session=session, improvement_id=improvement_id, actor="advance")
    outcome = settle_after_decision(session=session, improvement_id=improvement_id, actor="advance")
    session.commit()
    return outcome


def test_the_offer_waits_for_every_approval_then_goes_once(
    session: Session, people: People
) -> None:
    marked = mark(session, people, heater(), new_heater(people.partner))
    assert marked.outcome == "waiting"
    assert outbox(session, "alternatives_offer") == []

    assert approve(session, marked.submitted[0]) == "offered"

    statuses = [a.status for a in alternatives_of(session, people.case)]
    assert statuses == [AlternativeStatus.offered, AlternativeStatus.offered]
    assert case_now(session, people.case).status == CaseStatus.awaiting_customer
    improvement = session.get(Improvement, marked.submitted[0], populate_existing=True)
    assert improvement is not None and improvement.status == Status.approved  # not planned yet
    # The same event again, and the sweep: nothing more happens, nothing is sent twice.
    again = settle_after_decision(session=session, improvement_id=marked.submitted[0], actor="x")
    assert again == "nothing"
    assert cases_to_settle(session=session) == []
    [offer] = outbox(session, "alternatives_offer")
    assert len(context_of(offer)["alternatives"]) == 2


def test_a_rejected_alternative_is_not_offered(session: Session, people: People) -> None:
    marked = mark(session, people, heater(), new_heater(people.partner))

    assert approve(session, marked.submitted[0], yes=False) == "offered"

    first, second = alternatives_of(session, people.case)
    assert (first.status, second.status) == (AlternativeStatus.offered, AlternativeStatus.rejected)
    [offer] = outbox(session, "alternatives_offer")
    assert [a["position"] for a in context_of(offer)["alternatives"]] == [1]
    assert any(
        w == "alternative_rejected" and "Too dear for a temporary fix" in n
        for w, n in notes(session, people.case)
    )


def test_when_every_alternative_is_rejected_the_case_goes_back_to_its_owner(
    session: Session, people: People
) -> None:
    marked = mark(session, people, new_heater(people.partner))

    assert approve(session, marked.submitted[0], yes=False) == "returned"

    case = case_now(session, people.case)
    assert case.status == CaseStatus.open and case.next_update_due is not None
    assert notes(session, people.case)[-1][0] == "returned"
    assert outbox(session, "alternatives_offer") == []
    [told] = outbox(session, "case_owner_notice")
    assert told.recipient == people.owner.email
    assert told.context["headline"] == "None of the alternatives was approved"


def test_the_sweep_offers_what_a_lost_event_left_waiting(session: Session, people: People) -> None:
    marked = mark(session, people, new_heater(people.partner))
    [request] = route_improvement(
        session=session, improvement_id=marked.submitted[0], actor="route", channel=Channel.flow
    )
    session.commit()
    assert cases_to_settle(session=session) == []  # still waiting for Alex
    record_decision(
        session=session, approval_id=request.id, approve=True, comment="", channel=Channel.email
    )
    advance_after_decision(session=session, improvement_id=marked.submitted[0], actor="advance")
    session.commit()  # ... and the event that would have settled the case is lost

    assert cases_to_settle(session=session) == [people.case.id]


def test_alternatives_sent_as_json_are_checked_alike(session: Session, people: People) -> None:
    with pytest.raises(InvalidInput) as refused:
        mark(
            session,
            people,
            {"description": "Lend a heater", "benefit": "warmth", "days_to_deliver": 1},
        )  # type: ignore[arg-type]

    assert refused.value.errors == {
        "alternatives.1.cost": "alternative 1 (“Lend a heater”) has no cost: say what it costs us "
        "(0 if nothing)"
    }


def test_a_customer_who_reads_welsh_is_offered_in_welsh(session: Session, people: People) -> None:
    people.customer.language = "cy"
    session.add(people.customer)
    session.commit()
    mark(session, people, heater())

    [offer] = outbox(session, "alternatives_offer")
    message = build_message(offer, reader_for(people.customer))
    assert message["Subject"] == f"Ffyrdd eraill y gallwn helpu: CASE-{people.case.id} " + (
        people.case.subject
    )
    text = message.get_body(("plain",)).get_content()
    assert "Annwyl Mrs Ames" in text and REASON in text and "Lend a portable heater" in text
