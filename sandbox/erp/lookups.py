"""Row lookups (by id, external ID, accounting period), memoised while a batch upsert runs,
and the batch's deferred inserts."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import date
from types import SimpleNamespace
from typing import Any

from sqlalchemy.orm import ORMExecuteState
from sqlmodel import Session, SQLModel, col, func, select

from sandbox._twin import TwinError
from sandbox.erp.bodies import Ref
from sandbox.erp.common import _int_id
from sandbox.erp.tables import ErpAccountingPeriod

# -- batches ----------------------------------------------------------------------------------
#
# A batch of up to 200 records runs in one session (one transaction), and its records mostly
# name the same few projects, departments and periods. While it runs, `s.info[_BATCH]` holds a
# `_Batch`: lookups are memoised (holding the rows strongly: the session's identity map is weak
# and would reload them from the database each time), the batch's external IDs are read in one
# query, and new records are written by one executemany at the end instead of an ORM flush
# each (from drafts, see `_draft`). The rules are the same as for a single write;
# `write_record` keeps the memo true.

_BATCH = "erp_twin_batch"


@dataclass
class _Batch:
    rows: dict[tuple[str, Any, Any], Any] = dc_field(default_factory=dict)
    """("id", table, id) -> row; ("eid", table, external id) -> row, or None when absent."""
    periods: list[Any] | None = None
    next_ids: dict[Any, int] = dc_field(default_factory=dict)
    inserts: dict[int, tuple[Any, SimpleNamespace]] = dc_field(default_factory=dict)
    """New records not written yet (table, draft) by the draft's `id()`: `_write_inserts`
    writes them before any query."""


def _batch(s: Session) -> _Batch | None:
    batch: _Batch | None = s.info.get(_BATCH)
    return batch


def _write_inserts(s: Session) -> None:
    """Write the batch's new rows (one executemany per table) and forget them in the memo:
    from now on the database has them."""
    batch = _batch(s)
    if batch is None or not batch.inserts:
        return
    drafts, batch.inserts = list(batch.inserts.values()), {}
    by_table: dict[Any, list[dict[str, Any]]] = {}
    for table, draft in drafts:
        by_table.setdefault(table, []).append(vars(draft))
        batch.rows.pop(("id", table, draft.id), None)
        if draft.external_id is not None:
            batch.rows.pop(("eid", table, draft.external_id), None)
    connection = s.connection()
    for table, values in by_table.items():
        connection.execute(table.__table__.insert(), values)


def _before_query(context: ORMExecuteState) -> None:
    """Autoflush for the batch's new rows: a query sees them."""
    _write_inserts(context.session)  # type: ignore[arg-type]


def _get_row(s: Session, table: Any, ident: int | None) -> Any:
    """`s.get(table, ident)`, memoised during a batch (misses are not: a row may be created)."""
    if ident is None:
        return None
    batch = _batch(s)
    if batch is None:
        return s.get(table, ident)
    key = ("id", table, ident)
    row = batch.rows.get(key)
    if row is None:
        row = s.get(table, ident)
        if row is not None:
            batch.rows[key] = row
    return row


def _lookup(s: Session, table: type[SQLModel], ref: Ref, path: str) -> Any:
    if ref.id is not None and ref.id.startswith("eid:"):
        row = _by_eid(s, table, ref.id[4:])
    elif ref.id is not None:
        row = _get_row(s, table, _int_id(ref.id))
    else:
        row = _by_eid(s, table, ref.externalId or "")
    if row is None:
        key = ref.id or f"eid:{ref.externalId}"
        raise TwinError(
            400,
            "INVALID_KEY_OR_REF",
            f"Invalid {path} reference key {key}.",
            path,
        )
    return row


def _by_eid(s: Session, table: Any, external_id: str) -> Any:
    batch = _batch(s)
    if batch is None:
        return s.exec(select(table).where(table.external_id == external_id)).first()
    key = ("eid", table, external_id)
    if key not in batch.rows:
        # A miss is remembered too: every record the batch creates goes through
        # `write_record`, which records it here.
        batch.rows[key] = s.exec(select(table).where(table.external_id == external_id)).first()
    return batch.rows[key]


def _remember(s: Session, table: Any, row: Any, old_external_id: str | None = None) -> None:
    """Keep the batch memo true after `row` was created or its external ID changed."""
    batch = _batch(s)
    if batch is None:
        return
    if old_external_id is not None:
        batch.rows[("eid", table, old_external_id)] = None
    if row.external_id is not None:
        batch.rows[("eid", table, row.external_id)] = row
    batch.rows[("id", table, row.id)] = row


def _next_id(s: Session, batch: _Batch, table: Any) -> int:
    """The id SQLite would give the next new row: max + 1 (rows of these tables are never
    deleted, and writes never interleave: handlers touch SQLite synchronously)."""
    if table not in batch.next_ids:
        batch.next_ids[table] = (s.exec(select(func.max(table.id))).one() or 0) + 1
    ident = batch.next_ids[table]
    batch.next_ids[table] = ident + 1
    return ident


def _prefetch(s: Session, table: Any, external_ids: list[str]) -> None:
    """Read a batch's records by external ID in one query (and remember which are new)."""
    batch = _batch(s)
    if batch is None:
        return
    wanted = set(external_ids)
    ordered = sorted(wanted)
    for i in range(0, len(ordered), 500):
        chunk = ordered[i : i + 500]
        for row in s.exec(select(table).where(table.external_id.in_(chunk))).all():
            batch.rows[("eid", table, row.external_id)] = row
            wanted.discard(row.external_id)
    for external_id in wanted:
        batch.rows[("eid", table, external_id)] = None


def _period_for(s: Session, day: date) -> ErpAccountingPeriod | None:
    batch = _batch(s)
    if batch is None:
        return s.exec(
            select(ErpAccountingPeriod)
            .where(ErpAccountingPeriod.start_date <= day)
            .where(ErpAccountingPeriod.end_date >= day)
            .order_by(ErpAccountingPeriod.end_date)
        ).first()
    if batch.periods is None:  # a few dozen rows: read them once per batch
        batch.periods = list(
            s.exec(select(ErpAccountingPeriod).order_by(col(ErpAccountingPeriod.end_date))).all()
        )
    return next((p for p in batch.periods if p.start_date <= day <= p.end_date), None)


def _open_period(s: Session, day: date) -> ErpAccountingPeriod:
    period = _period_for(s, day)
    if period is None or period.closed or period.all_locked:
        what = (
            f"The accounting period {period.period_name} is closed"
            if period
            else "No accounting period is open"
        )
        raise TwinError(400, "PERIOD_CLOSED", f"{what}; cannot post on {day}.", "tranDate")
    return period
