"""The footprint of service records — a partner's, a process's — in kg CO2e, by kind and by month.

Records are summed in the database (GROUP BY kind: a year of a busy service is a million rows)
and converted with the factor set in force. Each kind of record is an activity of
data/activities.csv (RECORD_ACTIVITY), converted with that activity's factors, so a footprint and
an estimate that cuts the same activity use the same numbers from the same rows of the file.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func
from sqlmodel import Session, col, select

from improve.errors import InvalidInput
from models import (
    CLOSED_STATUSES,
    RECORD_UNITS,
    Factor,
    FactorSet,
    Improvement,
    ImprovementPartner,
    RecordKind,
    ServiceRecord,
    Status,
)
from tasks.estimates import comparison
from tasks.factors import FactorMissing, activities, factor_set_in_force

# The activity (data/activities.csv) each kind of record is. Detection names the same activity
# when it proposes an improvement that cuts it. A vehicle trip by car is car_miles (is_car).
RECORD_ACTIVITY: dict[RecordKind, str] = {
    RecordKind.letter_posted: "letters",
    RecordKind.page_printed: "pages",
    RecordKind.vehicle_trip: "van_miles",
    RecordKind.site_visit: "site_visits",
    RecordKind.meter_reading: "electricity",
    RecordKind.packaging_used: "packaging",
    RecordKind.partner_delivery: "van_miles",
}
CAR = "car"
# Kinds that are counted but given no kg CO2e in a footprint, and why.
NOT_CONVERTED: dict[RecordKind, str] = {
    RecordKind.site_visit: "counted, not converted: the travel to a visit is in the vehicle "
    "trips, so converting the visits as well would count it twice",
}


def is_car(detail: str) -> bool:
    """A vehicle trip whose detail is "car" was by car; any other (van, blank) by van."""
    return detail.strip().lower() == CAR


def record_activity(kind: RecordKind | str, detail: str = "") -> str:
    """The activity of data/activities.csv that a record of this kind (and detail) is."""
    kind = RecordKind(kind)
    if kind == RecordKind.vehicle_trip and is_car(detail):
        return "car_miles"
    return RECORD_ACTIVITY[kind]


# is_car, as SQL: the sums are grouped by it, so a van mile and a car mile are never added up.
_BY_CAR = sa.case(
    (
        sa.and_(
            col(ServiceRecord.kind) == RecordKind.vehicle_trip.value,
            func.lower(func.trim(col(ServiceRecord.detail))) == CAR,
        ),
        1,
    ),
    else_=0,
)


def _sums(session: Session, where: list[Any], key: Any = None) -> list[Any]:
    """(key, kind, by car, count, sum of quantity) for the records `where` selects, grouped by
    the key (a partner, a month; None for no key), the kind and by car.

    The expressions are labelled in a subquery and grouped by label: PostgreSQL takes a GROUP BY
    expression for the selected one only when even their bound parameters are the same."""
    rows = (
        select(  # type: ignore[call-overload]
            (sa.null() if key is None else key).label("key"),
            col(ServiceRecord.kind).label("kind"),
            _BY_CAR.label("by_car"),
            col(ServiceRecord.quantity).label("quantity"),
        )
        .where(*where)
        .subquery()
    )
    query = select(  # type: ignore[call-overload]
        rows.c.key, rows.c.kind, rows.c.by_car, func.count(), func.sum(rows.c.quantity)
    ).group_by(rows.c.key, rows.c.kind, rows.c.by_car)
    return list(session.exec(query).all())


@dataclass(frozen=True)
class FactorUsed:
    factor: str
    times: float  # how many of the factor's units one unit of the activity is
    kg_co2e_per_unit: float
    unit: str
    source: str  # the document, the table and the row's ID in the published file
    source_row: str
    note: str  # how a derived factor is derived


@dataclass(frozen=True)
class KindLine:
    """One kind of record (a vehicle trip by van or by car) and what it came to."""

    kind: RecordKind
    activity: str
    label: str
    records: int
    quantity: float
    unit: str
    kg_co2e: float | None  # None: counted, not converted (note says why)
    factors: tuple[FactorUsed, ...]
    note: str


@dataclass(frozen=True)
class Month:
    month: date  # its first day
    kg_co2e: float


@dataclass(frozen=True)
class Footprint:
    since: datetime
    until: datetime
    factor_set: str
    document: str
    lines: list[KindLine]
    kg_co2e: float  # the converted lines' sum
    months: list[Month]  # the twelve calendar months (UTC) up to `until`, oldest first


@dataclass(frozen=True)
class _Rate:
    kg_co2e: float | None
    factors: tuple[FactorUsed, ...]
    note: str


def footprint(
    *,
    session: Session,
    partner_id: int | None = None,
    process_id: int | None = None,
    since: datetime,
    until: datetime,
) -> Footprint:
    """The records of one partner and/or process from `since` up to (not including) `until`,
    per kind with its factors, and month by month over the twelve months up to `until`."""
    _check_range(since, until)
    factor_set = factor_set_in_force(session=session)
    rates = _Rates(session, factor_set)
    wanted = _filters(partner_id, process_id)
    occurred = col(ServiceRecord.occurred_at)
    sums = _sums(session, [*wanted, occurred >= since, occurred < until])
    lines = []
    for _, kind, by_car, count, amount in sums:
        kind = RecordKind(kind)
        activity = record_activity(kind, CAR if by_car else "")
        rate = rates.of(kind, activity)
        lines.append(
            KindLine(
                kind=kind,
                activity=activity,
                label=activities()[activity].label,
                records=int(count),
                quantity=float(amount),
                unit=RECORD_UNITS[kind],
                kg_co2e=None if rate.kg_co2e is None else float(amount) * rate.kg_co2e,
                factors=rate.factors,
                note=rate.note,
            )
        )
    order = list(RecordKind)
    lines.sort(key=lambda line: (order.index(line.kind), line.activity))
    return Footprint(
        since=since,
        until=until,
        factor_set=factor_set.name,
        document=factor_set.document,
        lines=lines,
        kg_co2e=sum(line.kg_co2e for line in lines if line.kg_co2e is not None),
        months=_series(session, rates, wanted, until),
    )


def partner_totals(*, session: Session, since: datetime, until: datetime) -> dict[int, float]:
    """Every partner's kg CO2e from `since` up to `until`, in one query (partners with no
    records are left out)."""
    _check_range(since, until)
    rates = _Rates(session, factor_set_in_force(session=session))
    occurred = col(ServiceRecord.occurred_at)
    sums = _sums(
        session,
        [col(ServiceRecord.partner_id).is_not(None), occurred >= since, occurred < until],
        key=col(ServiceRecord.partner_id),
    )
    totals: dict[int, float] = defaultdict(float)
    for partner_id, kind, by_car, _count, amount in sums:
        rate = rates.of(RecordKind(kind), record_activity(kind, CAR if by_car else ""))
        totals[partner_id] += float(amount) * (rate.kg_co2e or 0)
    return dict(totals)


@dataclass(frozen=True)
class Linked:
    """An improvement linked to a partner or process, with its forecast and actual kg CO2e."""

    improvement: Improvement
    forecast_kg_co2e: float
    actual_kg_co2e: float | None


def linked_improvements(
    *, session: Session, partner_id: int | None = None, process_id: int | None = None
) -> list[Linked]:
    """The improvements linked to a partner (ImprovementPartner) or a process, newest first."""
    query = select(Improvement).order_by(col(Improvement.id).desc())
    if partner_id is not None:
        query = query.join(
            ImprovementPartner, col(ImprovementPartner.improvement_id) == col(Improvement.id)
        ).where(ImprovementPartner.partner_id == partner_id)
    if process_id is not None:
        query = query.where(Improvement.process_id == process_id)
    result = []
    for improvement in session.exec(query).all():
        carbon = next(row for row in comparison(improvement) if row["measure"] == "kg_co2e")
        result.append(Linked(improvement, carbon["forecast"], carbon["actual"]))
    return result


def improvement_counts(*, session: Session) -> dict[int, dict[str, int]]:
    """Per partner, how many of its linked improvements are open and how many completed."""
    rows = session.exec(
        select(col(ImprovementPartner.partner_id), col(Improvement.status), func.count())
        .join(Improvement, col(Improvement.id) == col(ImprovementPartner.improvement_id))
        .group_by(col(ImprovementPartner.partner_id), col(Improvement.status))
    ).all()
    counts: dict[int, dict[str, int]] = defaultdict(lambda: {"open": 0, "completed": 0})
    for partner_id, status, count in rows:
        if status == Status.completed:
            counts[partner_id]["completed"] += count
        elif status not in CLOSED_STATUSES:
            counts[partner_id]["open"] += count
    return dict(counts)


def this_year(now: datetime) -> tuple[datetime, datetime]:
    """From 1 January (UTC) of `now`'s year up to `now`: what the partner list shows."""
    return datetime(now.year, 1, 1, tzinfo=UTC), now


