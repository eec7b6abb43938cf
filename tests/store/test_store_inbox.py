"""inbox: webhook events are accepted once, whatever the concurrency of redeliveries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from store import InboxEvent, InboxProcessed, NotFound, Store

Together = Callable[[int, Callable[[int], Any]], list[Any]]
RowCount = Callable[..., int]


def test_first_delivery_accepted_duplicates_refused(store: Store, row_count: RowCount) -> None:
    assert store.inbox_accept("crm", "evt-1", "sha256:aa") is True
    assert store.inbox_accept("crm", "evt-1", "sha256:aa") is False
    assert store.inbox_accept("crm", "evt-1", "sha256:bb") is False
    assert store.inbox_accept("hcm", "evt-1", "sha256:aa") is True  # other source, other key
    assert row_count("inbox") == 2
    row = store.inbox_get("crm", "evt-1")
    assert row is not None and row.payload_hash == "sha256:aa"
    assert row.received_at.tzinfo is not None


def test_set_workflow(store: Store) -> None:
    store.inbox_accept("crm", "evt-1", "h")
    store.inbox_set_workflow("crm", "evt-1", "opportunity-to-project/acme/006A1")

    row = store.inbox_get("crm", "evt-1")
    assert row is not None and row.workflow_id == "opportunity-to-project/acme/006A1"
    assert store.inbox_get("crm", "evt-2") is None
    with pytest.raises(NotFound):
        store.inbox_set_workflow("crm", "evt-2", "wf")


def test_concurrent_deliveries_accept_exactly_one(
    store: Store, row_count: RowCount, together: Together
) -> None:
    outcomes = together(50, lambda _: store.inbox_accept("crm", "evt-race", "h"))

    assert outcomes.count(True) == 1
    assert outcomes.count(False) == 49
    assert row_count("inbox") == 1


# -- many at once (the gateway's group commit) ----------------------------------------------


def test_accept_many_is_accept_in_order_in_one_transaction(
    store: Store, row_count: RowCount
) -> None:
    store.inbox_accept("psa", "evt-0", "h0")

    firsts = store.inbox_accept_many(
        [
            InboxEvent("psa", "evt-0", "h0"),  # there already
            InboxEvent("psa", "evt-1", "h1", event_type="time_entry.approved", body="{}"),
            InboxEvent("psa", "evt-1", "h1"),  # the same event twice in one batch
            InboxEvent("crm", "evt-1", "h1"),  # another source, another key
        ]
    )

    assert firsts == [False, True, False, True]
    assert row_count("inbox") == 3
    row = store.inbox_get("psa", "evt-1")
    assert row is not None
    assert (row.state, row.event_type, row.body, row.attempts) == (
        "pending",
        "time_entry.approved",
        "{}",
        0,
    )
    assert store.inbox_accept_many([]) == []


def test_accept_many_concurrently_accepts_each_event_once(
    store: Store, row_count: RowCount, together: Together
) -> None:
    def deliver(i: int) -> list[bool]:
        return store.inbox_accept_many([InboxEvent("psa", f"evt-{n}", "h") for n in range(10)])

    results = together(6, deliver)

    assert [sum(r[n] for r in results) for n in range(10)] == [1] * 10
    assert row_count("inbox") == 10


def test_processed_many_marks_as_the_single_calls_do(store: Store) -> None:
    for n in range(4):
        store.inbox_accept("psa", f"evt-{n}", "h")
    store.inbox_set_workflow("psa", "evt-3", "wf-first")
    first_done = store.inbox_get("psa", "evt-3")
    assert first_done is not None

    store.inbox_processed_many(
        [
            InboxProcessed("psa", "evt-0", "time-to-invoice/P1"),
            InboxProcessed("psa", "evt-1"),
            InboxProcessed("psa", "evt-3", "wf-again"),
            InboxProcessed("psa", "evt-404", "wf"),  # unknown: nothing to mark
        ]
    )

    rows = {n: store.inbox_get("psa", f"evt-{n}") for n in range(4)}
    assert {n: (r.state, r.workflow_id) for n, r in rows.items() if r is not None} == {
        0: ("processed", "time-to-invoice/P1"),
        1: ("processed", None),
        2: ("pending", None),
        3: ("processed", "wf-again"),
    }
    assert rows[3] is not None and rows[3].processed_at == first_done.processed_at
    assert store.inbox_get("psa", "evt-404") is None
    assert [r.event_id for r in store.inbox_pending()] == ["evt-2"]
