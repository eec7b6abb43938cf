"""time_posting: the time-to-invoice ledger, one row per PSA time entry or expense.

Decimals are NUMERIC on PostgreSQL and integers of 10**-scale units on SQLite
(``store.models.ExactDecimal``), so hours and money stay exact on both.

Revision ID: 0003
Revises: 0002
Create Date: 2026-05-12
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)
Hours = sa.Numeric(18, 6).with_variant(sa.BigInteger(), "sqlite")
Amount = sa.Numeric(18, 2).with_variant(sa.BigInteger(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "time_posting",
        sa.Column("entry_key", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("entry_id", sa.String(), nullable=False),
        sa.Column("psa_project_id", sa.String(), nullable=False),
        sa.Column("erp_project", sa.String(), nullable=True),
        sa.Column("worker_id", sa.String(), nullable=True),
        sa.Column("work_date", sa.Date(), nullable=True),
        sa.Column("period", sa.String(), nullable=True),
        sa.Column("entry_version", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("posting_key", sa.String(), nullable=True),
        sa.Column("erp_id", sa.String(), nullable=True),
        sa.Column("hours", Hours, nullable=False),
        sa.Column("cost_amount", Amount, nullable=True),
        sa.Column("bill_amount", Amount, nullable=True),
        sa.Column("currency", sa.String(), nullable=True),
        sa.Column("cost_center", sa.String(), nullable=True),
        sa.Column("billable", sa.Boolean(), nullable=False),
        sa.Column("cause", sa.String(), nullable=True),
        sa.Column("item_id", sa.String(), nullable=True),
        sa.Column("invoice_ref", sa.String(), nullable=True),
        sa.Column("fingerprint", sa.String(), nullable=True),
        sa.Column("workflow_id", sa.String(), nullable=True),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("entry_key", name="pk_time_posting"),
    )
    op.create_index("ix_time_posting_project_period", "time_posting", ["psa_project_id", "period"])
    op.create_index("ix_time_posting_invoice_ref", "time_posting", ["invoice_ref"])
    op.create_index("ix_time_posting_fingerprint", "time_posting", ["fingerprint"])


def downgrade() -> None:
    op.drop_index("ix_time_posting_fingerprint", table_name="time_posting")
    op.drop_index("ix_time_posting_invoice_ref", table_name="time_posting")
    op.drop_index("ix_time_posting_project_period", table_name="time_posting")
    op.drop_table("time_posting")
