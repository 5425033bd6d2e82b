"""Conversion factors with their published source, and the activity an improvement changes.

A factor set is one year's factors from one document (the UK government's conversion factors for
company reporting); exactly one set is in force. An improvement's estimate and its measured result
are computed from activity lines ("2,000 fewer letters a month") with the set in force when the
estimate was made; the line records that set, so a later set never changes an estimate.
"""

import csv
import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from pydantic import BaseModel, field_validator
from pydantic import Field as PydanticField
from sqlmodel import Field, SQLModel

from models.db import MAX_AMOUNT, UtcDateTime, utcnow

ACTIVITIES = Path(__file__).resolve().parents[1] / "data" / "activities.csv"
# A line is at most a million units a week, month or year, and an estimate at most 20 lines: so
# whatever the input, a year's figures fit the improvement's columns (20 × 1e6 × 52 weeks × 2
# sheets a letter stays under MAX_INT sheets; 60 £ a site visit under MAX_AMOUNT pounds).
MAX_QUANTITY = 1e6
MAX_LINES = 20


class FactorSet(SQLModel, table=True):
    __tablename__ = "factor_set"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=40, unique=True, description='e.g. "uk-2025".')
    year: int
    document: str = Field(max_length=300, description="The published document the factors are in.")
    url: str = Field(default="", max_length=500)
    in_force: bool = Field(default=False, description="The set new estimates use: one at a time.")
    loaded_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class Factor(SQLModel, table=True):
    """kg CO2e per unit of one activity, and where in the document the number is."""

    __table_args__ = (sa.UniqueConstraint("factor_set_id", "activity", name="uq_factor_activity"),)

    id: int | None = Field(default=None, primary_key=True)
    factor_set_id: int = Field(foreign_key="factor_set.id", index=True)
    activity: str = Field(max_length=40, description='Improve\'s name for it, e.g. "van_mile".')
    unit: str = Field(max_length=40)
    kg_co2e: float = Field(ge=0, le=MAX_AMOUNT, description="kg CO2e per unit.")
    source_table: str = Field(max_length=300, description="Where in the document: its levels.")
    source_row: str = Field(default="", max_length=80, description="The row's ID in the file.")
    note: str = Field(default="", max_length=500, description="How a derived factor is derived.")


class Basis(StrEnum):
    forecast = "forecast"  # the estimate made before the work
    actual = "actual"  # what was measured when it was done


class Per(StrEnum):
    week = "week"
    month = "month"
    year = "year"


PER_YEAR = {Per.week: 52, Per.month: 12, Per.year: 1}


class ActivityLine(SQLModel, table=True):
    """One change in activity and what it comes to a year, worked out with one factor set.

    `quantity` is how much less of the activity there is per `per` (negative: more, such as the
    electricity a heat pump uses instead of gas). The computed columns are a year's worth.
    """

    __tablename__ = "activity_line"

    id: int | None = Field(default=None, primary_key=True)
    improvement_id: int = Field(foreign_key="improvement.id", index=True)
    basis: Basis = Field(sa_type=sa.String(16))
    activity: str = Field(max_length=40)
    quantity: float = Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT)
    per: Per = Field(sa_type=sa.String(8))
    factor_set_id: int = Field(foreign_key="factor_set.id")
    factor_id: int | None = Field(default=None, foreign_key="factor.id")
    kg_co2e: float = 0
    kwh: float = 0
    kg_waste: float = 0
    sheets_paper: float = 0
    saving: float = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


@dataclass(frozen=True)
class Activity:
    """Something an improvement changes, and what one unit of it comes to."""

    name: str
    label: str
    unit: str
    factors: tuple[tuple[str, float], ...]  # (factor, how many of its units one unit is)
    kwh: float
    sheets: float
    kg_waste: float
    cost: float


@cache
def activities() -> dict[str, Activity]:
    """data/activities.csv, read once: the activities an estimate may name."""
    result: dict[str, Activity] = {}
    with ACTIVITIES.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            terms = []
            for term in row["factors"].split("+"):
                factor, _, times = term.partition("*")
                terms.append((factor.strip(), float(times) if times else 1.0))
            result[row["activity"]] = Activity(
                name=row["activity"],
                label=row["label"],
                unit=row["unit"],
                factors=tuple(terms),
                kwh=float(row["kwh"]),
                sheets=float(row["sheets"]),
                kg_waste=float(row["kg_waste"]),
                cost=float(row["cost"]),
            )
    return result


class ActivityIn(BaseModel):
    """One change in activity: how much less of it there is each week, month or year.

    Here beside the tables, not in tasks/, because ImprovementCreate (every door's input) holds a
    list of them.
    """

    activity: str = PydanticField(
        description="One of data/activities.csv, e.g. letters, van_miles.",
        json_schema_extra={"enum": list(activities())},
    )
    quantity: float = PydanticField(
        ge=-MAX_QUANTITY,
        le=MAX_QUANTITY,
        description="How much less per period (negative: more, e.g. a heat pump's electricity).",
    )
    per: Per = Per.year

    @field_validator("activity")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in activities():
            raise ValueError(f"unknown activity {value!r}; one of {', '.join(activities())}")
        return value

    @field_validator("quantity", mode="before")
    @classmethod
    def _a_number(cls, value: object) -> object:
        if isinstance(value, bool | str) and not _numeric(value):
            raise ValueError("must be a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


def _numeric(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False
