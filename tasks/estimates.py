"""Estimates worked out from activity with published factors, and forecast beside actual.

An improvement says what changes ("2,000 fewer letters a month"); each line is worked out with
one factor set into a year's kg CO2e, kWh, sheets, kg of waste and money, and the improvement's
figures are the sum of its lines. The forecast and the measured result use the same set — the one
recorded with the first estimate — so their difference is the work, not a new year's factors.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from improve.errors import InvalidInput
from improve.formatting import money, quantity
from models import (
    PER_YEAR,
    ActivityLine,
    Basis,
    Category,
    Factor,
    FactorSet,
    Improvement,
    Per,
    Status,
)
from models.db import MAX_AMOUNT, MAX_INT
from models.factors import ActivityIn as ActivityIn  # re-exported: lines come in as these
from tasks.factors import FactorMissing, activities, factor_set_in_force
from tasks.lifecycle import completion_times, get_improvement

MEASURES = ("kg_co2e", "kwh", "kg_waste", "sheets_paper", "saving")
MEASURE_NAMES = {
    "kg_co2e": "Emissions avoided a year",
    "kwh": "Energy saved a year",
    "kg_waste": "Waste diverted a year",
    "sheets_paper": "Paper saved a year",
    "saving": "Money saved a year",
}
# measure → (the improvement's forecast column, its measured column)
COLUMNS = {
    "kg_co2e": ("kg_co2e", "measured_kg_co2e"),
    "kwh": ("kwh", "measured_kwh"),
    "kg_waste": ("kg_waste", "measured_kg_waste"),
    "sheets_paper": ("sheets_paper", "measured_sheets_paper"),
    "saving": ("annual_saving", "measured_saving"),
}


def describe(activity: str, amount: float, per: str) -> str:
    """ "2,000 fewer letters posted a month" (or "more" for a negative amount)."""
    known = activities()[activity]
    direction = "fewer" if amount >= 0 else "more"
    if known.unit in ("kWh", "kg", "m3", "litre"):
        direction = "less" if amount >= 0 else "more"
        return f"{quantity(abs(amount), known.unit)} {direction} {known.label} a {per}"
    return f"{quantity(abs(amount))} {direction} {known.label} a {per}"


def work_out(
    *, session: Session, factor_set: FactorSet, line: ActivityIn, improvement_id: int, basis: Basis
) -> ActivityLine:
    """One line worked out into a year's figures with `factor_set`; not added to the session."""
    known = activities()[line.activity]
    per_year = line.quantity * PER_YEAR[line.per]
    kg_co2e = 0.0
    factor_id = None
    for name, times in known.factors:
        factor = session.exec(
            select(Factor).where(Factor.factor_set_id == factor_set.id, Factor.activity == name)
        ).first()
        if factor is None:
            raise FactorMissing(name, factor_set.name)
        factor_id = factor_id or factor.id
        kg_co2e += per_year * times * factor.kg_co2e
    assert factor_set.id is not None
    return ActivityLine(
        improvement_id=improvement_id,
        basis=basis,
        activity=line.activity,
        quantity=line.quantity,
        per=line.per,
        factor_set_id=factor_set.id,
        factor_id=factor_id,
        kg_co2e=kg_co2e,
        kwh=per_year * known.kwh,
        kg_waste=per_year * known.kg_waste,
        sheets_paper=per_year * known.sheets,
        saving=per_year * known.cost,
    )


def _factor_set_of(session: Session, improvement: Improvement) -> FactorSet:
    """The set the improvement's estimate was made with, else the one in force now."""
    factor_set = (
        session.get(FactorSet, improvement.factor_set_id)
        if improvement.factor_set_id is not None
        else factor_set_in_force(session=session)
    )
    assert factor_set is not None and factor_set.id is not None
    return factor_set


