"""inbox: webhook events are accepted once, whatever the concurrency of redeliveries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from store import NotFound, Store

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
