"""sync_state: poll cursors and run pointers survive restarts; the last writer wins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from store import Store

Together = Callable[[int, Callable[[int], Any]], list[Any]]
RowCount = Callable[..., int]


def test_put_then_overwrite(store: Store, row_count: RowCount) -> None:
    assert store.get_state("hcm.changed_workers/acme") is None
    store.put_state("hcm.changed_workers/acme", "2026-05-01T10:00:00+00:00")
    assert store.get_state("hcm.changed_workers/acme") == "2026-05-01T10:00:00+00:00"
    store.put_state("hcm.changed_workers/acme", "2026-05-01T10:05:00+00:00")
    assert store.get_state("hcm.changed_workers/acme") == "2026-05-01T10:05:00+00:00"
    store.put_state("hcm.changed_workers/other", "x")
    assert row_count("sync_state") == 2


def test_concurrent_writers_leave_one_row(
    store: Store, row_count: RowCount, together: Together
) -> None:
    together(6, lambda i: store.put_state("cursor", f"v{i}"))
    assert row_count("sync_state") == 1
    assert store.get_state("cursor") in {f"v{i}" for i in range(6)}
