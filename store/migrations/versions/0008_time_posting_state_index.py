"""time_posting (state, kind) index: the unposted-labor and SLA indicators read the ledger's
rows in a state (``posting``, ``exception``) of one kind at every scrape; without it they scan
the whole ledger.

Revision ID: 0008
Revises: 0007
Create Date: 2027-03-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_time_posting_state_kind", "time_posting", ["state", "kind"])


def downgrade() -> None:
    op.drop_index("ix_time_posting_state_kind", table_name="time_posting")