class _Rates:
    """kg CO2e per record unit of each activity, with the set in force, looked up once."""

    def __init__(self, session: Session, factor_set: FactorSet) -> None:
        self.factor_set = factor_set
        self.factors = {
            f.activity: f
            for f in session.exec(select(Factor).where(Factor.factor_set_id == factor_set.id))
        }
        self.known: dict[tuple[RecordKind, str], _Rate] = {}

    def of(self, kind: RecordKind, activity: str) -> _Rate:
        if (kind, activity) not in self.known:
            self.known[kind, activity] = self._work_out(kind, activity)
        return self.known[kind, activity]

    def _work_out(self, kind: RecordKind, activity: str) -> _Rate:
        if kind in NOT_CONVERTED:
            return _Rate(None, (), NOT_CONVERTED[kind])
        used = []
        for name, times in activities()[activity].factors:
            factor = self.factors.get(name)
            if factor is None:  # a loaded set without it: say which, and how to get it
                return _Rate(None, (), str(FactorMissing(name, self.factor_set.name)))
            used.append(
                FactorUsed(
                    factor=name,
                    times=times,
                    kg_co2e_per_unit=factor.kg_co2e,
                    unit=factor.unit,
                    source=f"{self.factor_set.document}: {factor.source_table}, "
                    f"row {factor.source_row}",
                    source_row=factor.source_row,
                    note=factor.note,
                )
            )
        return _Rate(sum(f.times * f.kg_co2e_per_unit for f in used), tuple(used), "")


