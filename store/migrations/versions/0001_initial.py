"""Initial store schema: xref, inbox, exception_item, lineage, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-05-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "xref",
        sa.Column("id", BigIntId, autoincrement=True, nullable=False),
        sa.Column("enterprise_id", sa.String(), nullable=False),
        sa.Column("entity_type", sa.String(), nullable=False),
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("object_type", sa.String(), nullable=False),
        sa.Column("external_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("remote_version", sa.String(), nullable=True),
        sa.Column("last_synced_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_xref"),
        sa.UniqueConstraint(
            "system", "tenant", "object_type", "external_id", name="uq_xref_external_key"
        ),
        sa.UniqueConstraint(
            "enterprise_id", "system", "object_type", name="uq_xref_enterprise_key"
        ),
    )
    op.create_table(
        "inbox",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.Column("payload_hash", sa.String(), nullable=False),
        sa.Column("workflow_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("source", "event_id", name="pk_inbox"),
    )
    op.create_table(
        "exception_item",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("workflow_id", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("process", sa.String(), nullable=False),
        sa.Column("cause_code", sa.String(), nullable=False),
        sa.Column("field", sa.String(), nullable=True),
        sa.Column("detail", sa.String(), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("resolved_at", Timestamp, nullable=True),
        sa.Column("resolution", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_exception_item"),
    )
    op.create_index("ix_exception_item_status", "exception_item", ["status"])
    op.create_index("ix_exception_item_workflow_id", "exception_item", ["workflow_id"])
    op.create_table(
        "lineage",
        sa.Column("id", BigIntId, autoincrement=True, nullable=False),
        sa.Column("entity_type", sa.String(), nullable=False),
        sa.Column("entity_key", sa.String(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("source_system", sa.String(), nullable=False),
        sa.Column("source_version", sa.String(), nullable=True),
        sa.Column("workflow_id", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("activity", sa.String(), nullable=False),
        sa.Column("recorded_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lineage"),
    )
    op.create_index("ix_lineage_entity", "lineage", ["entity_type", "entity_key"])
    op.create_table(
        "outbox",
        sa.Column("id", BigIntId, autoincrement=True, nullable=False),
        sa.Column("event_type", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("published_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("event_type", "key", name="uq_outbox_event_key"),
    )
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_published_at", table_name="outbox")
    op.drop_table("outbox")
    op.drop_index("ix_lineage_entity", table_name="lineage")
    op.drop_table("lineage")
    op.drop_index("ix_exception_item_workflow_id", table_name="exception_item")
    op.drop_index("ix_exception_item_status", table_name="exception_item")
    op.drop_table("exception_item")
    op.drop_table("inbox")
    op.drop_table("xref")
