"""inbox replay: what the gateway's relay needs from the inbox, on SQLite and PostgreSQL.

A verified event is stored with its body and type, ``pending`` until its action takes effect;
pending events are listed in arrival order, marked processed idempotently (also when a sender's
retry and the relay race), and a business refusal marks one ``failed`` for good.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from sqlalchemy import Engine, text

from store import InboxState, NotFound, Store, make_engine, upgrade

Together = Callable[[int, Callable[[int], Any]], list[Any]]

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
def ticking(engine: Engine) -> Store:
    """A store whose clock advances 1 ms per timestamp taken (arrival order is unambiguous)."""
    ticks = count()
    return Store(engine, clock=lambda: T0 + timedelta(milliseconds=next(ticks)))


def test_an_accepted_event_keeps_its_body_and_type_and_is_pending(ticking: Store) -> None:
    body = '{"type":"opportunity.won","data":{"id":"006A"}}'
    assert ticking.inbox_accept("crm", "evt-1", "h1", event_type="opportunity.won", body=body)
    row = ticking.inbox_get("crm", "evt-1")
    assert row is not None
    assert (row.event_type, row.body, row.state) == ("opportunity.won", body, "pending")
    assert (row.attempts, row.last_error, row.processed_at) == (0, None, None)
    assert row.workflow_id is None
    # a duplicate delivery changes nothing, whatever it carries
    assert not ticking.inbox_accept("crm", "evt-1", "h2", event_type="x", body="{}")
    again = ticking.inbox_get("crm", "evt-1")
    assert again is not None and (again.body, again.payload_hash) == (body, "h1")


def test_pending_events_are_listed_in_arrival_order(ticking: Store) -> None:
    for source, event_id in [("psa", "b"), ("crm", "z"), ("psa", "a"), ("crm", "c")]:
        ticking.inbox_accept(source, event_id, "h", event_type="t", body="{}")
    ticking.inbox_set_workflow("crm", "z", "wf-z")

    pending = ticking.inbox_pending()
    assert [(r.source, r.event_id) for r in pending] == [("psa", "b"), ("psa", "a"), ("crm", "c")]
    assert [r.event_id for r in ticking.inbox_pending(2)] == ["b", "a"]
    # the newest can be left to the attempt that may still be under way
    cutoff = T0 + timedelta(milliseconds=2)
    assert [r.event_id for r in ticking.inbox_pending(received_before=cutoff)] == ["b"]
    assert ticking.inbox_list(InboxState.PROCESSED) == [ticking.inbox_get("crm", "z")]


def test_mark_processed_is_idempotent_and_keeps_the_first_time(ticking: Store) -> None:
    ticking.inbox_accept("psa", "e1", "h", event_type="time_entry.approved", body="{}")

    assert ticking.inbox_mark_processed("psa", "e1", "time-to-invoice/default/42") is True
    first = ticking.inbox_get("psa", "e1")
    assert first is not None and first.state == "processed" and first.processed_at is not None
    assert ticking.inbox_mark_processed("psa", "e1", "other") is False
    assert ticking.inbox_get("psa", "e1") == first  # nothing changed
    # set_workflow (the webhook path) keeps the first processed_at too
    ticking.inbox_set_workflow("psa", "e1", "time-to-invoice/default/42")
    again = ticking.inbox_get("psa", "e1")
    assert again is not None and again.processed_at == first.processed_at
    assert ticking.inbox_pending() == []
    with pytest.raises(NotFound):
        ticking.inbox_mark_processed("psa", "nope")


def test_an_event_without_a_workflow_can_be_marked_processed(store: Store) -> None:
    store.inbox_accept("psa", "q", "h", event_type="story.updated", body="{}")
    assert store.inbox_mark_processed("psa", "q") is True
    row = store.inbox_get("psa", "q")
    assert row is not None and row.state == "processed" and row.workflow_id is None


def test_failures_are_counted_and_a_permanent_one_leaves_the_backlog(ticking: Store) -> None:
    ticking.inbox_accept("crm", "a", "h", event_type="opportunity.won", body="{}")
    ticking.inbox_accept("crm", "b", "h", event_type="opportunity.won", body="{}")

    assert ticking.inbox_record_failure("crm", "a", "Temporal refused the start") == 1
    assert ticking.inbox_record_failure("crm", "a", "again") == 2
    row = ticking.inbox_get("crm", "a")
    assert row is not None and (row.state, row.attempts, row.last_error) == ("pending", 2, "again")

    assert ticking.inbox_record_failure("crm", "b", "unknown tenant", permanent=True) == 1
    assert [r.event_id for r in ticking.inbox_pending()] == ["a"]
    [failed] = ticking.inbox_list("failed")
    assert (failed.event_id, failed.state, failed.last_error) == ("b", "failed", "unknown tenant")
    # a failed event is not pending: a later failure report does not touch it ...
    assert ticking.inbox_record_failure("crm", "b", "late", permanent=True) is None
    # ... but a sender's retry that succeeds still marks it processed
    assert ticking.inbox_mark_processed("crm", "b", "wf-b") is True
    assert ticking.inbox_list("failed") == []
    # and a processed event is not counted as failing any more
    ticking.inbox_mark_processed("crm", "a", "wf-a")
    assert ticking.inbox_record_failure("crm", "a", "late") is None


def test_listing_and_backlog_can_keep_to_some_sources(ticking: Store) -> None:
    for source, event_id in [("hcm", "h1"), ("crm", "c1"), ("psa", "p1"), ("hcm", "h2")]:
        ticking.inbox_accept(source, event_id, "h")
    ticking.inbox_record_failure("hcm", "h2", "x", permanent=True)

    assert [r.event_id for r in ticking.inbox_pending(sources=("crm", "psa"))] == ["c1", "p1"]
    assert [r.event_id for r in ticking.inbox_list("failed", sources=["crm"])] == []
    webhooks = ticking.inbox_backlog(("crm", "psa"))
    assert (webhooks.pending, webhooks.failed) == (2, 0)
    assert webhooks.oldest_pending_at == T0 + timedelta(milliseconds=1)
    everything = ticking.inbox_backlog()
    assert (everything.pending, everything.failed) == (3, 1)


def test_backlog_counts_pending_and_failed_with_the_oldest_pending(ticking: Store) -> None:
    empty = ticking.inbox_backlog()
    assert (empty.pending, empty.oldest_pending_at, empty.failed) == (0, None, 0)

    for event_id in ("a", "b", "c", "d"):
        ticking.inbox_accept("crm", event_id, "h", event_type="t", body="{}")
    ticking.inbox_set_workflow("crm", "a", "wf")  # processed: not in the backlog
    ticking.inbox_record_failure("crm", "d", "refused", permanent=True)

    backlog = ticking.inbox_backlog()
    assert (backlog.pending, backlog.failed) == (2, 1)
    assert backlog.oldest_pending_at == T0 + timedelta(milliseconds=1)  # "b"
    assert backlog.oldest_pending_at.tzinfo is not None


def test_relay_and_sender_retries_racing_mark_an_event_processed_once(
    store: Store, together: Together
) -> None:
    store.inbox_accept("crm", "race", "h", event_type="opportunity.won", body="{}")
    outcomes = together(20, lambda i: store.inbox_mark_processed("crm", "race", f"wf-{i}"))
    assert outcomes.count(True) == 1 and outcomes.count(False) == 19
    row = store.inbox_get("crm", "race")
    assert row is not None and row.workflow_id == f"wf-{outcomes.index(True)}"


def test_the_migration_classifies_rows_received_before_it(database_url: str) -> None:
    """Rows from revision 0003 (no body): processed if they have a workflow id or come from
    the HCM poller; a webhook event without one is failed (it cannot be replayed), with the
    reason."""
    engine = make_engine(database_url)
    try:
        upgrade(database_url, "0003")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO inbox (source, event_id, received_at, payload_hash, workflow_id)"
                    " VALUES ('crm', 'done', :t, 'h', 'wf'), ('crm', 'lost', :t, 'h', NULL),"
                    " ('hcm', 'default/e1', :t, 'h', NULL)"
                ),
                # SQLite stores naive UTC; PostgreSQL gets the offset (whatever its TimeZone)
                {"t": "2026-01-01 00:00:00" + ("+00" if engine.dialect.name != "sqlite" else "")},
            )
        upgrade(database_url)
        store = Store(engine)
        done, lost = store.inbox_get("crm", "done"), store.inbox_get("crm", "lost")
        assert done is not None and (done.state, done.processed_at) == (
            "processed",
            datetime(2026, 1, 1, tzinfo=UTC),
        )
        assert lost is not None and lost.state == "failed" and lost.body is None
        assert lost.last_error is not None and "cannot be replayed" in lost.last_error
        hcm = store.inbox_get("hcm", "default/e1")  # the poller wrote it once handled
        assert hcm is not None and hcm.state == "processed"
        assert store.inbox_pending() == []
    finally:
        engine.dispose()
