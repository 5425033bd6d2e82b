"""Colleagues and their authority, customers with their contact preferences, service partners,
and the community stakeholders who read the impact report."""

from datetime import date, datetime, time
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.access import Access
from models.db import UtcDateTime, utcnow
from models.improvement import Category


class Colleague(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120)
    email: str = Field(max_length=254, unique=True, index=True)
    team: str = Field(max_length=80)
    role: str = Field(max_length=80, description="Job title, as shown to people.")
    access: Access = Field(
        default=Access.colleague, sa_type=sa.String(16), description="What they may do in Improve."
    )
    active: bool = True
    deputy_id: int | None = Field(default=None, foreign_key="colleague.id")
    manager_id: int | None = Field(
        default=None, foreign_key="colleague.id", description="Who hears when their work sits."
    )
    absent_from: date | None = None
    absent_to: date | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)

    def is_absent_on(self, day: date) -> bool:
        if self.absent_from is None:
            return False
        return self.absent_from <= day and (self.absent_to is None or day <= self.absent_to)


class Authority(SQLModel, table=True):
    """What a colleague may approve: one category, up to a spending limit, at a level."""

    id: int | None = Field(default=None, primary_key=True)
    colleague_id: int = Field(foreign_key="colleague.id", index=True)
    category: Category = Field(sa_type=sa.String(32))
    spending_limit: float = Field(ge=0)
    level: int = Field(default=1, ge=1, le=2)


class ContactFormat(StrEnum):
    html = "html"
    text = "text"


class Purpose(StrEnum):
    """Why we may write to a customer; each is consented to (or refused) on its own."""

    improvement_updates = "improvement_updates"
    policy_news = "policy_news"
    invitations = "invitations"


class Customer(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120)
    email: str = Field(max_length=254, unique=True, index=True)
    contact_format: ContactFormat = Field(default=ContactFormat.html, sa_type=sa.String(8))
    language: str = Field(default="en", max_length=8, description="en or cy; others get en.")
    # Non-urgent email is held until the window opens, in the organisation's time zone.
    contact_from: time | None = None
    contact_until: time | None = None
    weekly_limit: int | None = Field(
        default=None, ge=0, le=100, description="Most non-essential emails in any seven days."
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class CustomerConsent(SQLModel, table=True):
    """A customer's current yes or no for one purpose, and when and how they said it."""

    __table_args__ = (sa.UniqueConstraint("customer_id", "purpose"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    purpose: Purpose = Field(sa_type=sa.String(32))
    granted: bool
    channel: str = Field(default="web", max_length=16)
    changed_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class Partner(SQLModel, table=True):
    """A service partner whose work touches our environmental profile."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120)
    email: str = Field(max_length=254, unique=True, index=True)
    contact_name: str = Field(default="", max_length=120)
    service: str = Field(default="", max_length=200)
    footprint_note: str = Field(default="", max_length=500)
    hears_policies: bool = Field(default=False, description="Agreed to hear of policy changes.")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class Stakeholder(SQLModel, table=True):
    """Someone in the community who gets the impact report by email: a council, a charity, ..."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120)
    email: str = Field(max_length=254, unique=True, index=True)
    organisation: str = Field(default="", max_length=200)
    subscribed: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