def _filters(partner_id: int | None, process_id: int | None) -> list[Any]:
    wanted = []
    if partner_id is not None:
        wanted.append(ServiceRecord.partner_id == partner_id)
    if process_id is not None:
        wanted.append(ServiceRecord.process_id == process_id)
    return wanted


def _check_range(since: datetime, until: datetime) -> None:
    errors = {
        name: "must be a time with its zone (UTC)"
        for name, moment in (("since", since), ("until", until))
        if moment.tzinfo is None
    }
    if not errors and since >= until:
        errors["since"] = f"must be before until ({until.isoformat()})"
    if errors:
        raise InvalidInput(errors)


def month_starts(until: datetime) -> list[datetime]:
    """The first moments (UTC) of the twelve calendar months up to `until`, oldest first; the
    last is the month `until` falls in (the one before, when `until` is exactly its start)."""
    last = (until - timedelta(microseconds=1)).astimezone(UTC)
    index = last.year * 12 + last.month - 1
    first = max(index - 11, 12)  # none before January of year 1, the first a datetime holds
    return [datetime(n // 12, n % 12 + 1, 1, tzinfo=UTC) for n in range(first, index + 1)]


def _series(session: Session, rates: _Rates, wanted: Iterable[Any], until: datetime) -> list[Month]:
    starts = month_starts(until)
    occurred = col(ServiceRecord.occurred_at)
    # One GROUP BY over the year: a CASE puts each record in its month.
    whens = [(occurred < start, n) for n, start in enumerate(starts[1:])]
    bucket = sa.case(*whens, else_=len(starts) - 1) if whens else sa.literal(0)
    sums = _sums(session, [*wanted, occurred >= starts[0], occurred < until], key=bucket)
    kg = [0.0] * len(starts)
    for n, kind, by_car, _count, amount in sums:
        rate = rates.of(RecordKind(kind), record_activity(kind, CAR if by_car else ""))
        kg[int(n)] += float(amount) * (rate.kg_co2e or 0)
    return [Month(start.date(), value) for start, value in zip(starts, kg, strict=True)]
