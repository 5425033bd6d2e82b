"""Idempotency keys: what a caller's retried or double-sent submission already made."""

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.db import UtcDateTime, utcnow

# An API caller's Idempotency-Key header is at most this long; a stored key adds a prefix that
# says where it came from ("api:", "form:"), so the column is a little longer.
MAX_KEY_LENGTH = 200


class IdempotencyKey(SQLModel, table=True):
    """One submission a key made: a repeat of the key answers with it instead of a second one.

    Keys are per caller (a colleague's key cannot replay another's submission), and the unique
    constraint is what lets only one of two concurrent requests with the same key through.
    """

    __tablename__ = "idempotency_key"
    __table_args__ = (sa.UniqueConstraint("colleague_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    colleague_id: int = Field(foreign_key="colleague.id", index=True)
    key: str = Field(max_length=MAX_KEY_LENGTH + 16)
    # sha256 of the submission as validated, so a repeat with other content is told apart.
    request_hash: str = Field(max_length=64)
    improvement_id: int = Field(foreign_key="improvement.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, index=True)