def _work_all(
    session: Session,
    factor_set: FactorSet,
    lines: list[ActivityIn],
    improvement_id: int,
    basis: Basis,
) -> list[ActivityLine]:
    """Every line worked out; a missing factor is named as the line the input gave it."""
    worked = []
    for number, line in enumerate(lines):
        try:
            worked.append(
                work_out(
                    session=session,
                    factor_set=factor_set,
                    line=line,
                    improvement_id=improvement_id,
                    basis=basis,
                )
            )
        except FactorMissing as missing:
            raise FactorMissing(
                missing.factor, missing.factor_set, f"activities[{number}].activity"
            ) from None
        too_big = _beyond_limits({m: abs(getattr(worked[-1], m)) for m in MEASURES})
        if too_big:
            raise InvalidInput({f"activities[{number}].quantity": f"comes to {too_big}"})
    too_big = _beyond_limits({m: sum(getattr(w, m) for w in worked) for m in MEASURES})
    if too_big:
        raise InvalidInput({"activities": f"together the lines come to {too_big}"})
    return worked


def _beyond_limits(values: dict[str, float]) -> str | None:
    """Why a year's figures cannot be stored (the improvement's columns hold at most
    MAX_AMOUNT, and whole sheets up to MAX_INT), or None when they can."""
    for measure, value in values.items():
        limit = MAX_INT if measure == "sheets_paper" else MAX_AMOUNT
        if value > limit:
            return f"{figure(measure, value)} a year: more than the {limit:,.0f} Improve can hold"
    return None


def set_activity(
    *, session: Session, improvement_id: int, basis: Basis, lines: list[ActivityIn]
) -> list[ActivityLine]:
    """Replace the improvement's forecast (or actual) lines and set its figures from them.

    The first estimate records the set in force; later lines, forecast or actual, use that set.
    A total below zero is stored as zero (the lines keep the true working). Caller commits.
    """
    improvement = get_improvement(session=session, improvement_id=improvement_id)
    if not lines:
        raise InvalidInput({"activity": "name at least one activity that changes"})
    factor_set = _factor_set_of(session, improvement)
    worked = _work_all(session, factor_set, lines, improvement_id, basis)
    for old in session.exec(
        select(ActivityLine).where(
            ActivityLine.improvement_id == improvement_id, ActivityLine.basis == basis
        )
    ).all():
        session.delete(old)
    session.add_all(worked)
    improvement.factor_set_id = factor_set.id
    side = 0 if basis == Basis.forecast else 1
    for measure, columns in COLUMNS.items():
        total = max(0.0, sum(getattr(line, measure) for line in worked))
        setattr(
            improvement, columns[side], round(total) if columns[side] == "sheets_paper" else total
        )
    session.add(improvement)
    session.flush()
    return worked


def add_measured_activity(
    *, session: Session, improvement_id: int, lines: list[ActivityIn]
) -> list[ActivityLine]:
    """Add measured lines to the improvement's actual lines (one action item's result); the
    actual lines become the ones before and these, worked out again with the same set. Caller
    commits."""
    earlier = [
        ActivityIn(activity=line.activity, quantity=line.quantity, per=Per(line.per))
        for line in session.exec(
            select(ActivityLine)
            .where(
                ActivityLine.improvement_id == improvement_id,
                ActivityLine.basis == Basis.actual,
            )
            .order_by(col(ActivityLine.id))
        ).all()
    ]
    improvement = get_improvement(session=session, improvement_id=improvement_id)
    # Checked alone first, so a refusal names the owner's own line, not its place in the union.
    _work_all(session, _factor_set_of(session, improvement), lines, improvement_id, Basis.actual)
    worked = set_activity(
        session=session, improvement_id=improvement_id, basis=Basis.actual, lines=earlier + lines
    )
    return worked[len(earlier) :]


def activity_totals(*, session: Session, improvement_id: int, basis: Basis) -> dict[str, float]:
    """Each measure summed over the improvement's lines of `basis` ({} when it has none)."""
    lines = session.exec(
        select(ActivityLine).where(
            ActivityLine.improvement_id == improvement_id, ActivityLine.basis == basis
        )
    ).all()
    if not lines:
        return {}
    return {measure: sum(getattr(line, measure) for line in lines) for measure in MEASURES}


