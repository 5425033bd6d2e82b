"""Factor sets, activity lines, service processes and records, evidence."""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.db

# One open improvement per detected opportunity (models/improvement.py).
OPEN_OPPORTUNITY = sa.text(
    "opportunity IS NOT NULL AND status NOT IN ('completed', 'rejected', 'cancelled')"
)

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "factor_set",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("document", sa.String(length=300), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("in_force", sa.Boolean(), nullable=False),
        sa.Column("loaded_at", models.db.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "service_process",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("created_at", models.db.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "factor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("factor_set_id", sa.Integer(), nullable=False),
        sa.Column("activity", sa.String(length=40), nullable=False),
        sa.Column("unit", sa.String(length=40), nullable=False),
        sa.Column("kg_co2e", sa.Float(), nullable=False),
        sa.Column("source_table", sa.String(length=300), nullable=False),
        sa.Column("source_row", sa.String(length=80), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["factor_set_id"],
            ["factor_set.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("factor_set_id", "activity", name="uq_factor_activity"),
    )
    with op.batch_alter_table("factor", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_factor_factor_set_id"), ["factor_set_id"], unique=False
        )

    op.create_table(
        "service_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("process_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("occurred_at", models.db.UtcDateTime(), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("partner_id", sa.Integer(), nullable=True),
        sa.Column("site", sa.String(length=120), nullable=False),
        sa.Column("route", sa.String(length=120), nullable=False),
        sa.Column("detail", sa.String(length=200), nullable=False),
        sa.Column("imported_at", models.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partner.id"],
        ),
        sa.ForeignKeyConstraint(
            ["process_id"],
            ["service_process.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("service_record", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_service_record_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index("ix_service_record_kind_time", ["kind", "occurred_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_service_record_partner_id"), ["partner_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_service_record_process_id"), ["process_id"], unique=False
        )

    op.create_table(
        "activity_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("improvement_id", sa.Integer(), nullable=False),
        sa.Column("basis", sa.String(length=16), nullable=False),
        sa.Column("activity", sa.String(length=40), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("per", sa.String(length=8), nullable=False),
        sa.Column("factor_set_id", sa.Integer(), nullable=False),
        sa.Column("factor_id", sa.Integer(), nullable=True),
        sa.Column("kg_co2e", sa.Float(), nullable=False),
        sa.Column("kwh", sa.Float(), nullable=False),
        sa.Column("kg_waste", sa.Float(), nullable=False),
        sa.Column("sheets_paper", sa.Float(), nullable=False),
        sa.Column("saving", sa.Float(), nullable=False),
        sa.Column("created_at", models.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["factor_id"],
            ["factor.id"],
        ),
        sa.ForeignKeyConstraint(
            ["factor_set_id"],
            ["factor_set.id"],
        ),
        sa.ForeignKeyConstraint(
            ["improvement_id"],
            ["improvement.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("activity_line", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_activity_line_improvement_id"), ["improvement_id"], unique=False
        )

    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("improvement_id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("summary", sa.String(length=2000), nullable=False),
        sa.Column("records_query", sa.String(length=500), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["improvement_id"],
            ["improvement.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("evidence", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_evidence_improvement_id"), ["improvement_id"], unique=False
        )

    with op.batch_alter_table("improvement", schema=None) as batch_op:
        batch_op.add_column(sa.Column("measured_sheets_paper", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("factor_set_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("process_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("opportunity", sa.String(length=120), nullable=True))
        batch_op.create_index(
            "uq_improvement_open_opportunity",
            ["opportunity"],
            unique=True,
            sqlite_where=OPEN_OPPORTUNITY,
            postgresql_where=OPEN_OPPORTUNITY,
        )
        batch_op.create_index(batch_op.f("ix_improvement_process_id"), ["process_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_improvement_process_id", "service_process", ["process_id"], ["id"]
        )
        batch_op.create_foreign_key(
            "fk_improvement_factor_set_id", "factor_set", ["factor_set_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("improvement", schema=None) as batch_op:
        batch_op.drop_constraint("fk_improvement_process_id", type_="foreignkey")
        batch_op.drop_constraint("fk_improvement_factor_set_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_improvement_process_id"))
        batch_op.drop_index("uq_improvement_open_opportunity")
        batch_op.drop_column("opportunity")
        batch_op.drop_column("process_id")
        batch_op.drop_column("factor_set_id")
        batch_op.drop_column("measured_sheets_paper")

    with op.batch_alter_table("evidence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evidence_improvement_id"))

    op.drop_table("evidence")
    with op.batch_alter_table("activity_line", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_activity_line_improvement_id"))

    op.drop_table("activity_line")
    with op.batch_alter_table("service_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_record_process_id"))
        batch_op.drop_index(batch_op.f("ix_service_record_partner_id"))
        batch_op.drop_index("ix_service_record_kind_time")
        batch_op.drop_index(batch_op.f("ix_service_record_customer_id"))

    op.drop_table("service_record")
    with op.batch_alter_table("factor", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_factor_factor_set_id"))

    op.drop_table("factor")
    op.drop_table("service_process")
    op.drop_table("factor_set")
