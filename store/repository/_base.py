"""The store's core: one engine, short transactions, insert-if-absent; shared constants."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    literal_column,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from store.database import writer
from store.models import (
    ExactDecimal,
    ExceptionStatus,
    LineageRow,
    StoreModel,
    TimePostingRow,
    utcnow,
)

_UNRESOLVED = (ExceptionStatus.OPEN.value, ExceptionStatus.ESCALATED.value)

# Keys per IN (...) list: well under SQLite's and PostgreSQL's bound-parameter limits.
_IN_CHUNK = 500

_TIME_POSTING: Table = TimePostingRow.__table__  # type: ignore[attr-defined]
_LINEAGE: Table = LineageRow.__table__  # type: ignore[attr-defined]
# Columns a caller of record_time_postings may give; updated_at is the store's own.
_TIME_POSTING_COLUMNS = frozenset(c.name for c in _TIME_POSTING.columns) - {"updated_at"}
# Columns a new ledger row cannot do without (NOT NULL, no default).
_TIME_POSTING_REQUIRED = frozenset(
    c.name
    for c in _TIME_POSTING.columns
    if not c.nullable and c.default is None and c.server_default is None
)
_TIME_POSTING_DECIMALS = {
    c.name: c.type for c in _TIME_POSTING.columns if isinstance(c.type, ExactDecimal)
}
_TIME_POSTING_KINDS = frozenset({"time", "expense"})
_LINEAGE_REQUIRED = (
    "entity_type",
    "entity_key",
    "fields",
    "source_system",
    "workflow_id",
    "activity",
)
_LINEAGE_OPTIONAL = ("source_version", "run_id")


class StoreBase:
    """The store's operations over one engine (SQLite or PostgreSQL).

    ``clock`` returns the time written into timestamps; it must return aware datetimes.
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        dialect = engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database backend {dialect!r}")
        self._dialect = dialect
        self._reader = engine
        self._writer = writer(engine)
        self._clock = clock

    # -- plumbing -----------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with Session(self._writer, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self._reader, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def _write_conn(self) -> Iterator[Connection]:
        """A write transaction on a bare connection, for bulk Core statements."""
        with self._writer.begin() as conn:
            yield conn

    def _insert_if_absent(
        self, session: Session, model: type[StoreModel], values: Mapping[str, Any]
    ) -> bool:
        """INSERT that does nothing if any unique constraint would be violated; True if a row
        was inserted. Uses RETURNING, not rowcount: with SQLAlchemy 2.1 and psycopg 3.3 an
        INSERT's rowcount comes back as -1."""
        insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        stmt = insert(model).values(**values).on_conflict_do_nothing()
        returned = session.exec(stmt.returning(literal_column("1"))).first()
        return returned is not None


def _chunks(keys: Sequence[str], size: int = _IN_CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]
