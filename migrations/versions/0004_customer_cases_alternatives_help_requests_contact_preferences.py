"""Customer cases, their updates, notes, alternatives; help requests; contact preferences."""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.db

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer_case",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("details", sa.String(length=10000), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("promised_on", sa.Date(), nullable=True),
        sa.Column("next_update_due", models.db.UtcDateTime(), nullable=True),
        sa.Column("delay_reason", sa.String(length=2000), nullable=False),
        sa.Column("overdue_improvement_id", sa.Integer(), nullable=True),
        sa.Column("cannot_meet_reason", sa.String(length=2000), nullable=False),
        sa.Column("choice_token_hash", sa.String(length=64), nullable=True),
        sa.Column("choice_expires_at", models.db.UtcDateTime(), nullable=True),
        sa.Column("created_at", models.db.UtcDateTime(), nullable=False),
        sa.Column("updated_at", models.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
        ),
        sa.ForeignKeyConstraint(
            ["overdue_improvement_id"],
            ["improvement.id"],
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["colleague.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("customer_case", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_customer_case_choice_token_hash"), ["choice_token_hash"], unique=True
        )
        batch_op.create_index(
            batch_op.f("ix_customer_case_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            "ix_customer_case_update_due",
            ["overdue_improvement_id", "next_update_due"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_customer_case_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_customer_case_status"), ["status"], unique=False)

    op.create_table(
        "alternative",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=True),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("benefit", sa.String(length=1000), nullable=False),
        sa.Column("days_to_deliver", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("improvement_id", sa.Integer(), nullable=True),
        sa.Column("created_at", models.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["customer_case.id"],
        ),
        sa.ForeignKeyConstraint(
            ["improvement_id"],
            ["improvement.id"],
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partner.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "position"),
    )
    with op.batch_alter_table("alternative", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alternative_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_alternative_improvement_id"), ["improvement_id"], unique=False
        )

    op.create_table(
        "casenote",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("what", sa.String(length=32), nullable=False),
        sa.Column("note", sa.String(length=2000), nullable=False),
        sa.Column("actor", sa.String(length=254), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("at", models.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["customer_case.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("casenote", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_casenote_case_id"), ["case_id"], unique=False)

    op.create_table(
        "caseupdate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.String(length=10000), nullable=False),
        sa.Column("sent_by", sa.String(length=254), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("email_id", sa.Integer(), nullable=True),
        sa.Column("at", models.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["customer_case.id"],
        ),
        sa.ForeignKeyConstraint(
            ["email_id"],
            ["outboxemail.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("caseupdate", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_caseupdate_case_id"), ["case_id"], unique=False)

    op.create_table(
        "helprequest",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("action_id", sa.Integer(), nullable=True),
        sa.Column("asked_by_id", sa.Integer(), nullable=False),
        sa.Column("helper_id", sa.Integer(), nullable=False),
        sa.Column("message", sa.String(length=2000), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("answer", sa.String(length=2000), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("expires_at", models.db.UtcDateTime(), nullable=True),
        sa.Column("answered_at", models.db.UtcDateTime(), nullable=True),
        sa.Column("created_at", models.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["action_id"],
            ["actionitem.id"],
        ),
        sa.ForeignKeyConstraint(
            ["asked_by_id"],
            ["colleague.id"],
        ),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["customer_case.id"],
        ),
        sa.ForeignKeyConstraint(
            ["helper_id"],
            ["colleague.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("helprequest", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_helprequest_action_id"), ["action_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_helprequest_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_helprequest_helper_id"), ["helper_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_helprequest_token_hash"), ["token_hash"], unique=True)

    with op.batch_alter_table("colleague", schema=None) as batch_op:
        batch_op.add_column(sa.Column("manager_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_colleague_manager_id", "colleague", ["manager_id"], ["id"])

    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("contact_from", sa.Time(), nullable=True))
        batch_op.add_column(sa.Column("contact_until", sa.Time(), nullable=True))
        batch_op.add_column(sa.Column("weekly_limit", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.drop_column("weekly_limit")
        batch_op.drop_column("contact_until")
        batch_op.drop_column("contact_from")

    with op.batch_alter_table("colleague", schema=None) as batch_op:
        # WARNING: constraint name is None; this directive will fail as
        # rendered.  Add a name, or use a naming convention; see
        # https://alembic.sqlalchemy.org/en/latest/naming.html
        batch_op.drop_constraint("fk_colleague_manager_id", type_="foreignkey")
        batch_op.drop_column("manager_id")

    with op.batch_alter_table("helprequest", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_helprequest_token_hash"))
        batch_op.drop_index(batch_op.f("ix_helprequest_helper_id"))
        batch_op.drop_index(batch_op.f("ix_helprequest_case_id"))
        batch_op.drop_index(batch_op.f("ix_helprequest_action_id"))

    op.drop_table("helprequest")
    with op.batch_alter_table("caseupdate", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_caseupdate_case_id"))

    op.drop_table("caseupdate")
    with op.batch_alter_table("casenote", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_casenote_case_id"))

    op.drop_table("casenote")
    with op.batch_alter_table("alternative", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alternative_improvement_id"))
        batch_op.drop_index(batch_op.f("ix_alternative_case_id"))

    op.drop_table("alternative")
    with op.batch_alter_table("customer_case", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_case_status"))
        batch_op.drop_index(batch_op.f("ix_customer_case_owner_id"))
        batch_op.drop_index("ix_customer_case_update_due")
        batch_op.drop_index(batch_op.f("ix_customer_case_customer_id"))
        batch_op.drop_index(batch_op.f("ix_customer_case_choice_token_hash"))

    op.drop_table("customer_case")
