"""Retention: delete the store's own records once they are older than their table keeps them,
in short batches (one transaction each), never anything still needed.

- ``inbox``: a processed event received before the cutoff. Never an event whose action has
  not taken effect (``pending``) or that was refused for good (``failed``: a person has to
  look at it), whatever its age.
- ``lineage``: a row recorded before the cutoff (append-only provenance).
- ``outbox``: an event published before the cutoff; never one not yet published.
- ``audit``: a decision received before the cutoff.

The cross-reference (``xref``), exception items, sync state and the time-posting ledger are
live state, not history: no retention applies to them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, select, tuple_

from store.models import AuditRow, InboxRow, InboxState, LineageRow, OutboxRow
from store.repository._base import StoreBase

PURGE_BATCH_MAX = 10_000
"""The most rows one purge batch deletes (one transaction)."""


class RetentionTable(StrEnum):
    """The tables whose rows age out."""

    INBOX = "inbox"
    LINEAGE = "lineage"
    OUTBOX = "outbox"
    AUDIT = "audit"


def _table(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


_INBOX = _table(InboxRow)
_LINEAGE = _table(LineageRow)
_OUTBOX = _table(OutboxRow)
_AUDIT = _table(AuditRow)


def _rule(
    which: RetentionTable, older_than: datetime
) -> tuple[Table, list[Any], Any, ColumnElement[bool]]:
    """(table, primary-key columns, age column, what may go) for one table."""
    if which is RetentionTable.INBOX:
        c = _INBOX.c
        return (
            _INBOX,
            [c.source, c.event_id],
            c.received_at,
            (c.state == InboxState.PROCESSED.value) & (c.received_at < older_than),
        )
    if which is RetentionTable.LINEAGE:
        c = _LINEAGE.c
        return _LINEAGE, [c.id], c.recorded_at, c.recorded_at < older_than
    if which is RetentionTable.OUTBOX:
        c = _OUTBOX.c
        return (
            _OUTBOX,
            [c.id],
            c.published_at,
            c.published_at.is_not(None) & (c.published_at < older_than),
        )
    c = _AUDIT.c
    return _AUDIT, [c.id], c.at, c.at < older_than


class RetentionOps(StoreBase):
    def purge_batch(
        self, table: RetentionTable | str, older_than: datetime, limit: int = 1000
    ) -> int:
        """Delete at most ``limit`` rows of ``table`` that are past retention at the cutoff
        ``older_than`` (an aware datetime), oldest first, in one short transaction; returns
        how many went. Call again until it returns less than ``limit``. Safe to repeat and to
        run beside the writers: what may go is decided in the DELETE itself."""
        if not 1 <= limit <= PURGE_BATCH_MAX:
            raise ValueError(f"limit must be 1..{PURGE_BATCH_MAX}, not {limit}")
        if older_than.tzinfo is None or older_than.utcoffset() is None:
            raise ValueError(f"naive cutoff {older_than!r}: give an aware datetime")
        target, keys, age, may_go = _rule(RetentionTable(table), older_than)
        oldest = select(*keys).where(may_go).order_by(age, *keys).limit(limit)
        picked = keys[0].in_(oldest) if len(keys) == 1 else tuple_(*keys).in_(oldest)
        with self._write_conn() as conn:
            result = conn.execute(delete(target).where(picked, may_go))
            return int(result.rowcount)
