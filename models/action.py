"""Action plan items: a step with an owner and a due date, done by a person or by a task."""

from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.db import UtcDateTime, utcnow


class ActionStatus(StrEnum):
    open = "open"
    done = "done"
    cancelled = "cancelled"


class ActionItem(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("improvement_id", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    improvement_id: int = Field(foreign_key="improvement.id", index=True)
    position: int = Field(ge=1, description="Order in the plan; with the improvement, unique.")
    title: str = Field(max_length=200)
    owner_id: int | None = Field(default=None, foreign_key="colleague.id", index=True)
    due_on: date
    status: ActionStatus = Field(default=ActionStatus.open, sa_type=sa.String(16), index=True)
    automatic_step: str | None = Field(
        default=None, max_length=64, description="Name of the task that carries the step out."
    )
    token_hash: str | None = Field(default=None, max_length=64, unique=True, index=True)
    token_expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    measured_saving: float | None = Field(default=None, ge=0)
    measured_kwh: float | None = Field(default=None, ge=0)
    measured_kg_co2e: float | None = Field(default=None, ge=0)
    measured_kg_waste: float | None = Field(default=None, ge=0)
    result_note: str = Field(default="", max_length=2000)
    completed_by: str | None = Field(default=None, max_length=254)
    completed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
