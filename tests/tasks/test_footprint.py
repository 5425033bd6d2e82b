"""Footprints from service records, against arithmetic by hand from data/factors/uk-2025.csv."""

from datetime import UTC, date, datetime

import pytest
from sqlmodel import Session

from improve.errors import InvalidInput
from models import Factor, FactorSet, RecordKind, Status
from tasks.factors import activities, use_factor_set
from tasks.footprint import (
    RECORD_ACTIVITY,
    footprint,
    improvement_counts,
    linked_improvements,
    month_starts,
    partner_totals,
    record_activity,
)
from tests.factories import make_improvement, make_partner, make_process, make_record

# Published 2025 factors (kg CO2e per unit), with their row IDs.
VAN_MILE = 0.40926  # 27_303_3106_9_1
CAR_MILE = 0.26915  # 25_301_3074_9_1
ELECTRICITY_KWH = 0.177  # 30_400_4000_5_1
PAPER_KG = 1.3450779  # 19_506_5164_15_1, 1,345.0779 per tonne
PLASTIC_KG = 3.17249932  # 19_505_5120_15_1, 3,172.49932 per tonne

SINCE = datetime(2025, 1, 1, tzinfo=UTC)
UNTIL = datetime(2025, 7, 1, tzinfo=UTC)


def at(month: int, day: int = 15, year: int = 2025) -> datetime:
    return datetime(year, month, day, 12, tzinfo=UTC)


def test_every_kind_is_an_activity_and_a_car_trip_is_car_miles() -> None:
    assert set(RECORD_ACTIVITY) == set(RecordKind)
    assert set(RECORD_ACTIVITY.values()) <= set(activities())
    assert record_activity(RecordKind.partner_delivery) == "van_miles"
    assert record_activity(RecordKind.vehicle_trip, "van") == "van_miles"
    assert record_activity(RecordKind.vehicle_trip, " Car ") == "car_miles"
    assert record_activity("letter_posted") == "letters"


def test_a_partners_deliveries_and_packaging_in_kg_co2e(session: Session) -> None:
    swift, inkwell = make_partner(session, "Swift Parcels"), make_partner(session, "Inkwell")
    billing = make_process(session, "billing")
    make_record(session, billing, RecordKind.partner_delivery, at(2), 70, partner_id=swift.id)
    make_record(session, billing, RecordKind.partner_delivery, at(5), 50, partner_id=swift.id)
    make_record(session, billing, RecordKind.packaging_used, at(3), 10, partner_id=swift.id)
    # Another partner's, and Swift's own outside the range: none of them counted.
    make_record(session, billing, RecordKind.partner_delivery, at(3), 500, partner_id=inkwell.id)
    make_record(session, billing, RecordKind.partner_delivery, at(12, 31, 2024), 900,
                partner_id=swift.id)  # fmt: skip
    make_record(session, billing, RecordKind.partner_delivery, UNTIL, 800, partner_id=swift.id)

    found = footprint(session=session, partner_id=swift.id, since=SINCE, until=UNTIL)

    packaging, delivery = found.lines  # in the order of RecordKind
    assert (delivery.kind, delivery.records, delivery.quantity, delivery.unit) == (
        RecordKind.partner_delivery, 2, 120, "miles",
    )  # fmt: skip
    # 120 miles × 0.40926 = 49.1112 kg
    assert delivery.kg_co2e == pytest.approx(49.1112)
    (van,) = delivery.factors
    assert (van.factor, van.kg_co2e_per_unit, van.source_row) == ("van_mile", VAN_MILE,
                                                                 "27_303_3106_9_1")  # fmt: skip
    assert "Freighting goods › Vans" in van.source and "2025" in van.source
    # 10 kg × 3.17249932 = 31.7249932 kg
    assert packaging.kg_co2e == pytest.approx(31.7249932)
    assert found.kg_co2e == pytest.approx(49.1112 + 31.7249932)
    assert found.factor_set == "uk-2025"


