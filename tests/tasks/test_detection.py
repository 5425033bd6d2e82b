"""The service review's rules: records that cross each threshold raise one detected improvement
with its forecast, evidence and links; records just below raise nothing; an open one is never
raised twice, a closed one may be raised again."""

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from improve.settings import settings
from models import (
    Category,
    Channel,
    Evidence,
    Improvement,
    ImprovementCustomer,
    ImprovementPartner,
    RecordKind,
    ServiceProcess,
    ServiceRecord,
    Source,
    Status,
    Transition,
)
from tasks.detection import RULES, review_records
from tasks.lifecycle import move
from tests.factories import make_customer, make_partner

# kg CO2e per unit, from data/factors/uk-2025.csv (row IDs in data/README.md).
PAPER_KG = 1345.0779 / 1000  # 19_506_5164_15_1, per tonne
VAN_MILE = 0.40926  # 27_303_3106_9_1
CAR_MILE = 0.26915  # 25_301_3074_9_1
ELECTRICITY_KWH = 0.177  # 30_400_4000_5_1
PLASTIC_KG = 3172.49932 / 1000  # 19_505_5120_15_1, per tonne

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)  # a Monday in winter: London is on UTC
SINCE, UNTIL = "2025-12-02", "2026-03-02"  # the 90 days the review reads
_keys = count(1)


def process(session: Session, name: str) -> ServiceProcess:
    row = ServiceProcess(name=name)
    session.add(row)
    session.commit()
    return row


def record(
    session: Session, where: ServiceProcess, kind: RecordKind, at: datetime, amount: float = 1,
    **fields: object,
) -> None:  # fmt: skip
    session.add(
        ServiceRecord(
            key=f"test-{next(_keys)}",
            process_id=where.id,
            kind=kind,
            occurred_at=at,
            quantity=amount,
            **fields,
        )  # fmt: skip
    )


def review(session: Session) -> list[Improvement]:
    """Run the review as the flow does (commit), and return what it raised."""
    report = review_records(session=session, now=NOW)
    session.commit()
    return [session.get(Improvement, i) for i in report.raised]  # type: ignore[misc]


def evidence(session: Session, improvement: Improvement) -> Evidence:
    return session.exec(select(Evidence).where(Evidence.improvement_id == improvement.id)).one()


def linked_customers(session: Session, improvement: Improvement) -> set[int]:
    rows = session.exec(
        select(ImprovementCustomer.customer_id).where(
            ImprovementCustomer.improvement_id == improvement.id
        )
    )
    return set(rows)


def test_customers_on_paper_with_email_and_consent_are_raised_once_per_process(
    session: Session,
) -> None:
    billing, field = process(session, "billing"), process(session, "field visits")
    willing = [make_customer(session, f"Willing {n}") for n in range(5)]  # they agreed
    unasked = make_customer(session, "Never asked", consents=())  # stays on paper
    for customer in willing:
        for days in (10, 40, 70):
            record(session, billing, RecordKind.letter_posted, NOW - timedelta(days=days),
                   customer_id=customer.id)  # fmt: skip
    record(session, billing, RecordKind.letter_posted, NOW - timedelta(days=5),
           customer_id=unasked.id)  # fmt: skip
    record(session, billing, RecordKind.letter_posted, NOW - timedelta(days=95),
           customer_id=willing[0].id)  # before the window  # fmt: skip
    for customer in willing[:4]:  # four: one short of review_paper_min_customers
        record(session, field, RecordKind.letter_posted, NOW - timedelta(days=3),
               customer_id=customer.id)  # fmt: skip
    session.commit()

    (raised,) = review(session)

    assert raised.title == "Move 5 customers of billing from paper to email"
    assert (raised.source, raised.status, raised.category) == (
        Source.detected, Status.submitted, Category.resource,
    )  # fmt: skip
    assert raised.opportunity == f"paper-statements:process:{billing.id}"
    assert raised.process_id == billing.id and raised.submitter_id is None
    letters = round(15 * 365 / 90)  # 15 letters in 90 days: 61 a year
    assert raised.kg_co2e == pytest.approx(letters * 0.015 * PAPER_KG)  # 15 g of paper a letter
    assert raised.sheets_paper == letters * 2
    assert raised.annual_saving == pytest.approx(letters * 0.85)
    proof = evidence(session, raised)
    assert (proof.rule, proof.record_count) == ("paper-statements", 15)
    assert proof.records_query == (
        f"kind=letter_posted&process=billing&since={SINCE}&until={UNTIL}"
    )
    assert "5 customers of billing were sent 15 letters" in proof.summary
    assert linked_customers(session, raised) == {c.id for c in willing}
    (history,) = session.exec(select(Transition).where(Transition.improvement_id == raised.id))
    assert (history.to_status, history.actor, history.channel) == (
        Status.submitted, "service-review", Channel.flow,
    )  # fmt: skip


