"""Policies the organisation serves, their published versions, and what they touch.

A policy is published as numbered versions; publishing one notifies, once each, the customers and
partners who agreed to hear about policies. Service processes and improvements link to the
policies they serve, so a process page can set its policies beside its footprint.
"""

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.db import UtcDateTime, utcnow


class Policy(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200, unique=True)
    summary: str = Field(default="", max_length=2000)
    link: str = Field(default="", max_length=500, description="Where the full text is published.")
    owner_id: int | None = Field(default=None, foreign_key="colleague.id")
    # The latest published version, as shown; each publication is a PolicyVersion row.
    version: str = Field(default="", max_length=20, description='e.g. "2.1"; empty: a draft.')
    published_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class PolicyVersion(SQLModel, table=True):
    """One publication of a policy: what changed, and the notices it caused (keyed by its id)."""

    __tablename__ = "policy_version"
    __table_args__ = (sa.UniqueConstraint("policy_id", "version", name="uq_policy_version"),)

    id: int | None = Field(default=None, primary_key=True)
    policy_id: int = Field(foreign_key="policy.id", index=True)
    version: str = Field(max_length=20)
    changes: str = Field(default="", max_length=2000, description="What is new, for the notice.")
    published_by: str = Field(max_length=254)
    published_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class PolicyProcess(SQLModel, table=True):
    __tablename__ = "policy_process"

    policy_id: int = Field(foreign_key="policy.id", primary_key=True)
    process_id: int = Field(foreign_key="service_process.id", primary_key=True)


class ImprovementPolicy(SQLModel, table=True):
    __tablename__ = "improvement_policy"

    improvement_id: int = Field(foreign_key="improvement.id", primary_key=True)
    policy_id: int = Field(foreign_key="policy.id", primary_key=True)
