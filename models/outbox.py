"""The email outbox: every email is a row written with the change that caused it."""

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.db import UtcDateTime, utcnow


class OutboxStatus(StrEnum):
    queued = "queued"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    skipped = "skipped"  # not sent on purpose (the customer withdrew consent): never retried


class OutboxEmail(SQLModel, table=True):
    # The sender's question, "what is due now?", in one range.
    __table_args__ = (sa.Index("ix_outbox_email_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, unique=True, index=True)
    recipient: str = Field(max_length=254)
    template: str = Field(max_length=64)
    context: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    improvement_id: int | None = Field(default=None, foreign_key="improvement.id", index=True)
    status: OutboxStatus = Field(default=OutboxStatus.queued, sa_type=sa.String(16), index=True)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, index=True)
    claimed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_error: str = Field(default="", max_length=2000)
    message_id: str = Field(max_length=200)
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
