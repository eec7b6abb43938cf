"""inbox replay: the inbox keeps what replaying a verified event needs, and where it stands.

``event_type`` and ``body`` (the verified raw body) let the gateway's relay run the event's
route action again once Temporal is reachable; ``state`` (pending / processed / failed),
``attempts``, ``last_error`` and ``processed_at`` say how far it got. Rows from before this
revision: processed when they have a workflow id, or come from the HCM poller (which writes its
row once it has handled a change); a webhook event (crm, psa) without a workflow id is failed,
since without its body it cannot be replayed (the reason is in ``last_error``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.add_column(sa.Column("event_type", sa.String(), nullable=True))
        batch.add_column(sa.Column("body", sa.Text(), nullable=True))
        batch.add_column(sa.Column("state", sa.String(), nullable=False, server_default="pending"))
        batch.add_column(
            sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("processed_at", Timestamp, nullable=True))
    # The HCM poller writes its row once it has handled a change (a workflow id only when it
    # started one): its rows are processed whatever their workflow id.
    op.execute(
        "UPDATE inbox SET state = 'processed', processed_at = received_at "
        "WHERE workflow_id IS NOT NULL OR source NOT IN ('crm', 'psa')"
    )
    op.execute(
        "UPDATE inbox SET state = 'failed', "
        "last_error = 'received before the inbox kept event bodies: cannot be replayed' "
        "WHERE state = 'pending'"
    )
    op.create_index("ix_inbox_state_received", "inbox", ["state", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_inbox_state_received", table_name="inbox")
    with op.batch_alter_table("inbox") as batch:
        batch.drop_column("processed_at")
        batch.drop_column("last_error")
        batch.drop_column("attempts")
        batch.drop_column("state")
        batch.drop_column("body")
        batch.drop_column("event_type")