def working(*, session: Session, improvement_id: int) -> list[dict[str, Any]]:
    """The working behind an improvement's figures, line by line, for its page and the API."""
    rows = session.exec(
        select(ActivityLine, FactorSet)
        .join(FactorSet, col(FactorSet.id) == col(ActivityLine.factor_set_id))
        .where(ActivityLine.improvement_id == improvement_id)
        .order_by(col(ActivityLine.basis).desc(), col(ActivityLine.id))
    ).all()
    result = []
    for line, factor_set in rows:
        known = activities().get(line.activity)
        factors = []
        for name, times in known.factors if known else ():
            factor = session.exec(
                select(Factor).where(Factor.factor_set_id == factor_set.id, Factor.activity == name)
            ).first()
            if factor is not None:
                factors.append(
                    {
                        "factor": name,
                        "times": times,
                        "kg_co2e_per_unit": factor.kg_co2e,
                        "unit": factor.unit,
                        "source": f"{factor_set.document}: {factor.source_table}, "
                        f"row {factor.source_row}",
                        "note": factor.note,
                    }
                )
        per = Per(line.per)
        per_year = line.quantity * PER_YEAR[per]
        result.append(
            {
                "basis": Basis(line.basis).value,
                "activity": line.activity,
                "quantity": line.quantity,
                "per": per.value,
                "text": describe(line.activity, line.quantity, per.value),
                "per_year": per_year,
                "unit": known.unit if known else "",
                "factor_set": factor_set.name,
                "factors": factors,
                **{measure: getattr(line, measure) for measure in MEASURES},
            }
        )
    return result


def comparison(improvement: Improvement) -> list[dict[str, Any]]:
    """Forecast, actual and the variance for each measure of one improvement."""
    rows = []
    for measure, (forecast_column, actual_column) in COLUMNS.items():
        forecast = float(getattr(improvement, forecast_column) or 0)
        actual = getattr(improvement, actual_column)
        rows.append(_row(measure, forecast, actual))
    return rows


def _row(measure: str, forecast: float, actual: float | None) -> dict[str, Any]:
    variance = None if actual is None else actual - forecast
    percent = None if variance is None or not forecast else 100 * variance / forecast
    return {
        "measure": measure,
        "forecast": forecast,
        "actual": actual,
        "variance": variance,
        "variance_percent": percent,
    }


def comparison_by_category(
    *, session: Session, completed_before: datetime | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Completed improvements' forecast against actual, per category and in total ("total");
    only those completed before `completed_before` when it is given (a report's period)."""
    sums = [
        func.coalesce(func.sum(getattr(Improvement, column)), 0)
        for columns in COLUMNS.values()
        for column in columns
    ]
    query = select(Improvement.category, *sums).where(Improvement.status == Status.completed)
    if completed_before is not None:
        done = completion_times()
        query = query.join(done, done.c.improvement_id == col(Improvement.id)).where(
            done.c.completed_at < completed_before
        )
    by_category = session.exec(query.group_by(Improvement.category)).all()
    result: dict[str, list[dict[str, Any]]] = {}
    total = [0.0] * len(sums)
    for row in by_category:
        category, values = row[0], list(row[1:])
        result[Category(category).value] = _rows(values)
        total = [a + float(b) for a, b in zip(total, values, strict=True)]
    result["total"] = _rows(total)
    return result


def _rows(values: list[Any]) -> list[dict[str, Any]]:
    pairs = [(float(values[i]), float(values[i + 1])) for i in range(0, len(values), 2)]
    return [_row(measure, f, a) for measure, (f, a) in zip(COLUMNS, pairs, strict=True)]


def figure(measure: str, value: float | None, *, signed: bool = False) -> str:
    """One measure as people read it: "£1,200", "484 kg CO2e" ("+£300", "−50 kWh" if signed)."""
    if value is None:
        return "not measured"
    if signed:
        sign = "+" if value > 0 else ("−" if value < 0 else "")
        return sign + figure(measure, abs(value))
    if measure == "saving":
        return money(value)
    unit = {"kg_co2e": "kg CO2e", "kwh": "kWh", "kg_waste": "kg", "sheets_paper": "sheets"}
    return quantity(value, unit[measure])
