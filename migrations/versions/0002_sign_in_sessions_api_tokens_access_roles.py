"""Sign-in links, sessions, API tokens, retired links, and each colleague's access role."""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.db

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "retired_link",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("replaced_at", models.db.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("colleague_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", models.db.UtcDateTime(), nullable=False),
        sa.Column("last_used_at", models.db.UtcDateTime(), nullable=True),
        sa.Column("revoked_at", models.db.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["colleague_id"], ["colleague.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index(op.f("ix_api_token_colleague_id"), "api_token", ["colleague_id"], unique=False)

    op.create_table(
        "sign_in_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("colleague_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", models.db.UtcDateTime(), nullable=False),
        sa.Column("expires_at", models.db.UtcDateTime(), nullable=False),
        sa.Column("used_at", models.db.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["colleague_id"], ["colleague.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index(
        op.f("ix_sign_in_link_colleague_id"), "sign_in_link", ["colleague_id"], unique=False
    )
    op.create_index(
        op.f("ix_sign_in_link_created_at"), "sign_in_link", ["created_at"], unique=False
    )

    op.create_table(
        "web_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("colleague_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("created_at", models.db.UtcDateTime(), nullable=False),
        sa.Column("expires_at", models.db.UtcDateTime(), nullable=False),
        sa.Column("ended_at", models.db.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["colleague_id"], ["colleague.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index(
        op.f("ix_web_session_colleague_id"), "web_session", ["colleague_id"], unique=False
    )

    # Colleagues already there get the least access; an admin raises whoever needs more.
    op.add_column(
        "colleague",
        sa.Column("access", sa.String(length=16), nullable=False, server_default="colleague"),
    )


def downgrade() -> None:
    # SQLite drops a column by copying the table, which batch mode does.
    with op.batch_alter_table("colleague") as batch_op:
        batch_op.drop_column("access")
    # Dropping a table drops its indexes.
    op.drop_table("web_session")
    op.drop_table("sign_in_link")
    op.drop_table("api_token")
    op.drop_table("retired_link")
