"""Conversion factors: loading a published year-set, choosing the one in force, the activities.

Factors come from the UK government's flat file (ID, Scope, Level 1–4, Column Text, UOM,
GHG/Unit, "GHG Conversion Factor <year>"): the shipped extract in data/factors/ and any full file
an organisation imports are read by the same code. Each factor Improve uses is one row of that
file, found by its levels and unit (FLAT_ROWS), or derived from one with a stated assumption.
"""

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func
from sqlmodel import Session, col, select

from improve.errors import ImproveError, InvalidInput, NotFound
from models import ActivityLine, Factor, FactorSet
from models.factors import Activity as Activity  # re-exported: read with the factors
from models.factors import activities as activities

DATA = Path(__file__).resolve().parents[1] / "data"
SHIPPED = DATA / "factors" / "uk-2025.csv"
DOCUMENT = "UK Government GHG Conversion Factors for Company Reporting {year} (DESNZ), flat file"
URL = (
    "https://www.gov.uk/government/collections/government-conversion-factors-for-company-reporting"
)
HEADER = ["ID", "Scope", "Level 1", "Level 2", "Level 3", "Level 4", "Column Text", "UOM"]

# Improve's factor → (Level 1 choices, Level 2, Level 3, Column Text, UOM, divisor to its unit)
FLAT_ROWS: dict[str, tuple[tuple[str, ...], str, str, str, str, float]] = {
    "electricity_kwh": (
        ("UK electricity", "Managed assets- electricity"),
        "Electricity generated",
        "Electricity: UK",
        "",
        "kWh",
        1,
    ),
    "natural_gas_kwh": (("Fuels",), "Gaseous fuels", "Natural gas", "", "kWh (Gross CV)", 1),
    "diesel_litre": (("Fuels",), "Liquid fuels", "Diesel (average biofuel blend)", "", "litres", 1),
    "petrol_litre": (("Fuels",), "Liquid fuels", "Petrol (average biofuel blend)", "", "litres", 1),
    "car_km": (("Business travel- land",), "Cars (by size)", "Average car", "Unknown", "km", 1),
    "car_mile": (
        ("Business travel- land",),
        "Cars (by size)",
        "Average car",
        "Unknown",
        "miles",
        1,
    ),
    "van_km": (("Freighting goods",), "Vans", "Average (up to 3.5 tonnes)", "Unknown", "km", 1),
    "van_mile": (
        ("Freighting goods",),
        "Vans",
        "Average (up to 3.5 tonnes)",
        "Unknown",
        "miles",
        1,
    ),
    "paper_kg": (
        ("Material use",),
        "Paper",
        "Paper and board: paper",
        "Primary material production",
        "tonnes",
        1000,
    ),
    "plastic_kg": (
        ("Material use",),
        "Plastic",
        "Plastics: average plastics",
        "Primary material production",
        "tonnes",
        1000,
    ),
    "waste_landfill_kg": (
        ("Waste disposal",),
        "Refuse",
        "Commercial and industrial waste",
        "Landfill",
        "tonnes",
        1000,
    ),
    "waste_incinerated_kg": (
        ("Waste disposal",),
        "Refuse",
        "Commercial and industrial waste",
        "Incineration with Energy Recovery",
        "tonnes",
        1000,
    ),
    "paper_waste_landfill_kg": (
        ("Waste disposal",),
        "Paper",
        "Paper and board: paper",
        "Landfill",
        "tonnes",
        1000,
    ),
    "paper_waste_recycled_kg": (
        ("Waste disposal",),
        "Paper",
        "Paper and board: paper",
        "Closed-loop",
        "tonnes",
        1000,
    ),
    "water_supply_m3": (("Water supply",), "Water supply", "Water supply", "", "cubic metres", 1),
    "water_treatment_m3": (
        ("Water treatment",),
        "Water treatment",
        "Water treatment",
        "",
        "cubic metres",
        1,
    ),
}
UNITS = {
    "electricity_kwh": "kWh",
    "natural_gas_kwh": "kWh",
    "diesel_litre": "litre",
    "petrol_litre": "litre",
    "car_km": "km",
    "car_mile": "mile",
    "van_km": "km",
    "van_mile": "mile",
    "water_supply_m3": "m3",
    "water_treatment_m3": "m3",
}
# Derived factor → (the factor it scales, kg of it per unit, unit, why)
DERIVED: dict[str, tuple[str, float, str, str]] = {
    "paper_sheet": (
        "paper_kg",
        0.0049896,
        "sheet",
        "one A4 sheet of 80 g/m² paper (0.210 m × 0.297 m, ISO 216) weighs 4.99 g",
    ),
    "letter": (
        "paper_kg",
        0.015,
        "letter",
        "one letter taken as two A4 sheets and an envelope, 15 g of paper; delivery not counted",
    ),
}
_YEAR = re.compile(r"GHG Conversion Factor (\d{4})")


class FactorFileError(ImproveError):
    status_code = 422


class FactorSetExists(ImproveError):
    status_code = 409

    def __init__(self, name: str) -> None:
        super().__init__(
            f"factor set {name} is already loaded; a loaded set never changes, so estimates made "
            "with it stay as they were: load the new file under another name (--name)"
        )


class FactorMissing(InvalidInput):
    """An activity whose factor the set lacks: bad input for the line that names it (`field`)."""

    def __init__(self, factor: str, factor_set: str, field: str = "activity") -> None:
        super().__init__(
            {
                field: f"factor set {factor_set} has no {factor} factor: load the government's "
                "flat file that has it (improve factors import FILE --use)"
            }
        )
        self.factor, self.factor_set = factor, factor_set


