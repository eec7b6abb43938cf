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

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, literal_column, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from store.database import writer
from store.errors import AlreadyResolved, NotFound, XrefConflict
from store.models import (
    ExceptionItemRow,
    ExceptionStatus,
    InboxRow,
    LineageRow,
    NewExceptionItem,
    OutboxRow,
    StoreModel,
    SyncStateRow,
    XrefRow,
    XrefStatus,
    utcnow,
)

_UNRESOLVED = (ExceptionStatus.OPEN.value, ExceptionStatus.ESCALATED.value)


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
                other = session.exec(
                    select(XrefRow).where(
                        col(XrefRow.enterprise_id) == enterprise_id,
                        col(XrefRow.system) == system,
                        col(XrefRow.object_type) == object_type,
                    )
                ).one()
                raise XrefConflict(
                    system=system,
                    tenant=tenant,
                    object_type=object_type,
                    external_id=external_id,
                    enterprise_id=enterprise_id,
                    existing_enterprise_id=other.enterprise_id,
                    existing_external_id=other.external_id,
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

    def inbox_accept(self, source: str, event_id: str, payload_hash: str) -> bool:
        """Record a received event: True the first time, False for any duplicate delivery."""
        with self._write() as session:
            return self._insert_if_absent(
                session,
                InboxRow,
                {
                    "source": source,
                    "event_id": event_id,
                    "payload_hash": payload_hash,
                    "received_at": self._clock(),
                },
            )

    def inbox_set_workflow(self, source: str, event_id: str, workflow_id: str) -> None:
        """Remember which workflow an accepted event started or joined; raises ``NotFound``."""
        with self._write() as session:
            result = session.exec(
                update(InboxRow)
                .where(col(InboxRow.source) == source, col(InboxRow.event_id) == event_id)
                .values(workflow_id=workflow_id)
            )
            if result.rowcount == 0:
                raise NotFound("inbox", f"{source}/{event_id}")

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

        Raises ``AlreadyResolved`` (carrying the recorded resolution) if it was resolved
        before, even by a concurrent caller; ``NotFound`` if there is no such item.
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
            if result.rowcount == 0:
                raise AlreadyResolved(item_id, row.resolution)
            return row

    def escalate_exception(self, item_id: str, owner: str | None = None) -> ExceptionItemRow:
        """Mark an unresolved item escalated, optionally handing it to ``owner``.

        Escalating an escalated item again is allowed (a further hand-off). Raises
        ``AlreadyResolved`` or ``NotFound``.
        """
        values: dict[str, Any] = {"status": ExceptionStatus.ESCALATED.value}
        if owner is not None:
            values["owner"] = owner
        with self._write() as session:
            result = session.exec(
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
            if result.rowcount == 0:
                raise AlreadyResolved(item_id, row.resolution)
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


def _xref_by_external_key(
    system: str, tenant: str, object_type: str, external_id: str
) -> SelectOfScalar[XrefRow]:
    return select(XrefRow).where(
        col(XrefRow.system) == system,
        col(XrefRow.tenant) == tenant,
        col(XrefRow.object_type) == object_type,
        col(XrefRow.external_id) == external_id,
    )