def test_a_process_each_kind_with_its_factor_and_visits_only_counted(session: Session) -> None:
    visits = make_process(session, "field visits")
    other = make_process(session, "billing")
    make_record(session, visits, RecordKind.letter_posted, at(1), 1000)
    make_record(session, visits, RecordKind.page_printed, at(1), 2000)
    make_record(session, visits, RecordKind.vehicle_trip, at(2), 100, detail="van")
    make_record(session, visits, RecordKind.vehicle_trip, at(2), 50, detail="car")
    make_record(session, visits, RecordKind.site_visit, at(2), 1)
    make_record(session, visits, RecordKind.site_visit, at(4), 2)
    make_record(session, visits, RecordKind.meter_reading, at(6), 1000, site="Depot")
    make_record(session, other, RecordKind.letter_posted, at(1), 99_999)

    found = footprint(session=session, process_id=visits.id, since=SINCE, until=UNTIL)

    kg = {(line.kind, line.activity): line.kg_co2e for line in found.lines}
    assert kg == pytest.approx(
        {
            # 1,000 letters × 15 g of paper × 1.3450779 kg/kg = 20.1761685 kg
            (RecordKind.letter_posted, "letters"): 20.1761685,
            # 2,000 sheets × 4.9896 g × 1.3450779 kg/kg = 13.42280 kg
            (RecordKind.page_printed, "pages"): 2000 * 0.0049896 * PAPER_KG,
            # 100 van miles × 0.40926 = 40.926 kg; 50 car miles × 0.26915 = 13.4575 kg
            (RecordKind.vehicle_trip, "car_miles"): 13.4575,
            (RecordKind.vehicle_trip, "van_miles"): 40.926,
            # 1,000 kWh × 0.177 = 177 kg
            (RecordKind.meter_reading, "electricity"): 177.0,
        }
        | {(RecordKind.site_visit, "site_visits"): None}
    )
    visit = next(line for line in found.lines if line.kind == RecordKind.site_visit)
    assert (visit.quantity, visit.unit, visit.factors) == (3, "visits", ())
    assert "counted, not converted" in visit.note and "twice" in visit.note
    paper = next(line for line in found.lines if line.kind == RecordKind.page_printed)
    assert "A4" in paper.factors[0].note  # a derived factor says how
    assert found.kg_co2e == pytest.approx(
        20.1761685 + 2000 * 0.0049896 * PAPER_KG + 13.4575 + 40.926 + 177
    )


def test_the_twelve_months_up_to_until(session: Session) -> None:
    swift = make_partner(session)
    billing = make_process(session)
    for when, miles in [
        (at(7, 1, 2024), 10),  # the first month's first day
        (at(12, 31, 2024), 20),
        (at(1, 1), 30),
        (at(6, 30), 40),
        (at(6, 30, 2024), 1000),  # the month before the twelve
        (UNTIL, 1000),  # until is not included
    ]:
        make_record(session, billing, RecordKind.partner_delivery, when, miles,
                    partner_id=swift.id)  # fmt: skip

    found = footprint(session=session, partner_id=swift.id, since=SINCE, until=UNTIL)

    assert [m.month for m in found.months] == [
        date(2024, 7, 1), date(2024, 8, 1), date(2024, 9, 1), date(2024, 10, 1),
        date(2024, 11, 1), date(2024, 12, 1), date(2025, 1, 1), date(2025, 2, 1),
        date(2025, 3, 1), date(2025, 4, 1), date(2025, 5, 1), date(2025, 6, 1),
    ]  # fmt: skip
    kg = {m.month: m.kg_co2e for m in found.months if m.kg_co2e}
    assert kg == pytest.approx(
        {
            date(2024, 7, 1): 10 * VAN_MILE,
            date(2024, 12, 1): 20 * VAN_MILE,
            date(2025, 1, 1): 30 * VAN_MILE,
            date(2025, 6, 1): 40 * VAN_MILE,
        }
    )
    # The months ignore `since`; the total keeps to it: January and June only.
    assert found.kg_co2e == pytest.approx(70 * VAN_MILE)


