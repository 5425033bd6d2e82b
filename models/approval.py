"""Approval requests: who is asked to decide, on whose behalf, at which level, and the answer."""

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.db import UtcDateTime, utcnow


class ApprovalStatus(StrEnum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"
    expired = "expired"
    superseded = "superseded"  # escalated to someone else, or another approver decided first


class ApprovalRequest(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    improvement_id: int = Field(foreign_key="improvement.id", index=True)
    approver_id: int = Field(foreign_key="colleague.id", index=True)
    on_behalf_of_id: int | None = Field(default=None, foreign_key="colleague.id")
    level: int = Field(ge=1, le=2)
    reason: str = Field(default="", max_length=1000, description="Why this person was asked.")
    status: ApprovalStatus = Field(
        default=ApprovalStatus.pending, sa_type=sa.String(16), index=True
    )
    token_hash: str = Field(max_length=64, unique=True, index=True)
    expires_at: datetime = Field(sa_type=UtcDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    comment: str = Field(default="", max_length=2000)
    reminded_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    escalated_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
