"""The webhook inbox: accept once per event, the relay's backlog and outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Table,
    bindparam,
    func,
    literal_column,
    update,
)
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

from store.errors import NotFound
from store.models import (
    InboxBacklog,
    InboxRow,
    InboxState,
)
from store.repository._base import StoreBase

_INBOX: Table = InboxRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """A received event as ``inbox_accept_many`` records it (``inbox_accept``'s arguments)."""

    source: str
    event_id: str
    payload_hash: str
    event_type: str | None = None
    body: str | None = None


@dataclass(frozen=True, slots=True)
class InboxProcessed:
    """An event whose action took effect, with the workflow it started or joined, if any."""

    source: str
    event_id: str
    workflow_id: str | None = None


class InboxOps(StoreBase):
    def inbox_accept_many(self, events: Sequence[InboxEvent]) -> list[bool]:
        """``inbox_accept`` for many events in one transaction: for each, in order, True if it
        was recorded now, False if it was there already (an event given twice is recorded
        once, the second is a duplicate). All or nothing: an error writes none of them."""
        if not events:
            return []
        insert_ = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        t = _INBOX.c
        stmt: Any = insert_(_INBOX).on_conflict_do_nothing().returning(literal_column("1"))
        now = self._clock()
        firsts: list[bool] = []
        with self._write_conn() as conn:
            for e in events:
                row = conn.execute(
                    stmt,
                    {
                        t.source.key: e.source,
                        t.event_id.key: e.event_id,
                        t.payload_hash.key: e.payload_hash,
                        t.received_at.key: now,
                        t.event_type.key: e.event_type,
                        t.body.key: e.body,
                        t.state.key: InboxState.PENDING.value,
                        t.attempts.key: 0,
                    },
                ).first()
                firsts.append(row is not None)
        return firsts

    def inbox_processed_many(self, marks: Sequence[InboxProcessed]) -> None:
        """Mark many events processed in one transaction: one with a workflow id as
        ``inbox_set_workflow`` does (the id recorded, ``processed_at`` keeps the first time),
        one without as ``inbox_mark_processed`` does (a processed event is left as it is). An
        event the inbox does not hold changes nothing."""
        if not marks:
            return
        t = _INBOX.c
        now = self._clock()
        # Two statements, each run once over all its rows (executemany): one compiled UPDATE
        # instead of one built and compiled per event (the gateway marks each webhook).
        joined = [
            {"b_source": m.source, "b_event_id": m.event_id, "b_workflow_id": m.workflow_id}
            for m in marks
            if m.workflow_id is not None
        ]
        plain = [
            {"b_source": m.source, "b_event_id": m.event_id} for m in marks if m.workflow_id is None
        ]
        key = (t.source == bindparam("b_source")) & (t.event_id == bindparam("b_event_id"))
        when = bindparam("b_now", now, type_=t.processed_at.type)
        processed = InboxState.PROCESSED.value
        with self._write_conn() as conn:
            if joined:
                conn.execute(
                    update(_INBOX)
                    .where(key)
                    .values(
                        workflow_id=bindparam("b_workflow_id"),
                        state=processed,
                        processed_at=func.coalesce(t.processed_at, when),
                    ),
                    joined,
                )
            if plain:
                conn.execute(
                    update(_INBOX)
                    .where(key, t.state != processed)
                    .values(state=processed, processed_at=when),
                    plain,
                )

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


def _inbox_key(source: str, event_id: str) -> Any:
    return (col(InboxRow.source) == source) & (col(InboxRow.event_id) == event_id)
