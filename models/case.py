"""Customer cases: a promise to a customer, the updates they were sent, and — when their need
cannot be met — the alternatives offered, the one they chose, and the help colleagues gave."""

from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.db import MAX_AMOUNT, UtcDateTime, utcnow


class CaseStatus(StrEnum):
    open = "open"  # on plan
    delayed = "delayed"  # off plan, with a reason; the next update is due by a set time
    cannot_meet = "cannot_meet"  # the need cannot be met; alternatives wait for approval
    awaiting_customer = "awaiting_customer"  # approved alternatives offered; the customer chooses
    agreed = "agreed"  # the customer accepted one; its action plan is under way
    closed = "closed"


OPEN_STATUSES = frozenset(set(CaseStatus) - {CaseStatus.closed})


class Case(SQLModel, table=True):
    __tablename__ = "customer_case"  # "case" is a word of SQL
    # The overdue check: cases not yet raised (NULL first) whose update is due, in one range.
    __table_args__ = (
        sa.Index("ix_customer_case_update_due", "overdue_improvement_id", "next_update_due"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    subject: str = Field(max_length=200)
    details: str = Field(default="", max_length=10_000)
    owner_id: int = Field(foreign_key="colleague.id", index=True)
    status: CaseStatus = Field(default=CaseStatus.open, sa_type=sa.String(24), index=True)
    promised_on: date | None = Field(default=None, description="What the customer was promised.")
    # None once the case is closed, so a closed case is never due.
    next_update_due: datetime | None = Field(default=None, sa_type=UtcDateTime)
    delay_reason: str = Field(default="", max_length=2000)
    # The customer_update improvement raised when the update fell due; cleared by the next update,
    # so each time an update falls due it is raised once.
    overdue_improvement_id: int | None = Field(default=None, foreign_key="improvement.id")
    cannot_meet_reason: str = Field(default="", max_length=2000)
    choice_token_hash: str | None = Field(default=None, max_length=64, unique=True, index=True)
    choice_expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)

    @property
    def reference(self) -> str:
        return f"CASE-{self.id}"


class CaseUpdate(SQLModel, table=True):
    """An update sent to the customer: what it said, who sent it, and its email."""

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="customer_case.id", index=True)
    subject: str = Field(max_length=200)
    body: str = Field(max_length=10_000)
    sent_by: str = Field(max_length=254, description="Email of who sent it, or the flow's name.")
    channel: str = Field(max_length=16)
    email_id: int | None = Field(default=None, foreign_key="outboxemail.id")
    at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class CaseNote(SQLModel, table=True):
    """One recorded change to a case (opened, delayed, cannot meet, offered, chose, declined,
    help asked, closed): never updated, never deleted."""

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="customer_case.id", index=True)
    what: str = Field(max_length=32)
    note: str = Field(default="", max_length=2000)
    actor: str = Field(max_length=254)
    channel: str = Field(max_length=16)
    at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class AlternativeStatus(StrEnum):
    proposed = "proposed"  # beyond the owner's authority: waits for its approval
    approved = "approved"  # within authority, or approved through routing
    rejected = "rejected"
    offered = "offered"
    accepted = "accepted"
    declined = "declined"


class Alternative(SQLModel, table=True):
    """Something we can do instead, when a customer's need cannot be met."""

    __table_args__ = (sa.UniqueConstraint("case_id", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="customer_case.id", index=True)
    position: int = Field(ge=1)
    description: str = Field(max_length=500)
    partner_id: int | None = Field(
        default=None, foreign_key="partner.id", description="None: the organisation provides it."
    )
    cost: float = Field(ge=0, le=MAX_AMOUNT, description="Cost to the organisation, in pounds.")
    benefit: str = Field(max_length=1000, description="What the customer gains.")
    days_to_deliver: int = Field(ge=0, le=3650)
    status: AlternativeStatus = Field(default=AlternativeStatus.proposed, sa_type=sa.String(16))
    # The alternative_solution improvement that asked for approval (beyond the owner's authority)
    # and, once the customer accepts, carries the action plan.
    improvement_id: int | None = Field(default=None, foreign_key="improvement.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class HelpStatus(StrEnum):
    asked = "asked"
    accepted = "accepted"
    declined = "declined"


class HelpRequest(SQLModel, table=True):
    """An owner asking a colleague for help on a case or an action item."""

    id: int | None = Field(default=None, primary_key=True)
    case_id: int | None = Field(default=None, foreign_key="customer_case.id", index=True)
    action_id: int | None = Field(default=None, foreign_key="actionitem.id", index=True)
    asked_by_id: int = Field(foreign_key="colleague.id")
    helper_id: int = Field(foreign_key="colleague.id", index=True)
    message: str = Field(max_length=2000)
    status: HelpStatus = Field(default=HelpStatus.asked, sa_type=sa.String(16))
    answer: str = Field(default="", max_length=2000)
    token_hash: str | None = Field(default=None, max_length=64, unique=True, index=True)
    expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    answered_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
