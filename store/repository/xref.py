"""The ID map: link, reserve and find enterprise IDs across systems."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from store.errors import NotFound, XrefConflict
from store.models import (
    XrefRow,
    XrefStatus,
)
from store.repository._base import StoreBase


class XrefOps(StoreBase):
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

    def projects_known_as(self, external_id: str, *, limit: int = 10) -> list[str]:
        """Enterprise ids of the projects (``entity_type`` project) that some system knows by
        ``external_id`` (any system, tenant and object type; an enterprise id is not looked
        up here), in id order, at most ``limit`` (1..100)."""
        limit = max(1, min(limit, 100))
        query = (
            select(col(XrefRow.enterprise_id))
            .where(
                col(XrefRow.external_id) == external_id,
                col(XrefRow.entity_type) == "project",
            )
            .distinct()
            .order_by(col(XrefRow.enterprise_id))
            .limit(limit)
        )
        with self._read() as session:
            return [str(eid) for eid in session.exec(query).all()]

    def recent_projects(self, *, limit: int = 25, offset: int = 0) -> list[str]:
        """Enterprise ids of projects (``entity_type`` project), the most recently linked or
        synced first (then by id): at most ``limit`` (1..500) from ``offset``."""
        limit = max(1, min(limit, 500))
        latest = func.max(col(XrefRow.last_synced_at))
        query = (
            select(col(XrefRow.enterprise_id))
            .where(col(XrefRow.entity_type) == "project")
            .group_by(col(XrefRow.enterprise_id))
            .order_by(latest.desc(), col(XrefRow.enterprise_id))
            .offset(max(0, offset))
            .limit(limit)
        )
        with self._read() as session:
            return [str(eid) for eid in session.exec(query).all()]

    def xrefs_of(self, enterprise_ids: Iterable[str]) -> dict[str, list[XrefRow]]:
        """Every link of each of ``enterprise_ids`` (at most 500), by enterprise id, each list
        ordered by system and object type; ids without a link are absent."""
        ids = list(dict.fromkeys(enterprise_ids))[:500]
        found: dict[str, list[XrefRow]] = {}
        if not ids:
            return found
        with self._read() as session:
            rows = session.exec(
                select(XrefRow)
                .where(col(XrefRow.enterprise_id).in_(ids))
                .order_by(col(XrefRow.system), col(XrefRow.object_type))
            ).all()
        for row in rows:
            found.setdefault(row.enterprise_id, []).append(row)
        return found

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
