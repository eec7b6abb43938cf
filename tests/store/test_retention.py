"""Retention: aged rows go in batches; young rows, and inbox events not processed and outbox
events not published, stay whatever their age."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from store import NewAuditEntry, RetentionTable, Store

RowCount = Callable[..., int]
NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=40)
YOUNG = NOW - timedelta(days=5)
CUTOFF = NOW - timedelta(days=30)


def at(engine: Engine, moment: datetime) -> Store:
    """A store whose clock stands at `moment` (the rows it writes are that old)."""
    return Store(engine, clock=lambda: moment)


def purge_all(store: Store, table: RetentionTable, limit: int = 1000) -> list[int]:
    """Batches until one comes back short; the count each batch deleted."""
    counts = [store.purge_batch(table, CUTOFF, limit)]
    while counts[-1] == limit:
        counts.append(store.purge_batch(table, CUTOFF, limit))
    return counts


def test_inbox_keeps_what_has_not_taken_effect(engine: Engine, row_count: RowCount) -> None:
    old, young = at(engine, OLD), at(engine, YOUNG)
    for event in ("done-1", "done-2", "pending", "failed"):
        assert old.inbox_accept("psa", f"old-{event}", "h")
    old.inbox_mark_processed("psa", "old-done-1", "wf-1")
    old.inbox_set_workflow("psa", "old-done-2", "wf-2")
    old.inbox_record_failure("psa", "old-failed", "refused", permanent=True)
    assert young.inbox_accept("crm", "young-done", "h")
    young.inbox_mark_processed("crm", "young-done")

    assert purge_all(young, RetentionTable.INBOX) == [2]

    assert old.inbox_get("psa", "old-done-1") is None
    assert old.inbox_get("psa", "old-done-2") is None
    kept = {
        (row.event_id, row.state)
        for state in ("pending", "failed", "processed")
        for row in old.inbox_list(state)
    }
    assert kept == {
        ("old-pending", "pending"),
        ("old-failed", "failed"),
        ("young-done", "processed"),
    }
    assert row_count("inbox") == 3
    assert purge_all(young, RetentionTable.INBOX) == [0]  # nothing more to do


def test_outbox_keeps_what_is_not_published(engine: Engine, row_count: RowCount) -> None:
    old, young = at(engine, OLD), at(engine, YOUNG)
    for key in ("sent", "unsent", "sent-lately"):
        assert old.add_outbox("project.provisioned", key, {"key": key})
    sent, _unsent, sent_lately = old.pending_outbox()
    assert sent.id is not None and sent_lately.id is not None
    old.mark_published([sent.id])
    young.mark_published([sent_lately.id])  # queued long ago, published five days ago

    assert purge_all(young, RetentionTable.OUTBOX) == [1]
    assert [row.key for row in old.pending_outbox()] == ["unsent"]
    assert row_count("outbox") == 2
    assert row_count("outbox", "key = :k", k="sent") == 0


def test_lineage_and_audit_go_by_age_in_batches(engine: Engine, row_count: RowCount) -> None:
    old, young = at(engine, OLD), at(engine, YOUNG)
    old.record_lineage_many(
        [
            {"entity_type": "project", "entity_key": f"P{i}", "fields": ["name"],
             "source_system": "CRM", "workflow_id": "wf", "activity": "a"}
            for i in range(25)
        ]
    )  # fmt: skip
    young.record_lineage("project", "P-young", ["name"], "CRM", None, "wf", None, "a")
    audit = NewAuditEntry(
        actor="ops", action="resolution", subject_kind="exception_item", subject_id="exc_1"
    )
    for _ in range(3):
        old.audit_begin(audit)
    kept = young.audit_begin(audit)

    assert purge_all(young, RetentionTable.LINEAGE, limit=10) == [10, 10, 5]
    assert [row.entity_key for row in young.lineage_for("project", "P-young")] == ["P-young"]
    assert row_count("lineage") == 1

    assert purge_all(young, RetentionTable.AUDIT, limit=2) == [2, 1]
    assert [row.id for row in young.list_audit().rows] == [kept.id]


def test_a_bad_purge_is_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        store.purge_batch(RetentionTable.AUDIT, datetime(2026, 1, 1))  # naive
    with pytest.raises(ValueError):
        store.purge_batch(RetentionTable.AUDIT, CUTOFF, limit=0)
    with pytest.raises(ValueError):
        store.purge_batch("xref", CUTOFF)  # live state has no retention
