"""Improvements, who they touch, and the append-only history of their transitions."""

import math
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from pydantic import field_validator
from sqlmodel import Field, SQLModel

from models.db import MAX_AMOUNT, MAX_INT, UtcDateTime, utcnow
from models.factors import MAX_LINES, ActivityIn

NO_NUL = "must not contain a NUL character"
# What str.split() splits on (every character whose str.isspace() is true), as a regex class:
# the OpenAPI document's patterns and the validators below then agree on what a space is.
WHITESPACE = r"\t\n\x0b\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# These patterns document what the validators check; the validators enforce it, with messages
# a person can act on (pydantic's own pattern errors would quote the regex).
NO_NUL_PATTERN = r"^[^\x00]*$"
# At least 3 characters once each run of spaces is one space and the ends trimmed: "abc", "a b".
_SPACE, _SOLID = f"[{WHITESPACE}]", f"[^{WHITESPACE}\\x00]"
TITLE_PATTERN = rf"^[^\x00]*{_SOLID}(?:{_SPACE}+|{_SPACE}*{_SOLID}{_SPACE}*){_SOLID}[^\x00]*$"
ESTIMATE_FIELDS = ("estimated_cost", "annual_saving", "kwh", "kg_co2e", "kg_waste", "sheets_paper")


def _documents(**schema: object) -> dict[str, object]:
    """Extra JSON Schema for a field: what its validator checks, told to API clients."""
    return {"json_schema_extra": schema}


class Category(StrEnum):
    energy = "energy"
    carbon = "carbon"
    waste = "waste"
    resource = "resource"
    customer_update = "customer_update"
    alternative_solution = "alternative_solution"
    goodwill = "goodwill"
    process = "process"


class Source(StrEnum):
    staff = "staff"
    customer = "customer"
    detected = "detected"
    triggered = "triggered"


class Status(StrEnum):
    identified = "identified"
    submitted = "submitted"
    awaiting_approval = "awaiting_approval"
    approved = "approved"
    in_progress = "in_progress"
    completed = "completed"
    rejected = "rejected"
    cancelled = "cancelled"


# Where an improvement's life ends: nothing moves it on from these.
CLOSED_STATUSES = (Status.completed, Status.rejected, Status.cancelled)


class Channel(StrEnum):
    """Through which door a change came in: recorded on every transition."""

    web = "web"
    email = "email"
    api = "api"
    cli = "cli"
    flow = "flow"
    sweep = "sweep"


class Estimates(SQLModel):
    estimated_cost: float = Field(
        default=0, ge=0, le=MAX_AMOUNT, description="One-off cost, in pounds."
    )
    annual_saving: float = Field(
        default=0, ge=0, le=MAX_AMOUNT, description="Money saved a year, in pounds."
    )
    kwh: float = Field(default=0, ge=0, le=MAX_AMOUNT, description="Energy saved a year, kWh.")
    kg_co2e: float = Field(
        default=0, ge=0, le=MAX_AMOUNT, description="Emissions avoided a year, kg CO2e."
    )
    kg_waste: float = Field(
        default=0, ge=0, le=MAX_AMOUNT, description="Waste diverted a year, kg."
    )
    sheets_paper: int = Field(
        default=0, ge=0, le=MAX_INT, description="Sheets of paper saved a year."
    )

    @field_validator(*ESTIMATE_FIELDS, mode="before")
    @classmethod
    def _a_number(cls, value: object) -> object:
        # JSON's true and "12" are no numbers, though pydantic would read them as 1 and 12.
        if isinstance(value, bool | str):
            raise ValueError("must be a number")
        # NaN and infinity are floats (JSON's NaN and Infinity, the CLI's "nan"); they fail `ge`
        # or `le` only by accident, with a message about the limit. Every door builds this model,
        # so this is the one place that refuses them.
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class ImprovementBase(Estimates):
    title: str = Field(
        min_length=3,
        max_length=200,
        description="What should change, in a line: at least 3 characters besides spaces.",
        schema_extra=_documents(pattern=TITLE_PATTERN),
    )
    description: str = Field(
        default="", max_length=10_000, schema_extra=_documents(pattern=NO_NUL_PATTERN)
    )
    category: Category = Field(sa_type=sa.String(32))
    source: Source = Field(default=Source.staff, sa_type=sa.String(16))

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        # PostgreSQL refuses NUL in text, and no person means one: say so rather than fail later.
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(text, str) and "\x00" in text for text in texts):
            raise ValueError(NO_NUL)
        return value

    @field_validator("title")
    @classmethod
    def _title_is_one_line(cls, value: str) -> str:
        value = " ".join(value.split())
        if len(value) < 3:
            raise ValueError("title needs at least 3 characters")
        return value


