"""Initiatives customers and partners are invited to join, and their answers.

An invitation carries a single-use link (only its hash is stored) that opens a page: GET shows
it, a POST from that page accepts or declines, as with every link Improve emails.
"""

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.db import UtcDateTime, utcnow


class Initiative(SQLModel, table=True):
    """Something people take part in: paperless statements, returnable packaging, ..."""

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
    description: str = Field(default="", max_length=4000)
    improvement_id: int | None = Field(default=None, foreign_key="improvement.id", index=True)
    owner_id: int | None = Field(default=None, foreign_key="colleague.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class InvitationStatus(StrEnum):
    invited = "invited"
    accepted = "accepted"
    declined = "declined"


class Invitation(SQLModel, table=True):
    """One customer or one partner asked to take part in one initiative."""

    __table_args__ = (
        sa.UniqueConstraint("initiative_id", "customer_id", name="uq_invitation_customer"),
        sa.UniqueConstraint("initiative_id", "partner_id", name="uq_invitation_partner"),
    )

    id: int | None = Field(default=None, primary_key=True)
    initiative_id: int = Field(foreign_key="initiative.id", index=True)
    customer_id: int | None = Field(default=None, foreign_key="customer.id", index=True)
    partner_id: int | None = Field(default=None, foreign_key="partner.id", index=True)
    status: InvitationStatus = Field(default=InvitationStatus.invited, sa_type=sa.String(16))
    token_hash: str | None = Field(default=None, max_length=64, unique=True)
    expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    answered_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    note: str = Field(default="", max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
