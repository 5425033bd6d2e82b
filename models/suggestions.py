"""Suggestions from the public form: held until the sender confirms their address by link.

Nothing happens for a suggestion until its emailed link is followed: then it becomes a `customer`
improvement (and the sender a customer, if they were not one). `client` is a hash of where it came
from, for the rate limit; the address is kept only to write back.
"""

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.db import UtcDateTime, utcnow
from models.improvement import Category


class SuggestionStatus(StrEnum):
    unconfirmed = "unconfirmed"
    confirmed = "confirmed"  # the address was confirmed: an improvement was made of it


class Suggestion(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(default="", max_length=120)
    email: str = Field(max_length=254)
    title: str = Field(max_length=200)
    description: str = Field(default="", max_length=4000)
    category: Category = Field(default=Category.process, sa_type=sa.String(32))
    status: SuggestionStatus = Field(
        default=SuggestionStatus.unconfirmed, sa_type=sa.String(16), index=True
    )
    token_hash: str | None = Field(default=None, max_length=64, unique=True)
    expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    client: str = Field(default="", max_length=64, index=True)
    customer_id: int | None = Field(default=None, foreign_key="customer.id")
    improvement_id: int | None = Field(default=None, foreign_key="improvement.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, index=True)
    confirmed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