def test_a_repeat_visit_within_30_days_is_raised_for_that_customer(session: Session) -> None:
    field = process(session, "field visits")
    again, apart = make_customer(session, "Visited twice"), make_customer(session, "Months apart")
    for days in (40, 20):  # 20 days apart: a repeat
        record(session, field, RecordKind.site_visit, NOW - timedelta(days=days),
               customer_id=again.id)  # fmt: skip
    for days in (80, 40):  # 40 days apart: not
        record(session, field, RecordKind.site_visit, NOW - timedelta(days=days),
               customer_id=apart.id)  # fmt: skip
    session.commit()

    (raised,) = review(session)

    assert raised.opportunity == f"repeat-visits:customer:{again.id}"
    assert raised.category == Category.carbon
    visits = round(1 * 365 / 90, 1)  # one repeat in 90 days: 4.1 a year
    assert raised.kg_co2e == pytest.approx(visits * 20 * VAN_MILE)  # a 20-mile van round trip
    proof = evidence(session, raised)
    assert (proof.rule, proof.record_count) == ("repeat-visits", 2)
    assert proof.records_query == (
        f"kind=site_visit&customer={again.id}&since={SINCE}&until={UNTIL}"
    )
    assert linked_customers(session, raised) == {again.id}


def test_electricity_used_outside_opening_hours_is_raised_for_the_site(session: Session) -> None:
    facilities = process(session, "facilities")
    monday = datetime(2026, 2, 2, tzinfo=UTC)
    for hour in range(7 * 24):  # one week of hourly readings, each the kWh of the hour before
        start = monday + timedelta(hours=hour)
        opening = start.weekday() < 5 and 8 <= start.hour < 18
        at = start + timedelta(hours=1)
        record(session, facilities, RecordKind.meter_reading, at, 10 if opening else 5,
               site="Riverside")  # fmt: skip
        record(session, facilities, RecordKind.meter_reading, at, 10 if opening else 2,
               site="Harbour")  # 236 of 736 kWh out of hours: 32%, under 40%  # fmt: skip
    session.commit()

    (raised,) = review(session)

    assert raised.opportunity == "out-of-hours:site:Riverside"
    assert raised.category == Category.energy
    inside, outside = 50 * 10, 118 * 5  # 50 opening hours a week; 54% out of hours
    saved = outside - 0.4 * inside / 0.6  # down to 40% of the site's use
    kwh = round(saved * 365 / 90)
    assert raised.kwh == kwh
    assert raised.kg_co2e == pytest.approx(kwh * ELECTRICITY_KWH)
    proof = evidence(session, raised)
    assert (proof.rule, proof.record_count) == ("out-of-hours-energy", 168)
    assert proof.records_query == f"kind=meter_reading&site=Riverside&since={SINCE}&until={UNTIL}"
    assert "590 kWh (54%) outside opening hours" in proof.summary


def test_a_route_driven_over_400_miles_a_week_is_raised(session: Session) -> None:
    field = process(session, "field visits")
    for n in range(12):  # 6,000 van miles and 200 car miles in 90 days: 482 a week
        record(session, field, RecordKind.vehicle_trip, NOW - timedelta(days=5 * n + 1), 500,
               route="North loop", detail="van")  # fmt: skip
    record(session, field, RecordKind.vehicle_trip, NOW - timedelta(days=3), 200,
           route="North loop", detail="car")  # fmt: skip
    for n in range(10):  # 5,000 miles: 389 a week, under 400
        record(session, field, RecordKind.vehicle_trip, NOW - timedelta(days=5 * n + 2), 500,
               route="South loop", detail="van")  # fmt: skip
    session.commit()

    (raised,) = review(session)

    assert raised.opportunity == "route-miles:route:North loop"
    van, car = round(6000 * 365 / 90 * 0.15), round(200 * 365 / 90 * 0.15)  # 15% of the miles
    assert (van, car) == (3650, 122)
    assert raised.kg_co2e == pytest.approx(van * VAN_MILE + car * CAR_MILE)
    proof = evidence(session, raised)
    assert (proof.rule, proof.record_count) == ("high-mileage-routes", 13)
    assert proof.records_query == (
        f"kind=vehicle_trip&route=North+loop&since={SINCE}&until={UNTIL}"
    )


def test_single_use_packaging_over_50_kg_a_year_is_raised_for_the_process(
    session: Session,
) -> None:
    deliveries, stores = process(session, "deliveries"), process(session, "stores")
    for n in range(4):  # 20 kg in 90 days: 81 kg a year
        record(session, deliveries, RecordKind.packaging_used, NOW - timedelta(days=10 * n + 1),
               5, detail="single-use")  # fmt: skip
    record(session, deliveries, RecordKind.packaging_used, NOW - timedelta(days=2), 100,
           detail="returnable")  # fmt: skip
    for n in range(3):  # 12 kg in 90 days: 48.7 kg a year, under 50
        record(session, stores, RecordKind.packaging_used, NOW - timedelta(days=10 * n + 1), 4,
               detail="Single-use")  # fmt: skip
    session.commit()

    (raised,) = review(session)

    assert raised.opportunity == f"single-use-packaging:process:{deliveries.id}"
    assert raised.category == Category.waste
    kg = round(20 * 365 / 90, 1)
    assert raised.kg_waste == pytest.approx(kg)
    assert raised.kg_co2e == pytest.approx(kg * PLASTIC_KG)
    proof = evidence(session, raised)
    assert (proof.rule, proof.record_count) == ("single-use-packaging", 4)
    assert proof.records_query == (
        f"kind=packaging_used&process=deliveries&since={SINCE}&until={UNTIL}"
    )


