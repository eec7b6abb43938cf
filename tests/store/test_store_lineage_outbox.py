"""Lineage (append-only provenance) and outbox (idempotent event recording)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from store import Store

Together = Callable[[int, Callable[[int], Any]], list[Any]]
RowCount = Callable[..., int]


def test_lineage_round_trip(store: Store, row_count: RowCount) -> None:
    first = store.record_lineage(
        "project", "01JPRJ", ["name", "contract_value"], "CRM", "2026-05-01T10:00:00Z",
        "opp-to-project/acme/006A1", "run-1", "create_psa_project",
    )  # fmt: skip
    store.record_lineage(
        "project", "01JPRJ", ["budget"], "ERP", None, "change-order/CO-1", None, "revise_budget"
    )
    store.record_lineage("project", "01JOTHER", ["name"], "CRM", "v1", "wf", "run", "act")

    rows = store.lineage_for("project", "01JPRJ")

    assert first.id is not None and first.recorded_at.tzinfo is not None
    assert [(r.fields, r.source_system, r.source_version, r.activity) for r in rows] == [
        (["name", "contract_value"], "CRM", "2026-05-01T10:00:00Z", "create_psa_project"),
        (["budget"], "ERP", None, "revise_budget"),
    ]
    assert rows[0].id == first.id and rows[0].workflow_id == "opp-to-project/acme/006A1"
    assert store.lineage_for("worker", "01JPRJ") == []
    assert row_count("lineage") == 3


def test_outbox_is_idempotent_and_publishes_once(store: Store, row_count: RowCount) -> None:
    payload = {"enterprise_project_id": "01JPRJ", "systems": {"PSA": "77", "ERP": "PRJ-1"}}

    assert store.add_outbox("project.provisioned", "01JPRJ", payload) is True
    assert store.add_outbox("project.provisioned", "01JPRJ", {"other": 1}) is False
    assert store.add_outbox("project.closed", "01JPRJ", {}) is True
    assert row_count("outbox") == 2

    pending = store.pending_outbox(limit=10)
    assert [(p.event_type, p.payload) for p in pending] == [
        ("project.provisioned", payload),
        ("project.closed", {}),
    ]
    assert [p.event_type for p in store.pending_outbox(limit=1)] == ["project.provisioned"]

    first_id = pending[0].id
    assert first_id is not None
    assert store.mark_published([first_id]) == 1
    assert store.mark_published([first_id]) == 0
    assert store.mark_published([]) == 0
    assert [p.event_type for p in store.pending_outbox()] == ["project.closed"]
    assert row_count("outbox", "published_at IS NOT NULL") == 1


def test_concurrent_outbox_records_once(
    store: Store, row_count: RowCount, together: Together
) -> None:
    outcomes = together(30, lambda i: store.add_outbox("project.provisioned", "K", {"i": i}))

    assert outcomes.count(True) == 1
    assert row_count("outbox") == 1
