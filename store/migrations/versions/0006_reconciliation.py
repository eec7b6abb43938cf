"""reconciliation: ``reconciliation_run`` (one row per run: scope, counts by drift kind, what
was repaired and escalated, vendor calls, duration) and ``drift`` (one row per difference
between the systems, keyed by its fingerprint, with its state across runs).

Revision ID: 0006
Revises: 0005
Create Date: 2027-02-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reconciliation_run",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("domain", sa.String(), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("project", sa.String(), nullable=True),
        sa.Column("since", sa.Date(), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("requested_by", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.Column("by_kind", sa.JSON(), nullable=False),
        *(
            sa.Column(name, sa.Integer(), nullable=False)
            for name in (
                "found",
                "new",
                "repaired",
                "escalated",
                "reported",
                "kept",
                "gone",
                "unrepaired",
                "records",
                "projects",
                "vendor_calls",
            )
        ),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_reconciliation_run"),
    )
    op.create_index(
        "ix_reconciliation_run_domain_started", "reconciliation_run", ["domain", "started_at"]
    )
    op.create_table(
        "drift",
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.Column("domain", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("project", sa.String(), nullable=True),
        sa.Column("period", sa.String(), nullable=True),
        sa.Column("keys", sa.JSON(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("disposition", sa.String(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("repairs", sa.Integer(), nullable=False),
        sa.Column("escalations", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(), nullable=True),
        sa.Column("resolved_by", sa.String(), nullable=True),
        sa.Column("first_seen", Timestamp, nullable=False),
        sa.Column("last_seen", Timestamp, nullable=False),
        sa.Column("first_run", sa.String(), nullable=False),
        sa.Column("last_run", sa.String(), nullable=False),
        sa.Column("closed_run", sa.String(), nullable=True),
        sa.Column("closed_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("fingerprint", name="pk_drift"),
    )
    op.create_index("ix_drift_domain_state", "drift", ["domain", "state"])
    op.create_index("ix_drift_scope", "drift", ["tenant", "project"])
    op.create_index("ix_drift_last_run", "drift", ["last_run"])
    op.create_index("ix_drift_closed_run", "drift", ["closed_run"])


def downgrade() -> None:
    op.drop_table("drift")
    op.drop_table("reconciliation_run")
