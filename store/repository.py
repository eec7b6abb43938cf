"""The ``Store``: synchronous, race-safe operations on the integration layer's own state.

    store = Store(make_engine(url))
    ok = await asyncio.to_thread(store.inbox_accept, "crm", event_id, payload_hash)

Every method is one short transaction and returns rows detached from any session (plain
sqlmodel objects, safe to read after the call and from other threads). Uniqueness is enforced by
the database (``INSERT ... ON CONFLICT DO NOTHING`` then re-select, conditional ``UPDATE``s), never
by a read-then-write check in Python, so concurrent callers cannot create duplicates.

Must never: import Temporal, call connectors, generate idempotency keys (callers derive them from
business identity), or decide retries (it raises the typed errors of ``store.errors``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    func,
    insert,
    literal_column,
    update,
)
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from store.database import writer
from store.errors import AlreadyResolved, NotFound, XrefConflict
from store.models import (
    ExactDecimal,
    ExceptionItemRow,
    ExceptionStatus,
    InboxBacklog,
    InboxRow,
    InboxState,
    LineageRow,
    NewExceptionItem,
    OutboxRow,
    StoreModel,
    SyncStateRow,
    TimePostingRow,
    TimePostingState,
    TimeTotal,
    XrefRow,
    XrefStatus,
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


class Store:
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

    # -- xref ---------------------------------------------------------------------------------

    def link_xref(
        self,
        enterprise_id: str,
        entity_type: str,
        system: str,
        tenant: str,
        object_type: str,
        external_id: str,
        status: str = XrefStatus.ACTIVE.value,
        remote_version: str | None = None,
    ) -> XrefRow:
        """Link ``system/tenant/object_type/external_id`` to ``enterprise_id``; idempotent.

        Re-linking the same pair refreshes status, last_synced_at and (when given)
        remote_version. Raises ``XrefConflict`` if the external object is linked to another
        enterprise id, or the enterprise id already has another object of this system and type.
        """
        now = self._clock()
        with self._write() as session:
            inserted = self._insert_if_absent(
                session,
                XrefRow,
                {
                    "enterprise_id": enterprise_id,
                    "entity_type": entity_type,
                    "system": system,
                    "tenant": tenant,
                    "object_type": object_type,
                    "external_id": external_id,
                    "status": status,
                    "remote_version": remote_version,
                    "last_synced_at": now,
                },
            )
            row = session.exec(
                _xref_by_external_key(system, tenant, object_type, external_id)
            ).one_or_none()
            if row is None:
                # Nothing was inserted and no row holds this external key: the other unique
                # key (enterprise_id, system, object_type) must be taken.
                raise _enterprise_key_conflict(
                    session, enterprise_id, system, tenant, object_type, external_id
                )
            if row.enterprise_id != enterprise_id:
                raise XrefConflict(
                    system=system,
                    tenant=tenant,
                    object_type=object_type,
                    external_id=external_id,
                    enterprise_id=enterprise_id,
                    existing_enterprise_id=row.enterprise_id,
                    existing_external_id=row.external_id,
                )
            if not inserted:
                row.status = status
                row.last_synced_at = now
                if remote_version is not None:
                    row.remote_version = remote_version
            return row

    def reserve_enterprise_id(
        self,
        candidate: str,
        entity_type: str,
        system: str,
        tenant: str,
        object_type: str,
        external_id: str,
    ) -> str:
        """The enterprise id of ``system/tenant/object_type/external_id``: the one it already
        has, else ``candidate``, linked to it now. Every caller gets the same id, whatever the
        timing; an existing link is returned as it is (status and version untouched).

        One transaction: INSERT of the candidate's link ... ON CONFLICT DO NOTHING, then
        re-select by the external key. Several sagas may reserve for one source record at once
        (two deals of one customer won together both reserve the CRM Account's id); a find,
        then a link, in two transactions would let each find nothing and all but one fail on
        the link. Here the database decides: PostgreSQL makes a concurrent INSERT wait for the
        first one's commit and then skip, and the re-select (a new snapshot under READ
        COMMITTED) sees the winner's row; SQLite's write transactions are serialised.

        Raises ``XrefConflict`` only if ``candidate`` already stands for another object of this
        system and type (a caller's bug: candidates are freshly minted).
        """
        with self._write() as session:
            self._insert_if_absent(
                session,
                XrefRow,
                {
                    "enterprise_id": candidate,
                    "entity_type": entity_type,
                    "system": system,
                    "tenant": tenant,
                    "object_type": object_type,
                    "external_id": external_id,
                    "status": XrefStatus.ACTIVE.value,
                    "last_synced_at": self._clock(),
                },
            )
            row = session.exec(
                _xref_by_external_key(system, tenant, object_type, external_id)
            ).one_or_none()
            if row is not None:
                return row.enterprise_id
            # Nothing was inserted and no row holds this external key: the candidate's
            # (enterprise_id, system, object_type) key is taken by another object.
            raise _enterprise_key_conflict(
                session, candidate, system, tenant, object_type, external_id
            )

    def find_enterprise_id(
        self, system: str, tenant: str, object_type: str, external_id: str
    ) -> str | None:
        """The enterprise id linked to an external object, or None."""
        with self._read() as session:
            row = session.exec(
                _xref_by_external_key(system, tenant, object_type, external_id)
            ).one_or_none()
            return row.enterprise_id if row else None

    def find_xref(self, enterprise_id: str, system: str, object_type: str) -> XrefRow | None:
        """The object of ``system``/``object_type`` linked to ``enterprise_id``, or None."""
        with self._read() as session:
            return session.exec(
                select(XrefRow).where(
                    col(XrefRow.enterprise_id) == enterprise_id,
                    col(XrefRow.system) == system,
                    col(XrefRow.object_type) == object_type,
                )
            ).one_or_none()

    def xrefs_for(self, enterprise_id: str) -> list[XrefRow]:
        """Every link of ``enterprise_id``, ordered by system and object type."""
        with self._read() as session:
            return list(
                session.exec(
                    select(XrefRow)
                    .where(col(XrefRow.enterprise_id) == enterprise_id)
                    .order_by(col(XrefRow.system), col(XrefRow.object_type))
                ).all()
            )

    def set_xref_status(
        self,
        system: str,
        tenant: str,
        object_type: str,
        external_id: str,
        status: str,
        remote_version: str | None = None,
    ) -> XrefRow:
        """Set a link's status (e.g. archived by a compensation); raises ``NotFound``."""
        now = self._clock()
        with self._write() as session:
            row = session.exec(
                _xref_by_external_key(system, tenant, object_type, external_id)
            ).one_or_none()
            if row is None:
                raise NotFound("xref", f"{system}/{tenant}/{object_type}/{external_id}")
            row.status = status
            row.last_synced_at = now
            if remote_version is not None:
                row.remote_version = remote_version
            return row

    # -- inbox --------------------------------------------------------------------------------

    def inbox_accept(
        self,
        source: str,
        event_id: str,
        payload_hash: str,
        *,
        event_type: str | None = None,
        body: str | None = None,
    ) -> bool:
        """Record a received event, ``pending`` until its action has taken effect: True the
        first time, False for any duplicate delivery (the first row is kept unchanged).

        ``event_type`` and ``body`` (the verified raw body) are what a replay needs."""
        with self._write() as session:
            return self._insert_if_absent(
                session,
                InboxRow,
                {
                    "source": source,
                    "event_id": event_id,
                    "payload_hash": payload_hash,
                    "received_at": self._clock(),
                    "event_type": event_type,
                    "body": body,
                    "state": InboxState.PENDING.value,
                    "attempts": 0,
                },
            )

    def inbox_set_workflow(self, source: str, event_id: str, workflow_id: str) -> None:
        """Remember which workflow an accepted event started or joined, and mark it processed
        (``processed_at`` keeps the first time); raises ``NotFound``."""
        with self._write() as session:
            result = session.exec(
                update(InboxRow)
                .where(_inbox_key(source, event_id))
                .values(
                    workflow_id=workflow_id,
                    state=InboxState.PROCESSED.value,
                    processed_at=func.coalesce(col(InboxRow.processed_at), self._clock()),
                )
                .returning(literal_column("1"))
            )
            if result.first() is None:
                raise NotFound("inbox", f"{source}/{event_id}")

    def inbox_mark_processed(
        self, source: str, event_id: str, workflow_id: str | None = None
    ) -> bool:
        """Mark an event's action as taken effect, idempotently: True if this call did it,
        False if it was already processed (nothing changes then). A failed event can still be
        processed (a sender's retry succeeded). Raises ``NotFound`` for an unknown event."""
        values: dict[str, Any] = {
            "state": InboxState.PROCESSED.value,
            "processed_at": self._clock(),
        }
        if workflow_id is not None:
            values["workflow_id"] = workflow_id
        with self._write() as session:
            marked = session.exec(
                update(InboxRow)
                .where(
                    _inbox_key(source, event_id),
                    col(InboxRow.state) != InboxState.PROCESSED.value,
                )
                .values(**values)
                .returning(literal_column("1"))
            ).first()
            if marked is not None:
                return True
            if session.get(InboxRow, (source, event_id)) is None:
                raise NotFound("inbox", f"{source}/{event_id}")
            return False

    def inbox_record_failure(
        self, source: str, event_id: str, error: str, *, permanent: bool = False
    ) -> int | None:
        """Count a replay that did not take effect and keep its error; ``permanent`` marks the
        event ``failed`` (refused for good: nothing retries it). Only a pending event changes:
        returns its attempts so far, or None if it was not pending (processed meanwhile)."""
        values: dict[str, Any] = {
            "attempts": col(InboxRow.attempts) + 1,
            "last_error": error[:4000],
        }
        if permanent:
            values["state"] = InboxState.FAILED.value
        with self._write() as session:
            attempts = session.exec(
                update(InboxRow)
                .where(
                    _inbox_key(source, event_id),
                    col(InboxRow.state) == InboxState.PENDING.value,
                )
                .values(**values)
                .returning(col(InboxRow.attempts))
            ).first()
            return None if attempts is None else int(attempts[0])

    def inbox_pending(
        self,
        limit: int = 100,
        *,
        received_before: datetime | None = None,
        sources: Sequence[str] | None = None,
    ) -> list[InboxRow]:
        """Verified events whose action has not taken effect, in arrival order (oldest
        first); ``received_before`` leaves out the newest (their first attempt may still be
        under way), ``sources`` keeps only those sources' events."""
        return self.inbox_list(
            InboxState.PENDING, limit, received_before=received_before, sources=sources
        )

    def inbox_list(
        self,
        state: InboxState | str,
        limit: int = 100,
        *,
        received_before: datetime | None = None,
        sources: Sequence[str] | None = None,
    ) -> list[InboxRow]:
        """Events in ``state`` (of ``sources``, if given), in arrival order (oldest first)."""
        query = select(InboxRow).where(col(InboxRow.state) == InboxState(state).value)
        if received_before is not None:
            query = query.where(col(InboxRow.received_at) < received_before)
        if sources is not None:
            query = query.where(col(InboxRow.source).in_(list(sources)))
        query = query.order_by(
            col(InboxRow.received_at), col(InboxRow.source), col(InboxRow.event_id)
        ).limit(limit)
        with self._read() as session:
            return list(session.exec(query).all())

    def inbox_backlog(self, sources: Sequence[str] | None = None) -> InboxBacklog:
        """How many events (of ``sources``, if given) are pending, and since when, and how
        many failed for good."""
        query = (
            core_select(col(InboxRow.state), func.count(), func.min(col(InboxRow.received_at)))
            .where(col(InboxRow.state).in_((InboxState.PENDING.value, InboxState.FAILED.value)))
            .group_by(col(InboxRow.state))
        )
        if sources is not None:
            query = query.where(col(InboxRow.source).in_(list(sources)))
        with self._read() as session:
            rows = {state: (int(n), oldest) for state, n, oldest in session.execute(query)}
        pending, oldest = rows.get(InboxState.PENDING.value, (0, None))
        return InboxBacklog(
            pending=pending,
            oldest_pending_at=oldest,
            failed=rows.get(InboxState.FAILED.value, (0, None))[0],
        )

    def inbox_get(self, source: str, event_id: str) -> InboxRow | None:
        """The recorded event, or None if it was never accepted."""
        with self._read() as session:
            return session.get(InboxRow, (source, event_id))

    # -- exception items ----------------------------------------------------------------------

    def open_exception(self, item: NewExceptionItem) -> ExceptionItemRow:
        """Record an open exception item; idempotent by ``item.id`` (an existing item is
        returned unchanged, whatever its status)."""
        values = {name: getattr(item, name) for name in NewExceptionItem.model_fields}
        values |= {"status": ExceptionStatus.OPEN.value, "created_at": self._clock()}
        with self._write() as session:
            self._insert_if_absent(session, ExceptionItemRow, values)
            row = session.get(ExceptionItemRow, item.id)
            if row is None:  # cannot happen: inserted now or before, and items are never deleted
                raise NotFound("exception_item", item.id)
            return row

    def resolve_exception(
        self, item_id: str, resolution: Mapping[str, Any], actor: str
    ) -> ExceptionItemRow:
        """Resolve an open or escalated item, recording ``resolution`` plus ``actor``.

        Idempotent for the same decision: if the item already carries exactly this resolution
        by this actor (an activity retried after its first attempt committed), the row is
        returned unchanged. Raises ``AlreadyResolved`` (carrying the recorded resolution) if it
        was resolved before with another resolution or by another actor, even by a concurrent
        caller, so exactly one decision wins; ``NotFound`` if there is no such item.
        """
        recorded = {**resolution, "actor": actor}
        with self._write() as session:
            result = session.exec(
                update(ExceptionItemRow)
                .where(
                    col(ExceptionItemRow.id) == item_id,
                    col(ExceptionItemRow.status).in_(_UNRESOLVED),
                )
                .values(
                    status=ExceptionStatus.RESOLVED.value,
                    resolved_at=self._clock(),
                    resolution=recorded,
                )
                .execution_options(synchronize_session=False)
            )
            row = session.get(ExceptionItemRow, item_id, populate_existing=True)
            if row is None:
                raise NotFound("exception_item", item_id)
            # The stored resolution went through JSON: compare it with ours in that form.
            if result.rowcount == 0 and row.resolution != json.loads(json.dumps(recorded)):
                raise AlreadyResolved(item_id, row.resolution)
            return row

    def escalate_exception(self, item_id: str, owner: str | None = None) -> ExceptionItemRow:
        """Mark an unresolved item escalated, optionally handing it to ``owner``.

        Escalating an escalated item again is allowed (a further hand-off). Escalating a
        resolved item is a no-op that returns the row unchanged (status ``resolved``, owner
        kept): a workflow's escalation timer may fire just after a person resolved the item,
        and that must not fail the run. Raises ``NotFound`` if there is no such item.
        """
        values: dict[str, Any] = {"status": ExceptionStatus.ESCALATED.value}
        if owner is not None:
            values["owner"] = owner
        with self._write() as session:
            # Conditional on the status, so a resolution committed first is never overwritten.
            session.exec(
                update(ExceptionItemRow)
                .where(
                    col(ExceptionItemRow.id) == item_id,
                    col(ExceptionItemRow.status).in_(_UNRESOLVED),
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            row = session.get(ExceptionItemRow, item_id, populate_existing=True)
            if row is None:
                raise NotFound("exception_item", item_id)
            # Escalated now, or (nothing updated) already resolved and left as it is.
            return row

    def get_exception(self, item_id: str) -> ExceptionItemRow | None:
        with self._read() as session:
            return session.get(ExceptionItemRow, item_id)

    def list_exceptions(
        self,
        status: str | None = None,
        process: str | None = None,
        workflow_id: str | None = None,
    ) -> list[ExceptionItemRow]:
        """Items matching every given filter, oldest first."""
        query = select(ExceptionItemRow)
        if status is not None:
            query = query.where(col(ExceptionItemRow.status) == status)
        if process is not None:
            query = query.where(col(ExceptionItemRow.process) == process)
        if workflow_id is not None:
            query = query.where(col(ExceptionItemRow.workflow_id) == workflow_id)
        query = query.order_by(col(ExceptionItemRow.created_at), col(ExceptionItemRow.id))
        with self._read() as session:
            return list(session.exec(query).all())

    # -- lineage ------------------------------------------------------------------------------

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

    # -- time-posting ledger ------------------------------------------------------------------

    def time_postings(self, entry_keys: Iterable[str]) -> dict[str, TimePostingRow]:
        """The ledger rows of ``entry_keys`` that exist, by entry key (missing keys are absent)."""
        keys = list(dict.fromkeys(entry_keys))
        found: dict[str, TimePostingRow] = {}
        with self._read() as session:
            for chunk in _chunks(keys):
                rows = session.exec(
                    select(TimePostingRow).where(col(TimePostingRow.entry_key).in_(chunk))
                )
                found.update((row.entry_key, row) for row in rows)
        return found

    def record_time_postings(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Upsert ledger rows by ``entry_key`` in one transaction; returns the rows written.

        Each mapping holds ``entry_key`` and any other columns of ``TimePostingRow`` but
        ``updated_at`` (set to the store's clock). An existing row gets exactly the given columns
        and keeps the others, so ``{"entry_key": k, "state": "posted", "erp_id": "9"}`` is a
        valid update. A new row takes the given columns and the model's defaults for the others,
        but ``kind``, ``entry_id``, ``psa_project_id``, ``entry_version``, ``state``, ``hours``
        and ``billable`` have none: a row without all of them must already exist (else
        ``NotFound``, and nothing is written). Rows may give different columns; one key given
        twice acts as two upserts in order (and counts once).

        Hours are rounded half-up to 6 places; amounts must have at most 2 (round them first).
        Raises ``ValueError`` (unknown column, state or kind; an amount with more decimals or a
        number too large for its column) or ``TypeError`` (a float) before writing anything.
        """
        merged: dict[str, dict[str, Any]] = {}
        for row in rows:
            values = _time_posting_values(row)
            key = values["entry_key"]
            merged[key] = {**merged.get(key, {}), **values}
        if not merged:
            return 0
        now = self._clock()
        upserts: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        # Rows in key order, so concurrent batches over the same entries lock them in the same
        # order (PostgreSQL) instead of deadlocking.
        for _, values in sorted(merged.items()):
            values["updated_at"] = now
            columns = tuple(sorted(values))
            target = upserts if _TIME_POSTING_REQUIRED.issubset(values) else updates
            target.setdefault(columns, []).append(values)
        insert_ = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        table = _TIME_POSTING
        with self._write_conn() as conn:
            # Partial rows can only update: an INSERT ... ON CONFLICT still checks NOT NULL on
            # the row it proposes, on both backends. Check they all exist before writing.
            partial = [v["entry_key"] for params in updates.values() for v in params]
            existing: set[str] = set()
            for chunk in _chunks(partial):
                existing.update(
                    conn.execute(
                        core_select(table.c.entry_key).where(table.c.entry_key.in_(chunk))
                    ).scalars()
                )
            for key in partial:
                if key not in existing:
                    raise NotFound("time_posting", key)
            for columns, params in updates.items():
                stmt = (
                    update(table)
                    .where(table.c.entry_key == bindparam("b_entry_key"))
                    .values({c: bindparam(c) for c in columns if c != "entry_key"})
                )
                conn.execute(stmt, [{**p, "b_entry_key": p["entry_key"]} for p in params])
            for columns, params in upserts.items():
                ins = insert_(table)
                stmt_ins = ins.on_conflict_do_update(
                    index_elements=[table.c.entry_key],
                    set_={c: ins.excluded[c] for c in columns if c != "entry_key"},
                )
                conn.execute(stmt_ins, params)  # executemany: one statement, many rows
        return len(merged)

    def posted_fingerprints(
        self, fingerprints: Iterable[str], exclude: Iterable[str] = ()
    ) -> dict[str, str]:
        """Which of ``fingerprints`` a live entry (state posted or posting) already carries:
        fingerprint -> that entry's key (the smallest, if several do). Entries whose keys are in
        ``exclude`` (typically the ones being checked) do not count."""
        prints = list(dict.fromkeys(fingerprints))
        excluded = set(exclude)
        live = (TimePostingState.POSTED.value, TimePostingState.POSTING.value)
        t = _TIME_POSTING.c
        found: dict[str, str] = {}
        with self._reader.connect() as conn:
            for chunk in _chunks(prints):
                rows = conn.execute(
                    core_select(t.fingerprint, t.entry_key).where(
                        t.fingerprint.in_(chunk), t.state.in_(live)
                    )
                ).all()
                for fingerprint, key in rows:
                    if key not in excluded and (
                        fingerprint not in found or key < found[fingerprint]
                    ):
                        found[fingerprint] = key
        return found

    def unbilled_time(self, psa_project_id: str, period: str | None = None) -> list[TimePostingRow]:
        """Posted, billable entries of a project with a bill amount and no invoice yet (of
        ``period`` if given), ordered by entry key."""
        query = select(TimePostingRow).where(
            col(TimePostingRow.psa_project_id) == psa_project_id,
            col(TimePostingRow.state) == TimePostingState.POSTED.value,
            col(TimePostingRow.billable).is_(True),
            col(TimePostingRow.invoice_ref).is_(None),
            col(TimePostingRow.bill_amount).is_not(None),
        )
        if period is not None:
            query = query.where(col(TimePostingRow.period) == period)
        with self._read() as session:
            return list(session.exec(query.order_by(col(TimePostingRow.entry_key))).all())

    def unbilled_periods(self, before: str) -> list[tuple[str, str]]:
        """``(psa_project_id, period)`` of every period earlier than ``before`` (``"YYYY-MM"``,
        i.e. closed when ``before`` is the current month) that still has unbilled time or
        expense, as ``unbilled_time`` defines it; ordered by project then period."""
        t = _TIME_POSTING.c
        query = (
            core_select(t.psa_project_id, t.period)
            .where(
                t.state == TimePostingState.POSTED.value,
                t.billable.is_(True),
                t.invoice_ref.is_(None),
                t.bill_amount.is_not(None),
                t.period.is_not(None),
                t.period < before,
            )
            .distinct()
            .order_by(t.psa_project_id, t.period)
        )
        with self._reader.connect() as conn:
            return [(project, period) for project, period in conn.execute(query).all()]

    def mark_time_billed(self, entry_keys: Sequence[str], invoice_ref: str) -> int:
        """Put ``invoice_ref`` on those of ``entry_keys`` that carry no invoice yet; idempotent.

        Rows already billed on another invoice keep it. Returns how many of ``entry_keys`` carry
        ``invoice_ref`` afterwards (marked now or before), so a repeat returns the same count.
        """
        keys = list(dict.fromkeys(entry_keys))
        if not keys:
            return 0
        now = self._clock()
        carrying = 0
        with self._write_conn() as conn:
            for chunk in _chunks(keys):
                in_chunk = _TIME_POSTING.c.entry_key.in_(chunk)
                conn.execute(
                    update(_TIME_POSTING)
                    .where(in_chunk, _TIME_POSTING.c.invoice_ref.is_(None))
                    .values(invoice_ref=invoice_ref, updated_at=now)
                )
                carrying += conn.execute(
                    core_select(func.count())
                    .select_from(_TIME_POSTING)
                    .where(in_chunk, _TIME_POSTING.c.invoice_ref == invoice_ref)
                ).scalar_one()
        return carrying

    def unmark_time_billed(self, invoice_ref: str) -> int:
        """Take ``invoice_ref`` off every row carrying it (the invoice was voided); returns how
        many rows carried it."""
        with self._write_conn() as conn:
            result = conn.execute(
                update(_TIME_POSTING)
                .where(_TIME_POSTING.c.invoice_ref == invoice_ref)
                .values(invoice_ref=None, updated_at=self._clock())
            )
            return result.rowcount

    def time_totals(self, psa_project_id: str | None = None) -> list[TimeTotal]:
        """Posted hours, bill and cost amounts and entry counts per project, period, kind and
        currency (amounts of different currencies are never added up), ordered by those."""
        t = _TIME_POSTING.c
        query = (
            core_select(
                t.psa_project_id,
                t.period,
                t.kind,
                t.currency,
                func.sum(t.hours),
                func.sum(t.bill_amount),
                func.sum(t.cost_amount),
                func.count(),
            )
            .where(t.state == TimePostingState.POSTED.value)
            .group_by(t.psa_project_id, t.period, t.kind, t.currency)
        )
        if psa_project_id is not None:
            query = query.where(t.psa_project_id == psa_project_id)
        with self._reader.connect() as conn:
            result = conn.execute(query).all()
        zero_hours, zero_amount = Decimal("0.000000"), Decimal("0.00")
        totals = [
            TimeTotal(
                psa_project_id=project,
                period=period,
                kind=kind,
                currency=currency,
                hours=hours if hours is not None else zero_hours,
                bill_amount=bill if bill is not None else zero_amount,
                cost_amount=cost if cost is not None else zero_amount,
                entries=entries,
            )
            for project, period, kind, currency, hours, bill, cost, entries in result
        ]
        # NULLs sort differently on each backend: order in Python, None first.
        return sorted(
            totals,
            key=lambda x: (
                x.psa_project_id, x.period or "", x.period is not None, x.kind,
                x.currency or "", x.currency is not None,
            ),
        )  # fmt: skip

    def time_posting_counts(self, psa_project_id: str | None = None) -> dict[str, int]:
        """Ledger rows per state (every ``TimePostingState`` is present, zero if none)."""
        t = _TIME_POSTING.c
        query = core_select(t.state, func.count()).group_by(t.state)
        if psa_project_id is not None:
            query = query.where(t.psa_project_id == psa_project_id)
        counts = {state.value: 0 for state in TimePostingState}
        with self._reader.connect() as conn:
            counts.update((state, count) for state, count in conn.execute(query).all())
        return counts


def _xref_by_external_key(
    system: str, tenant: str, object_type: str, external_id: str
) -> SelectOfScalar[XrefRow]:
    return select(XrefRow).where(
        col(XrefRow.system) == system,
        col(XrefRow.tenant) == tenant,
        col(XrefRow.object_type) == object_type,
        col(XrefRow.external_id) == external_id,
    )


def _enterprise_key_conflict(
    session: Session,
    enterprise_id: str,
    system: str,
    tenant: str,
    object_type: str,
    external_id: str,
) -> XrefConflict:
    """The conflict of linking an external object to ``enterprise_id`` when that id already
    stands for another object of ``system``/``object_type`` (read in the caller's transaction,
    which found no row for the external key after its INSERT did nothing)."""
    other = session.exec(
        select(XrefRow).where(
            col(XrefRow.enterprise_id) == enterprise_id,
            col(XrefRow.system) == system,
            col(XrefRow.object_type) == object_type,
        )
    ).one()
    return XrefConflict(
        system=system,
        tenant=tenant,
        object_type=object_type,
        external_id=external_id,
        enterprise_id=enterprise_id,
        existing_enterprise_id=other.enterprise_id,
        existing_external_id=other.external_id,
    )


def _chunks(keys: Sequence[str], size: int = _IN_CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


def _time_posting_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ledger row's column values, checked; enum members become their plain values."""
    unknown = set(row) - _TIME_POSTING_COLUMNS
    if unknown:
        raise ValueError(f"unknown time_posting columns: {sorted(unknown)}")
    values = dict(row)
    if not isinstance(values.get("entry_key"), str) or not values["entry_key"]:
        raise ValueError(f"a time_posting row needs an entry_key: {dict(row)!r}")
    if "state" in values:
        try:
            values["state"] = TimePostingState(values["state"]).value
        except ValueError:
            raise ValueError(f"{values['entry_key']}: unknown state {values['state']!r}") from None
    if "kind" in values:
        kind = str(getattr(values["kind"], "value", values["kind"]))
        if kind not in _TIME_POSTING_KINDS:
            raise ValueError(f"{values['entry_key']}: unknown kind {values['kind']!r}")
        values["kind"] = kind
    for name, type_ in _TIME_POSTING_DECIMALS.items():
        if name in values:
            try:
                values[name] = type_.coerce(values[name])
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{values['entry_key']}: {name}: {exc}") from None
    return values


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


def _inbox_key(source: str, event_id: str) -> Any:
    return (col(InboxRow.source) == source) & (col(InboxRow.event_id) == event_id)
