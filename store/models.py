"""Tables of the integration layer's own state: xref, inbox, exception items, lineage, outbox.

Each table is a sqlmodel class on the store's own metadata (not the global ``SQLModel.metadata``,
which the sandbox twins share), so migrations and model comparisons see only these five tables.
Every timestamp is stored and returned as a timezone-aware UTC ``datetime``.

Must never: import Temporal, connectors, activities or workflows; do I/O; hold business rules.
Changing a table here needs a new migration in ``store/migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    UniqueConstraint,
)
from sqlalchemy.orm import registry
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite only auto-increments an INTEGER PRIMARY KEY, so BIGINT is used on every other backend.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that refuses naive values and always comes back timezone-aware in UTC.

    SQLite has no time zones: values are written there as naive UTC so that they sort correctly.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store only accepts aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class StoreModel(SQLModel, registry=registry(metadata=metadata)):
    """Base of the store's tables; carries the store's own metadata."""


class XrefStatus(StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"
    CLOSED = "closed"


class ExceptionStatus(StrEnum):
    OPEN = "open"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


class XrefRow(StoreModel, table=True):
    """One system's object linked to one enterprise entity (the ID map)."""

    __tablename__ = "xref"
    __table_args__ = (
        UniqueConstraint(
            "system", "tenant", "object_type", "external_id", name="uq_xref_external_key"
        ),
        UniqueConstraint("enterprise_id", "system", "object_type", name="uq_xref_enterprise_key"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    enterprise_id: str
    entity_type: str
    system: str
    tenant: str
    object_type: str
    external_id: str
    status: str = XrefStatus.ACTIVE.value
    remote_version: str | None = None
    last_synced_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class InboxRow(StoreModel, table=True):
    """A webhook event already received; the primary key is the dedupe key."""

    __tablename__ = "inbox"

    source: str = Field(primary_key=True)
    event_id: str = Field(primary_key=True)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    payload_hash: str
    workflow_id: str | None = None


class NewExceptionItem(StoreModel):
    """What a workflow reports when it hits an exception; ``id`` is the caller's idempotency key."""

    id: str = Field(primary_key=True)
    workflow_id: str
    run_id: str | None = None
    process: str
    cause_code: str
    field: str | None = None
    detail: str
    owner: str
    context: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class ExceptionItemRow(NewExceptionItem, table=True):
    """An exception item with its lifecycle: open -> (escalated ->) resolved."""

    __tablename__ = "exception_item"
    __table_args__ = (
        Index("ix_exception_item_status", "status"),
        Index("ix_exception_item_workflow_id", "workflow_id"),
    )

    status: str = ExceptionStatus.OPEN.value
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolution: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class LineageRow(StoreModel, table=True):
    """Which run and activity wrote which fields of an entity, from which source version."""

    __tablename__ = "lineage"
    __table_args__ = (Index("ix_lineage_entity", "entity_type", "entity_key"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    entity_type: str
    entity_key: str
    fields: list[str] = Field(default_factory=list, sa_type=JSON)
    source_system: str
    source_version: str | None = None
    workflow_id: str
    run_id: str | None = None
    activity: str
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class OutboxRow(StoreModel, table=True):
    """A business event waiting to be published; (event_type, key) makes recording idempotent."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("event_type", "key", name="uq_outbox_event_key"),
        Index("ix_outbox_published_at", "published_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    event_type: str
    key: str
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SyncStateRow(StoreModel, table=True):
    """A named value an integration keeps between runs: a poll cursor (the end of the last
    window read), or which run currently owns a business key."""

    __tablename__ = "sync_state"

    name: str = Field(primary_key=True)
    value: str
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
