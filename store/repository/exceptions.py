"""Exception items: open, resolve (once), escalate, list."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, update
from sqlmodel import col, select

from contracts.v1.events import AlertRaised, ExceptionOpened, ExceptionResolved
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
from store.repository.records import queue_events

PROJECT_CONTEXT_KEYS = (
    "enterprise_id",
    "enterprise_project_id",
    "psa_project_id",
    "project_id",
    "erp_project_id",
)
"""Context keys that name an item's project (any system's id for it)."""
EXCEPTION_PAGE_MAX = 500


@dataclass(frozen=True, slots=True)
class ExceptionFilter:
    """Which unresolved (open or escalated) items: every given field must match."""

    process: str | None = None
    cause_code: str | None = None
    owner: str | None = None
    project: str | None = None
    """Any of `PROJECT_CONTEXT_KEYS` in the item's context equals it."""
    opened_before: datetime | None = None
    """Opened at or before this moment (an aware datetime): items at least this old."""


@dataclass(frozen=True, slots=True)
class ExceptionPage:
    """One page of unresolved items, oldest first, with the totals of every matching item."""

    rows: list[ExceptionItemRow]
    total: int
    """Items matching the whole filter."""
    by_cause: dict[str, int] = field(default_factory=dict)
    """Matching items per cause code, counted without the filter's `cause_code`."""


def _conditions(where: ExceptionFilter, *, with_cause: bool = True) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [col(ExceptionItemRow.status).in_(_UNRESOLVED)]
    for column, value in (
        (ExceptionItemRow.process, where.process),
        (ExceptionItemRow.owner, where.owner),
        (ExceptionItemRow.cause_code, where.cause_code if with_cause else None),
    ):
        if value is not None:
            conditions.append(col(column) == value)
    if where.project is not None:
        context = col(ExceptionItemRow.context)
        conditions.append(
            or_(*(context[name].as_string() == where.project for name in PROJECT_CONTEXT_KEYS))
        )
    if where.opened_before is not None:
        if where.opened_before.utcoffset() is None:
            raise ValueError(f"naive datetime {where.opened_before!r}: give an aware datetime")
        conditions.append(col(ExceptionItemRow.created_at) <= where.opened_before)
    return conditions


def _subject(row: ExceptionItemRow) -> str:
    """The enterprise id an item is about: its project's, else the run that owns it."""
    for name in PROJECT_CONTEXT_KEYS:
        value = row.context.get(name)
        if value:
            return str(value)
    return row.workflow_id


class ExceptionOps(StoreBase):
    def open_exception(self, item: NewExceptionItem) -> ExceptionItemRow:
        """Record an open exception item; idempotent by ``item.id`` (an existing item is
        returned unchanged, whatever its status)."""
        values = {name: getattr(item, name) for name in NewExceptionItem.model_fields}
        values |= {"status": ExceptionStatus.OPEN.value, "created_at": self._clock()}
        with self._write() as session:
            opened = self._insert_if_absent(session, ExceptionItemRow, values)
            row = session.get(ExceptionItemRow, item.id)
            if row is None:  # cannot happen: inserted now or before, and items are never deleted
                raise NotFound("exception_item", item.id)
            if opened:
                data = ExceptionOpened(
                    item_id=row.id,
                    process=row.process,
                    cause_code=row.cause_code,
                    field=row.field,
                    owner=row.owner,
                    workflow_id=row.workflow_id,
                    opened_at=row.created_at,
                )
                event = ("exception.opened", row.id, _subject(row), data)
                queue_events(session, self._dialect, row.created_at, [event])
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
            if result.rowcount:
                resolved = ExceptionResolved(
                    item_id=row.id,
                    process=row.process,
                    cause_code=row.cause_code,
                    action=None if resolution.get("action") is None else str(resolution["action"]),
                    actor=actor,
                    resolved_at=row.resolved_at,
                )
                event = ("exception.resolved", row.id, _subject(row), resolved)
                queue_events(session, self._dialect, self._clock(), [event])
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
            if result.rowcount:  # an escalation reaches people as an alert event
                alert = AlertRaised(
                    alert="exception.escalated",
                    severity="warning",
                    process=row.process,
                    summary=f"{row.process}: {row.cause_code} unresolved, escalated to {row.owner}",
                    owner=row.owner,
                    item_id=row.id,
                    workflow_id=row.workflow_id,
                    context={"cause_code": row.cause_code, "field": row.field}
                    | {k: row.context[k] for k in PROJECT_CONTEXT_KEYS if k in row.context},
                )
                key = f"exception.escalated:{row.id}:{row.owner}"
                queue_events(
                    session,
                    self._dialect,
                    self._clock(),
                    [("alert.raised", key, _subject(row), alert)],
                )
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

    def unresolved_exception_page(
        self, where: ExceptionFilter, *, limit: int = 50, offset: int = 0
    ) -> ExceptionPage:
        """A page of the unresolved items matching `where`, oldest first (then by id), at most
        `limit` (1..`EXCEPTION_PAGE_MAX`) from `offset`, with the matching total and the count
        per cause: three indexed queries, whatever the number of items."""
        if not 1 <= limit <= EXCEPTION_PAGE_MAX:
            raise ValueError(f"limit must be 1..{EXCEPTION_PAGE_MAX}, not {limit}")
        if offset < 0:
            raise ValueError(f"offset must be >= 0, not {offset}")
        conditions = _conditions(where)
        page = (
            select(ExceptionItemRow)
            .where(*conditions)
            .order_by(col(ExceptionItemRow.created_at), col(ExceptionItemRow.id))
            .limit(limit)
            .offset(offset)
        )
        causes = (
            select(col(ExceptionItemRow.cause_code), func.count())
            .where(*_conditions(where, with_cause=False))
            .group_by(col(ExceptionItemRow.cause_code))
        )
        with self._read() as session:
            rows = list(session.exec(page).all())
            by_cause = {str(code): int(n) for code, n in session.exec(causes).all()}
            total = (
                sum(by_cause.values())
                if where.cause_code is None
                else by_cause.get(where.cause_code, 0)
            )
        return ExceptionPage(rows=rows, total=total, by_cause=dict(sorted(by_cause.items())))

    def unresolved_exceptions(self, where: ExceptionFilter) -> list[ExceptionItemRow]:
        """Every unresolved item matching `where`, oldest first (for a caller that must filter
        further, e.g. by an actor's scopes, before it pages)."""
        query = (
            select(ExceptionItemRow)
            .where(*_conditions(where))
            .order_by(col(ExceptionItemRow.created_at), col(ExceptionItemRow.id))
        )
        with self._read() as session:
            return list(session.exec(query).all())

    def exceptions_opened_since(
        self, since: datetime, *, limit: int = EXCEPTION_PAGE_MAX
    ) -> list[ExceptionItemRow]:
        """Items opened at or after `since` (an aware datetime), whatever their status, newest
        first, at most `limit` (1..`EXCEPTION_PAGE_MAX`)."""
        if not 1 <= limit <= EXCEPTION_PAGE_MAX:
            raise ValueError(f"limit must be 1..{EXCEPTION_PAGE_MAX}, not {limit}")
        if since.utcoffset() is None:
            raise ValueError(f"naive datetime {since!r}: give an aware datetime")
        query = (
            select(ExceptionItemRow)
            .where(col(ExceptionItemRow.created_at) >= since)
            .order_by(col(ExceptionItemRow.created_at).desc(), col(ExceptionItemRow.id))
            .limit(limit)
        )
        with self._read() as session:
            return list(session.exec(query).all())
