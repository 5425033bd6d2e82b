"""Idempotency keys: a retried API call or a double-clicked form submits once."""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.db

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("colleague_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=216), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("improvement_id", sa.Integer(), nullable=False),
        sa.Column("created_at", models.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["colleague_id"],
            ["colleague.id"],
        ),
        sa.ForeignKeyConstraint(
            ["improvement_id"],
            ["improvement.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("colleague_id", "key"),
    )
    with op.batch_alter_table("idempotency_key", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_key_colleague_id"), ["colleague_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_idempotency_key_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_idempotency_key_improvement_id"), ["improvement_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("idempotency_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_key_improvement_id"))
        batch_op.drop_index(batch_op.f("ix_idempotency_key_created_at"))
        batch_op.drop_index(batch_op.f("ix_idempotency_key_colleague_id"))

    op.drop_table("idempotency_key")
