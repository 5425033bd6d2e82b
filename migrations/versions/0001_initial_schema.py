"""The schema as it stood when Alembic took over from create_all: every table and index."""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.db

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "colleague",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("team", sa.String(length=80), nullable=False),
        sa.Column("role", sa.String(length=80), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("deputy_id", sa.Integer(), nullable=True),
        sa.Column("absent_from", sa.Date(), nullable=True),
        sa.Column("absent_to", sa.Date(), nullable=True),
        sa.Column("created_at", models.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["deputy_id"], ["colleague.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_colleague_email"), "colleague", ["email"], unique=True)

    op.create_table(
        "customer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("contact_format", sa.String(length=8), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("created_at", models.db.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_customer_email"), "customer", ["email"], unique=True)

    op.create_table(
        "partner",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("contact_name", sa.String(length=120), nullable=False),
        sa.Column("service", sa.String(length=200), nullable=False),
        sa.Column("footprint_note", sa.String(length=500), nullable=False),
        sa.Column("created_at", models.db.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_partner_email"), "partner", ["email"], unique=True)

    op.create_table(
        "authority",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("colleague_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("spending_limit", sa.Float(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["colleague_id"], ["colleague.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_authority_colleague_id"), "authority", ["colleague_id"], unique=False)

    op.create_table(
        "customerconsent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("changed_at", models.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id", "purpose"),
    )
    op.create_index(
        op.f("ix_customerconsent_customer_id"), "customerconsent", ["customer_id"], unique=False
    )

    op.create_table(
        "improvement",
        sa.Column("estimated_cost", sa.Float(), nullable=False),
        sa.Column("annual_saving", sa.Float(), nullable=False),
        sa.Column("kwh", sa.Float(), nullable=False),
        sa.Column("kg_co2e", sa.Float(), nullable=False),
        sa.Column("kg_waste", sa.Float(), nullable=False),
        sa.Column("sheets_paper", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=10000), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submitter_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("measured_saving", sa.Float(), nullable=True),
        sa.Column("measured_kwh", sa.Float(), nullable=True),
        sa.Column("measured_kg_co2e", sa.Float(), nullable=True),
        sa.Column("measured_kg_waste", sa.Float(), nullable=True),
        sa.Column("created_at", models.db.UtcDateTime(), nullable=False),
        sa.Column("updated_at", models.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["submitter_id"], ["colleague.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_improvement_status"), "improvement", ["status"], unique=False)
    op.create_index(
        op.f("ix_improvement_submitter_id"), "improvement", ["submitter_id"], unique=False
    )

    op.create_table(
        "actionitem",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("improvement_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("automatic_step", sa.String(length=64), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("token_expires_at", models.db.UtcDateTime(), nullable=True),
        sa.Column("measured_saving", sa.Float(), nullable=True),
        sa.Column("measured_kwh", sa.Float(), nullable=True),
        sa.Column("measured_kg_co2e", sa.Float(), nullable=True),
        sa.Column("measured_kg_waste", sa.Float(), nullable=True),
        sa.Column("result_note", sa.String(length=2000), nullable=False),
        sa.Column("completed_by", sa.String(length=254), nullable=True),
        sa.Column("completed_at", models.db.UtcDateTime(), nullable=True),
        sa.Column("created_at", models.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["improvement_id"], ["improvement.id"]),
        sa.ForeignKeyConstraint(["owner_id"], ["colleague.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("improvement_id", "position"),
    )
    op.create_index(
        op.f("ix_actionitem_improvement_id"), "actionitem", ["improvement_id"], unique=False
    )
    op.create_index(op.f("ix_actionitem_owner_id"), "actionitem", ["owner_id"], unique=False)
    op.create_index(op.f("ix_actionitem_status"), "actionitem", ["status"], unique=False)
    op.create_index(op.f("ix_actionitem_token_hash"), "actionitem", ["token_hash"], unique=True)

    op.create_table(
        "approvalrequest",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("improvement_id", sa.Integer(), nullable=False),
        sa.Column("approver_id", sa.Integer(), nullable=False),
        sa.Column("on_behalf_of_id", sa.Integer(), nullable=True),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", models.db.UtcDateTime(), nullable=False),
        sa.Column("decided_at", models.db.UtcDateTime(), nullable=True),
        sa.Column("comment", sa.String(length=2000), nullable=False),
        sa.Column("reminded_at", models.db.UtcDateTime(), nullable=True),
        sa.Column("escalated_at", models.db.UtcDateTime(), nullable=True),
        sa.Column("created_at", models.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["approver_id"], ["colleague.id"]),
        sa.ForeignKeyConstraint(["improvement_id"], ["improvement.id"]),
        sa.ForeignKeyConstraint(["on_behalf_of_id"], ["colleague.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_approvalrequest_approver_id"), "approvalrequest", ["approver_id"], unique=False
    )
    op.create_index(
        op.f("ix_approvalrequest_improvement_id"),
        "approvalrequest",
        ["improvement_id"],
        unique=False,
    )
    op.create_index(op.f("ix_approvalrequest_status"), "approvalrequest", ["status"], unique=False)
    op.create_index(
        op.f("ix_approvalrequest_token_hash"), "approvalrequest", ["token_hash"], unique=True
    )

    op.create_table(
        "improvementcustomer",
        sa.Column("improvement_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"]),
        sa.ForeignKeyConstraint(["improvement_id"], ["improvement.id"]),
        sa.PrimaryKeyConstraint("improvement_id", "customer_id"),
    )
    op.create_table(
        "improvementpartner",
        sa.Column("improvement_id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["improvement_id"], ["improvement.id"]),
        sa.ForeignKeyConstraint(["partner_id"], ["partner.id"]),
        sa.PrimaryKeyConstraint("improvement_id", "partner_id"),
    )
    op.create_table(
        "outboxemail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("recipient", sa.String(length=254), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("improvement_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", models.db.UtcDateTime(), nullable=False),
        sa.Column("claimed_at", models.db.UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=2000), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("sent_at", models.db.UtcDateTime(), nullable=True),
        sa.Column("created_at", models.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["improvement_id"], ["improvement.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_outboxemail_idempotency_key"), "outboxemail", ["idempotency_key"], unique=True
    )
    op.create_index(
        op.f("ix_outboxemail_improvement_id"), "outboxemail", ["improvement_id"], unique=False
    )
    op.create_index(
        op.f("ix_outboxemail_next_attempt_at"), "outboxemail", ["next_attempt_at"], unique=False
    )
    op.create_index(op.f("ix_outboxemail_status"), "outboxemail", ["status"], unique=False)

    op.create_table(
        "transition",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("improvement_id", sa.Integer(), nullable=False),
        sa.Column("from_status", sa.String(length=24), nullable=True),
        sa.Column("to_status", sa.String(length=24), nullable=False),
        sa.Column("actor", sa.String(length=254), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=2000), nullable=False),
        sa.Column("at", models.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["improvement_id"], ["improvement.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_transition_improvement_id"), "transition", ["improvement_id"], unique=False
    )


def downgrade() -> None:
    # Dropping a table drops its indexes; dependants go before the tables they refer to.
    op.drop_table("transition")
    op.drop_table("outboxemail")
    op.drop_table("improvementpartner")
    op.drop_table("improvementcustomer")
    op.drop_table("approvalrequest")
    op.drop_table("actionitem")
    op.drop_table("improvement")
    op.drop_table("customerconsent")
    op.drop_table("authority")
    op.drop_table("partner")
    op.drop_table("customer")
    op.drop_table("colleague")
