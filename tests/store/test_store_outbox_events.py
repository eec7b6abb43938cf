"""Domain events recorded with the facts: an exception opened, resolved or escalated (an alert),
time posted or reversed, a drift found. Each is one outbox row per fact however often the fact
is recorded, about the enterprise id, with data that validates against its contract. Runs on
SQLite and PostgreSQL like every store test."""

from __future__ import annotations

from typing import Any

from contracts.v1.events import EVENT_TYPES, to_cloud_event
from store import Store
from tests.store.test_reconciliation_store import drift
from tests.store.test_store_exceptions import item
from tests.store.test_store_time_postings import entry


def events(store: Store) -> list[tuple[str, str, dict[str, Any]]]:
    """Pending events as (type, subject, data), each data validated against its model."""
    found = []
    for row in store.pending_outbox(1000):
        assert row.id is not None
        event = to_cloud_event(row.id, row.event_type, row.key, row.payload, row.created_at)
        EVENT_TYPES[row.event_type].model_validate(event.data)
        found.append((row.event_type, event.subject, event.data))
    return found


def test_an_exception_opened_resolved_and_escalated_is_one_event_each(store: Store) -> None:
    context = {"enterprise_id": "EP-1", "time_entry_id": "te-9"}
    store.open_exception(item("exc-1", context=context))
    store.open_exception(item("exc-1", context=context, detail="retried"))
    store.escalate_exception("exc-1", owner="finance-lead")
    store.resolve_exception("exc-1", {"action": "skip"}, actor="alice")
    store.resolve_exception("exc-1", {"action": "skip"}, actor="alice")  # a retried activity
    store.escalate_exception("exc-1")  # the timer fires after the resolution: no alert

    got = events(store)

    assert [(t, s) for t, s, _ in got] == [
        ("exception.opened", "EP-1"),
        ("alert.raised", "EP-1"),
        ("exception.resolved", "EP-1"),
    ]
    assert got[0][2]["cause_code"] == "RATE_CARD_MISSING"
    assert got[1][2]["owner"] == "finance-lead"
    assert got[1][2]["context"]["enterprise_id"] == "EP-1"
    assert (got[2][2]["action"], got[2][2]["actor"]) == ("skip", "alice")


def test_time_posted_then_reversed_is_one_event_each_about_the_enterprise_project(
    store: Store,
) -> None:
    # linked as the saga links it (contracts.systems.System.PSA)
    store.link_xref("EP-9", "project", "PSA", "acme", "workspace", "P1")
    store.record_time_postings([entry(1, state="posting"), entry(2)])
    store.record_time_postings([{"entry_key": "time:1", "state": "posted", "erp_id": "TB-1"}])
    store.record_time_postings([{"entry_key": "time:1", "state": "posted", "erp_id": "TB-1"}])
    store.record_time_postings([{"entry_key": "time:1", "state": "reversed"}])
    store.record_time_postings([entry(3, project="P-unlinked")])

    got = events(store)

    assert [(t, s, d["entry_key"]) for t, s, d in got] == [
        ("time.posted", "EP-9", "time:2"),
        ("time.posted", "EP-9", "time:1"),
        ("time.reversed", "EP-9", "time:1"),
        ("time.posted", "P-unlinked", "time:3"),
    ]
    assert got[1][2]["hours"] == "8.000000" and got[1][2]["erp_id"] == "TB-1"


def test_a_drift_is_found_once_however_many_runs_see_it(store: Store) -> None:
    store.record_drifts([drift("a", "run1"), drift("b", "run1")])
    store.record_drifts([drift("a", "run2"), drift("c", "run2", project=None)])

    got = events(store)

    assert [(t, s, d["fingerprint"], d["run_id"]) for t, s, d in got] == [
        ("drift.found", "P1", "a", "run1"),
        ("drift.found", "P1", "b", "run1"),
        ("drift.found", "acme", "c", "run2"),
    ]
