"""The audit trail: attempted then completed, bounded and scrubbed, read newest first in pages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from store import (
    AUDIT_PAGE_MAX,
    AuditOutcome,
    AuditRow,
    NewAuditEntry,
    NotFound,
    Store,
)
from store.repository.audit import AUDIT_JSON_MAX, AUDIT_TEXT_MAX, REDACTED

Together = Callable[[int, Callable[[int], Any]], list[Any]]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def entry(**fields: Any) -> NewAuditEntry:
    values: dict[str, Any] = {
        "actor": "dana.manager",
        "actor_roles": ["delivery_manager"],
        "action": "resolution",
        "subject_kind": "exception_item",
        "subject_id": "exc_1",
        "tenant": "acme",
        "request": {"action": "skip", "note": "checked with the client"},
        "request_id": "req-1",
    }
    return NewAuditEntry(**(values | fields))


def test_attempted_then_completed_once(store: Store) -> None:
    begun = store.audit_begin(entry())
    assert begun.id is not None
    assert begun.outcome == AuditOutcome.ATTEMPTED.value
    assert begun.status_code is None and begun.completed_at is None
    assert begun.at.tzinfo is not None

    done = store.audit_complete(begun.id, AuditOutcome.ACCEPTED, 200, {"item_id": "exc_1"})
    assert (done.outcome, done.status_code, done.result) == ("accepted", 200, {"item_id": "exc_1"})
    assert done.completed_at is not None and done.completed_at >= done.at

    # A retried completion (its first commit went through) changes nothing.
    again = store.audit_complete(begun.id, AuditOutcome.FAILED, 503, {"code": "x"})
    assert (again.outcome, again.status_code, again.result) == ("accepted", 200, done.result)
    stored = store.get_audit(begun.id)
    assert stored is not None
    assert stored.request == {"action": "skip", "note": "checked with the client"}
    assert (stored.actor, stored.actor_roles, stored.tenant, stored.request_id) == (
        "dana.manager", ["delivery_manager"], "acme", "req-1",
    )  # fmt: skip

    with pytest.raises(NotFound):
        store.audit_complete(begun.id + 1000, AuditOutcome.ACCEPTED, 200)
    with pytest.raises(ValueError):
        store.audit_complete(begun.id, AuditOutcome.ATTEMPTED, 200)


def test_record_in_one_write(store: Store) -> None:
    row = store.record_audit(
        entry(request={"note": "a NUL \x00 in a note"}),
        AuditOutcome.REFUSED,
        409,
        {"code": "already_resolved"},
    )
    assert row.id is not None
    stored = store.get_audit(row.id)
    assert stored is not None and stored.request == {"note": "a NUL \x00 in a note"}
    assert (row.outcome, row.status_code, row.result) == (
        "refused", 409, {"code": "already_resolved"},
    )  # fmt: skip
    assert row.completed_at == row.at


def test_secrets_never_stored_and_sizes_bounded(store: Store) -> None:
    request = {
        "note": "x" * (AUDIT_JSON_MAX * 2),
        "Authorization": "Bearer dev-ops-token",
        "nested": {"api-key": "k", "client_secret": "s", "keep": [1, {"password": "p"}]},
    }
    row = store.audit_begin(entry(request=request, subject_id="9\x00" * 10_000))
    assert row.request["truncated"] is True
    assert row.request["size"] > AUDIT_JSON_MAX
    assert len(row.request["preview"]) <= AUDIT_JSON_MAX
    assert "dev-ops-token" not in row.request["preview"]
    assert len(row.subject_id) == AUDIT_TEXT_MAX and "\x00" not in row.subject_id

    small = store.audit_begin(entry(request={k: v for k, v in request.items() if k != "note"}))
    assert small.request == {
        "Authorization": REDACTED,
        "nested": {
            "api-key": REDACTED,
            "client_secret": REDACTED,
            "keep": [1, {"password": REDACTED}],
        },
    }
    assert small.id is not None
    done = store.audit_complete(small.id, "accepted", 200, {"token": "t", "ok": True})
    assert done.result == {"token": REDACTED, "ok": True}


def test_filters_and_pages_newest_first(engine: Engine) -> None:
    clock = Clock(T0)
    store = Store(engine, clock=clock)
    made: list[AuditRow] = []
    for i in range(23):
        clock.now = T0 + timedelta(minutes=i)
        actor = "ops" if i % 2 else "dana.manager"
        action = "change_order.approve" if i % 3 == 0 else "resolution"
        made.append(store.audit_begin(entry(actor=actor, action=action, subject_id=f"s{i % 5}")))
    ids = [row.id for row in made]

    page = store.list_audit()
    assert [r.id for r in page.rows] == ids[::-1] and page.next_cursor is None

    seen: list[int | None] = []
    cursor = None
    while True:
        page = store.list_audit(limit=5, cursor=cursor)
        seen.extend(r.id for r in page.rows)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids[::-1]  # every row once, newest first

    ops = store.list_audit(actor="ops")
    assert [r.id for r in ops.rows] == [ids[i] for i in range(23) if i % 2][::-1]
    approvals = store.list_audit(action="change_order.approve", actor="ops")
    assert {r.id for r in approvals.rows} == {ids[i] for i in (3, 9, 15, 21)}
    s2 = store.list_audit(subject_kind="exception_item", subject_id="s2")
    assert {r.id for r in s2.rows} == {ids[i] for i in (2, 7, 12, 17, 22)}
    assert store.list_audit(subject_kind="change_order", subject_id="s2").rows == []
    window = store.list_audit(
        since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=13)
    )  # since inclusive, until exclusive
    assert [r.id for r in window.rows] == [ids[12], ids[11], ids[10]]


def test_reads_are_bounded(store: Store) -> None:
    for _ in range(3):
        store.audit_begin(entry())
    assert len(store.list_audit(limit=AUDIT_PAGE_MAX).rows) == 3
    for bad in (0, -1, AUDIT_PAGE_MAX + 1):
        with pytest.raises(ValueError):
            store.list_audit(limit=bad)
    with pytest.raises(ValueError):
        store.list_audit(since=datetime(2026, 1, 1))  # naive


def test_concurrent_decisions_each_get_their_row(store: Store, together: Together) -> None:
    outcomes = together(8, lambda i: store.audit_begin(entry(subject_id=f"exc_{i}")))
    ids = {row.id for row in outcomes if isinstance(row, AuditRow)}
    assert len(ids) == 8
    page = store.list_audit(limit=10)
    assert {r.subject_id for r in page.rows} == {f"exc_{i}" for i in range(8)}