def test_a_partner_delivering_three_days_a_week_to_one_site_is_raised(session: Session) -> None:
    deliveries = process(session, "deliveries")
    often, less = make_partner(session, "Swift Parcels"), make_partner(session, "Slow Parcels")
    for n in range(40):  # 40 days in 90: 3.1 a week
        record(session, deliveries, RecordKind.partner_delivery, NOW - timedelta(days=2 * n + 1),
               20, partner_id=often.id, site="Depot")  # fmt: skip
    for n in range(38):  # 38 days: 2.96 a week, under 3
        record(session, deliveries, RecordKind.partner_delivery, NOW - timedelta(days=2 * n + 1),
               20, partner_id=less.id, site="Depot")  # fmt: skip
    session.commit()

    (raised,) = review(session)

    assert raised.opportunity == f"partner-deliveries:partner:{often.id}:site:Depot"
    miles = round(20 * (40 * 7 / 90 - 1) * 52)  # a day's miles on the days beyond one a week
    assert raised.kg_co2e == pytest.approx(miles * VAN_MILE)
    proof = evidence(session, raised)
    assert proof.records_query == (
        f"kind=partner_delivery&partner={often.id}&site=Depot&since={SINCE}&until={UNTIL}"
    )
    partners = session.exec(
        select(ImprovementPartner.partner_id).where(ImprovementPartner.improvement_id == raised.id)
    ).all()
    assert partners == [often.id]


def test_an_open_improvement_is_not_raised_again_and_a_closed_one_may_be(
    session: Session,
) -> None:
    field = process(session, "field visits")
    customer = make_customer(session, "Visited twice")
    for days in (40, 20):
        record(session, field, RecordKind.site_visit, NOW - timedelta(days=days),
               customer_id=customer.id)  # fmt: skip
    session.commit()
    (first,) = review(session)

    report = review_records(session=session, now=NOW)
    assert report.raised == []
    (rule,) = [r for r in report.rules if r.rule == "repeat-visits"]
    assert (rule.found, rule.answered) == (1, [f"{first.reference} ({first.opportunity})"])

    # Rejected: the same records would ask the same question, so it is not raised again ...
    move(session=session, improvement_id=first.id, to=Status.rejected, actor="a@example.org",
         channel=Channel.web)  # fmt: skip
    session.commit()
    assert review(session) == []
    # ... until the decision is older than the records the review reads.
    first.updated_at = NOW - timedelta(days=settings.review_days + 1)
    session.add(first)
    session.commit()
    (second,) = review(session)
    assert second.id != first.id and second.opportunity == first.opportunity


def test_a_rule_raises_at_most_its_limit_biggest_first_and_the_rest_wait(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "review_limit_per_rule", 1)
    field = process(session, "field visits")
    small, big = make_customer(session, "Twice"), make_customer(session, "Three times")
    for who, days in ((small, (40, 20)), (big, (60, 40, 20))):
        for day in days:
            record(session, field, RecordKind.site_visit, NOW - timedelta(days=day),
                   customer_id=who.id)  # fmt: skip
    session.commit()

    report = review_records(session=session, now=NOW)
    (rule,) = [r for r in report.rules if r.rule == "repeat-visits"]
    assert (rule.found, rule.held_back) == (2, 1)
    (raised,) = [session.get(Improvement, i) for i in rule.raised]
    assert raised is not None and raised.opportunity == f"repeat-visits:customer:{big.id}"
    assert "| repeat-visits | repeat visits to one customer | 5 site_visit | 2 |" in (
        report.markdown()
    )


def test_the_demo_year_of_records_gives_every_rule_a_finding(session: Session) -> None:
    from improve.demo import seed
    from improve.demo_records import seed_records
    from models.db import utcnow

    counts = seed(session=session)
    session.commit()
    assert counts["records"] > 10_000
    assert seed_records(session=session) == 0  # once

    report = review_records(session=session, now=utcnow())
    session.commit()

    assert {r.rule: bool(r.raised) for r in report.rules} == dict.fromkeys(RULES, True)
    titles = set(report.titles.values())
    assert "Cut out-of-hours electricity at Riverside contact centre" in titles
    assert "Cut out-of-hours electricity at Harbour office" not in titles
    assert "Plan route North loop to drive fewer miles" in titles
    assert not any("Coast road" in t for t in titles)


def test_the_database_holds_one_open_improvement_per_opportunity(session: Session) -> None:
    def raise_one(status: Status) -> None:
        session.add(
            Improvement(title="Fewer repeat visits", category=Category.resource, status=status,
                        source=Source.detected, opportunity="repeat-visits:customer:1")
        )  # fmt: skip
        session.flush()

    raise_one(Status.rejected)
    raise_one(Status.submitted)  # a closed one does not stand in the way
    with pytest.raises(IntegrityError):
        raise_one(Status.awaiting_approval)