class ImprovementCreate(ImprovementBase):
    submitter_email: str | None = Field(
        default=None,
        max_length=254,
        schema_extra=_documents(
            anyOf=[
                {"type": "string", "maxLength": 254, "pattern": NO_NUL_PATTERN},
                {"type": "null"},
            ]
        ),
        description=(
            "The colleague it is submitted for. Leave it out (or blank) to submit as yourself; "
            "naming someone else needs the operations role, and the history records who did it."
        ),
    )
    customer_emails: list[str] = Field(
        default_factory=list,
        description="Customers it touches.",
        schema_extra=_documents(items={"type": "string", "pattern": NO_NUL_PATTERN}),
    )
    partner_emails: list[str] = Field(
        default_factory=list,
        description="Partners it touches.",
        schema_extra=_documents(items={"type": "string", "pattern": NO_NUL_PATTERN}),
    )
    activities: list[ActivityIn] = Field(
        default_factory=list,
        max_length=MAX_LINES,
        description=(
            'What changes, e.g. {"activity": "letters", "quantity": 2000, "per": "month"}. When '
            "given, the lines are worked out with the factor set in force into annual_saving, "
            "kwh, kg_co2e, kg_waste and sheets_paper, and any of those typed is ignored."
        ),
    )

    @field_validator("submitter_email")
    @classmethod
    def _blank_is_yourself(cls, value: str | None) -> str | None:
        # Spaces name nobody: like leaving it out, and like the web form, they mean yourself.
        return value if value is None or value.strip() else None


# One open improvement per detected opportunity, held by the database: two reviews at once
# cannot both raise it. Closed ones (completed, rejected, cancelled) may share the key.
_OPEN_OPPORTUNITY = sa.text(
    "opportunity IS NOT NULL AND status NOT IN "
    f"({', '.join(repr(s.value) for s in CLOSED_STATUSES)})"
)


class Improvement(ImprovementBase, table=True):
    __table_args__ = (
        sa.Index(
            "uq_improvement_open_opportunity",
            "opportunity",
            unique=True,
            sqlite_where=_OPEN_OPPORTUNITY,
            postgresql_where=_OPEN_OPPORTUNITY,
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    submitter_id: int | None = Field(default=None, foreign_key="colleague.id", index=True)
    status: Status = Field(default=Status.identified, sa_type=sa.String(24), index=True)
    measured_saving: float | None = None
    measured_kwh: float | None = None
    measured_kg_co2e: float | None = None
    measured_kg_waste: float | None = None
    measured_sheets_paper: float | None = None
    # The factor set its estimate was worked out with (models/factors.py), when it was.
    factor_set_id: int | None = Field(default=None, foreign_key="factor_set.id")
    process_id: int | None = Field(default=None, foreign_key="service_process.id", index=True)
    # What detection found, e.g. "paper-statements:process:2": one open improvement per opportunity.
    opportunity: str | None = Field(default=None, max_length=120)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)

    @property
    def reference(self) -> str:
        return f"IMP-{self.id}"


class ImprovementPublic(ImprovementBase):
    id: int
    reference: str
    status: Status
    submitter_id: int | None
    created_at: datetime
    updated_at: datetime


class ImprovementCustomer(SQLModel, table=True):
    improvement_id: int = Field(foreign_key="improvement.id", primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", primary_key=True)


class ImprovementPartner(SQLModel, table=True):
    improvement_id: int = Field(foreign_key="improvement.id", primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", primary_key=True)


class Transition(SQLModel, table=True):
    """One recorded move of an improvement: never updated, never deleted."""

    id: int | None = Field(default=None, primary_key=True)
    improvement_id: int = Field(foreign_key="improvement.id", index=True)
    from_status: Status | None = Field(default=None, sa_type=sa.String(24))
    to_status: Status = Field(sa_type=sa.String(24))
    actor: str = Field(max_length=254, description="Email of who made it, or the flow's name.")
    channel: Channel = Field(sa_type=sa.String(16))
    reason: str = Field(default="", max_length=2000)
    at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
