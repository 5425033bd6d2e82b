"""Who may do what: access roles, sign-in links, signed-in sessions, API tokens, retired links.

Every token here is random and stored only as its SHA-256 hash, so a copy of the database lets
nobody sign in, call the API or open a link.
"""

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from models.db import UtcDateTime, utcnow


class Access(StrEnum):
    """What a colleague may do beyond submitting and reading improvements."""

    colleague = "colleague"  # submit in their own name, read improvements and the dashboard
    operations = "operations"  # also submit on behalf of others and see customer contact details
    admin = "admin"  # everything operations may do

    def includes(self, other: "Access") -> bool:
        order = [Access.colleague, Access.operations, Access.admin]
        return order.index(self) >= order.index(other)


class SignInLink(SQLModel, table=True):
    """An emailed sign-in link: single use, short-lived."""

    __tablename__ = "sign_in_link"

    id: int | None = Field(default=None, primary_key=True)
    colleague_id: int = Field(foreign_key="colleague.id", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, index=True)
    expires_at: datetime = Field(sa_type=UtcDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class WebSession(SQLModel, table=True):
    """A signed-in colleague's session in the browser; the cookie holds the token."""

    __tablename__ = "web_session"

    id: int | None = Field(default=None, primary_key=True)
    colleague_id: int = Field(foreign_key="colleague.id", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    via: str = Field(max_length=16, description="How they signed in: email or oidc.")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class ApiToken(SQLModel, table=True):
    """A token a script or another system sends as `Authorization: Bearer` to act as a colleague."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    colleague_id: int = Field(foreign_key="colleague.id", index=True)
    name: str = Field(max_length=80)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class RetiredLink(SQLModel, table=True):
    """The hash of an emailed link a newer email replaced, so an old link can say so."""

    __tablename__ = "retired_link"

    token_hash: str = Field(max_length=64, primary_key=True)
    kind: str = Field(max_length=16, description="approval or action")
    target_id: int
    replaced_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
