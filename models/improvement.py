"""Improvements, who they touch, and the append-only history of their transitions."""

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from pydantic import field_validator
from sqlmodel import Field, SQLModel

from models.db import MAX_AMOUNT, MAX_INT, UtcDateTime, utcnow

NO_NUL = "must not contain a NUL character"


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


class ImprovementBase(Estimates):
    title: str = Field(min_length=3, max_length=200)
    description: str = Field(default="", max_length=10_000)
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
        description=(
            "The colleague it is submitted for. Leave it out to submit as yourself; naming "
            "someone else needs the operations role, and the history records who did it."
        ),
    )
    customer_emails: list[str] = Field(default_factory=list, description="Customers it touches.")
    partner_emails: list[str] = Field(default_factory=list, description="Partners it touches.")


class Improvement(ImprovementBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    submitter_id: int | None = Field(default=None, foreign_key="colleague.id", index=True)
    status: Status = Field(default=Status.identified, sa_type=sa.String(24), index=True)
    measured_saving: float | None = None
    measured_kwh: float | None = None
    measured_kg_co2e: float | None = None
    measured_kg_waste: float | None = None
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