@dataclass(frozen=True)
class FlatFile:
    year: int
    factors: dict[str, tuple[float, str, str]]  # factor → (kg CO2e per unit, table, row ID)
    missing: list[str]


def read_flat_file(path: Path) -> FlatFile:
    """The factors Improve uses, from a government flat file (CSV); title lines above the header
    are skipped. Raises FactorFileError naming the line when the file is not one."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            lines = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise FactorFileError(f"{path}: cannot read it as CSV ({error})") from error
    start = next((n for n, row in enumerate(lines) if row[: len(HEADER)] == HEADER), None)
    if start is None:
        raise FactorFileError(
            f"{path}: no header row starting {','.join(HEADER)}: is it the flat file (CSV)?"
        )
    header = lines[start]
    year_column = next((i for i, name in enumerate(header) if _YEAR.fullmatch(name.strip())), None)
    if year_column is None:
        raise FactorFileError(f"{path}, line {start + 1}: no 'GHG Conversion Factor <year>' column")
    year = int(_YEAR.fullmatch(header[year_column].strip()).group(1))  # type: ignore[union-attr]
    unit_column = header.index("GHG/Unit") if "GHG/Unit" in header else None
    factors: dict[str, tuple[float, str, str]] = {}
    for number, row in enumerate(lines[start + 1 :], start=start + 2):
        if len(row) <= max(year_column, 7) or (
            unit_column is not None and row[unit_column] != "kg CO2e"
        ):
            continue
        for name, (level_1, level_2, level_3, column_text, uom, divisor) in FLAT_ROWS.items():
            if row[2] in level_1 and (row[3], row[4], row[6], row[7]) == (
                level_2,
                level_3,
                column_text,
                uom,
            ):
                value = _number(row[year_column], path, number)
                if value is None:
                    continue  # published as not available: never read as zero
                if name not in factors or row[2] == level_1[0]:  # the first choice wins
                    table = " › ".join(part for part in (*row[2:5], row[6]) if part)
                    factors[name] = (value / divisor, f"{table} ({uom})", row[0])
    for name, (base, kg, _unit, _why) in DERIVED.items():
        if base in factors:
            value, table, row_id = factors[base]
            factors[name] = (value * kg, table, row_id)
    wanted = [*FLAT_ROWS, *DERIVED]
    return FlatFile(year, factors, [name for name in wanted if name not in factors])


def _number(text: str, path: Path, line: int) -> float | None:
    text = text.strip().replace(",", "")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise FactorFileError(f"{path}, line {line}: factor {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise FactorFileError(f"{path}, line {line}: factor {text!r} is not a usable number")
    return value


def load_factor_set(
    *, session: Session, path: Path, name: str | None = None, use: bool = False
) -> tuple[FactorSet, list[str]]:
    """Load a flat file as a new factor set (never over one already loaded). Caller commits.

    Returns the set and the factors the file did not have."""
    flat = read_flat_file(path)
    name = name or f"uk-{flat.year}"
    if session.exec(select(FactorSet).where(FactorSet.name == name)).first() is not None:
        raise FactorSetExists(name)
    if not flat.factors:
        raise FactorFileError(f"{path}: none of the rows Improve uses are in it")
    factor_set = FactorSet(
        name=name, year=flat.year, document=DOCUMENT.format(year=flat.year), url=URL
    )
    session.add(factor_set)
    session.flush()
    assert factor_set.id is not None
    for activity, (value, table, row_id) in sorted(flat.factors.items()):
        derived = DERIVED.get(activity)
        session.add(
            Factor(
                factor_set_id=factor_set.id,
                activity=activity,
                unit=derived[2] if derived else UNITS.get(activity, "kg"),
                kg_co2e=value,
                source_table=table,
                source_row=row_id,
                note=f"{derived[0]} × {derived[1]} kg: {derived[3]}" if derived else "",
            )
        )
    if use:
        use_factor_set(session=session, name=name)
    return factor_set, flat.missing


def use_factor_set(*, session: Session, name: str) -> FactorSet:
    """Put a loaded set in force for new estimates; the one before stops being. Caller commits."""
    chosen = session.exec(select(FactorSet).where(FactorSet.name == name)).first()
    if chosen is None:
        raise NotFound("factor set", name)
    for factor_set in session.exec(select(FactorSet).where(col(FactorSet.in_force))).all():
        factor_set.in_force = False
        session.add(factor_set)
    chosen.in_force = True
    session.add(chosen)
    session.flush()
    return chosen


def factor_set_in_force(*, session: Session) -> FactorSet:
    """The set new estimates use; the shipped one is loaded and put in force if none is."""
    in_force = session.exec(select(FactorSet).where(col(FactorSet.in_force))).first()
    if in_force is not None:
        return in_force
    shipped = session.exec(select(FactorSet).where(FactorSet.name == "uk-2025")).first()
    if shipped is None:
        shipped, _missing = load_factor_set(session=session, path=SHIPPED)
    return use_factor_set(session=session, name=shipped.name)


def factor_sets(*, session: Session) -> list[tuple[FactorSet, list[Factor], int]]:
    """Every loaded set with its factors and how many activity lines were worked out with it."""
    factor_set_in_force(session=session)
    result = []
    for factor_set in session.exec(select(FactorSet).order_by(col(FactorSet.year))).all():
        factors = session.exec(
            select(Factor)
            .where(Factor.factor_set_id == factor_set.id)
            .order_by(col(Factor.activity))
        ).all()
        used = session.exec(
            select(func.count()).where(ActivityLine.factor_set_id == factor_set.id)
        ).one()
        result.append((factor_set, list(factors), used))
    return result
