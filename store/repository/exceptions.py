"""Exception items: open, resolve (once), escalate, list."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from store.errors import AlreadyResolved, NotFound
from store.models import (
    ExceptionItemRow,
    ExceptionStatus,
    NewExceptionItem,
)
from store.repository._base import (
    _UNRESOLVED,
    StoreBase,
)


class ExceptionOps(StoreBase):
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