def test_month_starts_across_a_year_end() -> None:
    starts = month_starts(datetime(2026, 2, 10, 9, tzinfo=UTC))
    assert (starts[0], starts[-1]) == (
        datetime(2025, 3, 1, tzinfo=UTC),
        datetime(2026, 2, 1, tzinfo=UTC),
    )
    assert len(starts) == 12


def test_every_partners_total_in_one_query(session: Session) -> None:
    swift, inkwell, quiet = (make_partner(session) for _ in range(3))
    billing = make_process(session)
    make_record(session, billing, RecordKind.partner_delivery, at(2), 120, partner_id=swift.id)
    make_record(session, billing, RecordKind.letter_posted, at(2), 1000, partner_id=inkwell.id)
    make_record(session, billing, RecordKind.site_visit, at(2), 4, partner_id=inkwell.id)
    make_record(session, billing, RecordKind.letter_posted, at(2), 5000)  # no partner

    totals = partner_totals(session=session, since=SINCE, until=UNTIL)

    assert totals == pytest.approx({swift.id: 49.1112, inkwell.id: 20.1761685})
    assert quiet.id not in totals


def test_a_factor_the_set_in_force_lacks_is_named_not_read_as_zero(session: Session) -> None:
    partial = FactorSet(name="partial", year=2026, document="A partial set")
    session.add(partial)
    session.flush()
    assert partial.id is not None
    session.add(
        Factor(factor_set_id=partial.id, activity="electricity_kwh", unit="kWh", kg_co2e=0.2,
               source_table="Electricity", source_row="1")
    )  # fmt: skip
    use_factor_set(session=session, name="partial")
    session.commit()
    depot = make_process(session)
    make_record(session, depot, RecordKind.meter_reading, at(2), 100)
    make_record(session, depot, RecordKind.vehicle_trip, at(2), 100)

    found = footprint(session=session, process_id=depot.id, since=SINCE, until=UNTIL)

    trip = next(line for line in found.lines if line.kind == RecordKind.vehicle_trip)
    assert trip.kg_co2e is None and "partial has no van_mile factor" in trip.note
    assert found.kg_co2e == pytest.approx(20.0)
    assert found.factor_set == "partial"


def test_a_range_that_is_no_range_names_the_field(session: Session) -> None:
    with pytest.raises(InvalidInput) as refused:
        footprint(session=session, partner_id=1, since=UNTIL, until=SINCE)
    assert set(refused.value.errors) == {"since"}
    with pytest.raises(InvalidInput) as naive:
        footprint(session=session, since=datetime(2025, 1, 1), until=UNTIL)
    assert "zone" in naive.value.errors["since"]


def test_improvements_linked_to_a_partner_or_a_process(session: Session) -> None:
    swift, other = make_partner(session), make_partner(session)
    depot = make_process(session)
    done = make_improvement(session, None, "Consolidate collections", status=Status.completed,
                            partners=[swift], kg_co2e=2900, measured_kg_co2e=2610)  # fmt: skip
    open_one = make_improvement(session, None, "Electric vans", partners=[swift, other],
                                kg_co2e=38_000, process_id=depot.id)  # fmt: skip
    make_improvement(session, None, "Turned down", status=Status.rejected, partners=[swift])
    make_improvement(session, None, "Not linked")

    linked = linked_improvements(session=session, partner_id=swift.id)

    assert [item.improvement.title for item in linked] == [
        "Turned down", "Electric vans", "Consolidate collections",
    ]  # fmt: skip
    assert (linked[2].forecast_kg_co2e, linked[2].actual_kg_co2e) == (2900, 2610)
    assert (linked[1].forecast_kg_co2e, linked[1].actual_kg_co2e) == (38_000, None)
    by_process = linked_improvements(session=session, process_id=depot.id)
    assert [item.improvement.id for item in by_process] == [open_one.id]
    counts = improvement_counts(session=session)
    assert counts[swift.id] == {"open": 1, "completed": 1}
    assert counts[other.id] == {"open": 1, "completed": 0}
    assert done.id is not None
