"""Lineage (append-only), the outbox and named sync state."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    insert,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from contracts.v1.events import EventData, outbox_payload
from store.models import (
    LineageRow,
    OutboxRow,
    SyncStateRow,
)
from store.repository._base import (
    _LINEAGE,
    _LINEAGE_OPTIONAL,
    _LINEAGE_REQUIRED,
    StoreBase,
)

_OUTBOX: Table = OutboxRow.__table__  # type: ignore[attr-defined]


def queue_events(
    conn: Connection | Session,
    dialect: str,
    now: datetime,
    events: Sequence[tuple[str, str, str, EventData]],
) -> None:
    """Record domain events ``(event_type, key, subject, data)`` in the outbox inside the
    caller's transaction (the one recording the fact); a key already there is left as it is,
    so recording a fact twice publishes it once."""
    if not events:
        return
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    params = [
        {
            "event_type": event_type,
            "key": key,
            "payload": outbox_payload(subject, data),
            "created_at": now,
        }
        for event_type, key, subject, data in events
    ]
    target = conn.connection() if isinstance(conn, Session) else conn
    target.execute(insert_(_OUTBOX).on_conflict_do_nothing(), params)


class RecordOps(StoreBase):
    def record_lineage(
        self,
        entity_type: str,
        entity_key: str,
        fields: Sequence[str],
        source_system: str,
        source_version: str | None,
        workflow_id: str,
        run_id: str | None,
        activity: str,
    ) -> LineageRow:
        """Append who wrote ``fields`` of an entity, from which source version (append-only)."""
        row = LineageRow(
            entity_type=entity_type,
            entity_key=entity_key,
            fields=list(fields),
            source_system=source_system,
            source_version=source_version,
            workflow_id=workflow_id,
            run_id=run_id,
            activity=activity,
            recorded_at=self._clock(),
        )
        with self._write() as session:
            session.add(row)
            session.flush()  # assigns row.id
            return row

    def record_lineage_many(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Append many lineage rows in one transaction and one statement; returns how many.

        Each mapping has ``record_lineage``'s parameters as keys: ``entity_type``,
        ``entity_key``, ``fields``, ``source_system``, ``workflow_id``, ``activity`` and,
        optionally (None if absent), ``source_version`` and ``run_id``. ``recorded_at`` is the
        store's clock. Raises ``ValueError`` for a missing or unknown key, writing nothing.
        """
        now = self._clock()
        params = [_lineage_values(row, now) for row in rows]
        if not params:
            return 0
        with self._write_conn() as conn:
            conn.execute(insert(_LINEAGE), params)
        return len(params)

    def lineage_for(self, entity_type: str, entity_key: str) -> list[LineageRow]:
        """The lineage of one entity, in the order it was recorded."""
        with self._read() as session:
            return list(
                session.exec(
                    select(LineageRow)
                    .where(
                        col(LineageRow.entity_type) == entity_type,
                        col(LineageRow.entity_key) == entity_key,
                    )
                    .order_by(col(LineageRow.id))
                ).all()
            )

    # -- outbox -------------------------------------------------------------------------------

    def add_outbox(self, event_type: str, key: str, payload: Mapping[str, Any]) -> bool:
        """Queue an event; True if recorded now, False if (event_type, key) was already there."""
        with self._write() as session:
            return self._insert_if_absent(
                session,
                OutboxRow,
                {
                    "event_type": event_type,
                    "key": key,
                    "payload": dict(payload),
                    "created_at": self._clock(),
                },
            )

    def pending_outbox(self, limit: int = 100) -> list[OutboxRow]:
        """Unpublished events, oldest first."""
        with self._read() as session:
            return list(
                session.exec(
                    select(OutboxRow)
                    .where(col(OutboxRow.published_at).is_(None))
                    .order_by(col(OutboxRow.id))
                    .limit(limit)
                ).all()
            )

    def mark_published(self, ids: Iterable[int]) -> int:
        """Mark events published; returns how many were still pending."""
        id_list = list(ids)
        if not id_list:
            return 0
        with self._write() as session:
            result = session.exec(
                update(OutboxRow)
                .where(col(OutboxRow.id).in_(id_list), col(OutboxRow.published_at).is_(None))
                .values(published_at=self._clock())
                .execution_options(synchronize_session=False)
            )
            return result.rowcount

    # -- sync state ---------------------------------------------------------------------------

    def get_state(self, name: str) -> str | None:
        """The value kept under ``name`` (a poll cursor, a run pointer), or None."""
        with self._read() as session:
            row = session.get(SyncStateRow, name)
            return None if row is None else row.value

    def put_state(self, name: str, value: str) -> None:
        """Keep ``value`` under ``name`` (insert or overwrite; the last writer wins)."""
        now = self._clock()
        with self._write() as session:
            if not self._insert_if_absent(
                session, SyncStateRow, {"name": name, "value": value, "updated_at": now}
            ):
                session.exec(
                    update(SyncStateRow)
                    .where(col(SyncStateRow.name) == name)
                    .values(value=value, updated_at=now)
                )


def _lineage_values(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    unknown = set(row) - {*_LINEAGE_REQUIRED, *_LINEAGE_OPTIONAL}
    missing = [name for name in _LINEAGE_REQUIRED if name not in row]
    if unknown or missing:
        raise ValueError(
            f"lineage row with unknown keys {sorted(unknown)} / missing keys {missing}"
        )
    if isinstance(row["fields"], str):
        raise ValueError(f"lineage fields must be a list of names, not {row['fields']!r}")
    values = {name: row.get(name) for name in (*_LINEAGE_REQUIRED, *_LINEAGE_OPTIONAL)}
    values["fields"] = list(row["fields"])
    values["recorded_at"] = now
    return values
