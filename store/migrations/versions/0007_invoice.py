"""invoice: one row per ERP invoice pssync created (its trigger, the milestone's completion
time, total, voided), the invoice trigger delay of milestones reads it.

Revision ID: 0007
Revises: 0006
Create Date: 2027-03-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)
Amount = sa.Numeric(18, 2).with_variant(sa.BigInteger(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "invoice",
        sa.Column("invoice_ref", sa.String(), nullable=False),
        sa.Column("psa_project_id", sa.String(), nullable=False),
        sa.Column("enterprise_id", sa.String(), nullable=True),
        sa.Column("erp_invoice_id", sa.String(), nullable=True),
        sa.Column("trigger", sa.String(), nullable=False),
        sa.Column("period", sa.String(), nullable=True),
        sa.Column("milestone_code", sa.String(), nullable=True),
        sa.Column("milestone_completed_at", Timestamp, nullable=True),
        sa.Column("total", Amount, nullable=True),
        sa.Column("currency", sa.String(), nullable=True),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("voided_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("invoice_ref", name="pk_invoice"),
    )
    op.create_index("ix_invoice_created_at", "invoice", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_invoice_created_at", table_name="invoice")
    op.drop_table("invoice")
