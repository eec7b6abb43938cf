"""Exception items: open (idempotent) -> escalate -> resolve once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from store import AlreadyResolved, NewExceptionItem, NotFound, Store

Together = Callable[[int, Callable[[int], Any]], list[Any]]
RowCount = Callable[..., int]


def item(item_id: str = "exc-1", **kw: Any) -> NewExceptionItem:
    fields: dict[str, Any] = {
        "id": item_id,
        "workflow_id": "time-to-invoice/acme/2026-05",
        "run_id": "run-1",
        "process": "time_to_invoice",
        "cause_code": "RATE_CARD_MISSING",
        "field": "role",
        "detail": "no rate for role Architect on 2026-05-04",
        "owner": "finance",
        "context": {"time_entry_id": "te-9", "project": "01J0000000000000000000000"},
    }
    return NewExceptionItem(**(fields | kw))


def test_open_is_idempotent_by_id(store: Store, row_count: RowCount) -> None:
    first = store.open_exception(item())
    again = store.open_exception(item(detail="a retried activity reports it again"))

    assert first.status == again.status == "open"
    assert again.detail == first.detail  # the first report stands
    assert again.created_at == first.created_at
    assert first.context == {"time_entry_id": "te-9", "project": "01J0000000000000000000000"}
    assert first.created_at.tzinfo is not None and first.resolved_at is None
    assert row_count("exception_item") == 1


def test_lifecycle_open_resolve_and_double_resolve_refused(
    store: Store, row_count: RowCount
) -> None:
    store.open_exception(item())

    resolved = store.resolve_exception(
        "exc-1", {"action": "retry_with_data", "data": {"role": "Senior Architect"}}, "dm@acme"
    )

    assert resolved.status == "resolved"
    assert resolved.resolved_at is not None and resolved.resolved_at >= resolved.created_at
    assert resolved.resolution == {
        "action": "retry_with_data",
        "data": {"role": "Senior Architect"},
        "actor": "dm@acme",
    }
    with pytest.raises(AlreadyResolved) as caught:
        store.resolve_exception("exc-1", {"action": "skip"}, "someone-else")
    assert caught.value.resolution is not None
    assert caught.value.resolution["actor"] == "dm@acme"
    stored = store.get_exception("exc-1")
    assert stored is not None and stored.resolution == resolved.resolution
    assert row_count("exception_item", "status = 'resolved'") == 1


def test_escalate_then_resolve(store: Store) -> None:
    store.open_exception(item())

    escalated = store.escalate_exception("exc-1", owner="finance-manager")
    assert (escalated.status, escalated.owner) == ("escalated", "finance-manager")
    assert store.escalate_exception("exc-1").owner == "finance-manager"

    store.resolve_exception("exc-1", {"action": "skip"}, "fm@acme")
    late = store.escalate_exception("exc-1", owner="ops")  # the escalation timer fired late
    assert (late.status, late.owner) == ("resolved", "finance-manager")


def test_unknown_item(store: Store) -> None:
    assert store.get_exception("nope") is None
    with pytest.raises(NotFound):
        store.resolve_exception("nope", {"action": "skip"}, "x")
    with pytest.raises(NotFound):
        store.escalate_exception("nope")


def test_list_filters(store: Store) -> None:
    store.open_exception(item("a"))
    store.open_exception(item("b", process="worker_termination", workflow_id="wt-1"))
    store.open_exception(item("c"))
    store.resolve_exception("c", {"action": "skip"}, "x")

    assert [i.id for i in store.list_exceptions()] == ["a", "b", "c"]
    assert [i.id for i in store.list_exceptions(status="open")] == ["a", "b"]
    assert [i.id for i in store.list_exceptions(process="time_to_invoice")] == ["a", "c"]
    assert [i.id for i in store.list_exceptions(workflow_id="wt-1")] == ["b"]
    assert store.list_exceptions(status="open", process="worker_termination")[0].id == "b"


def test_concurrent_resolutions_exactly_one_wins(
    store: Store, row_count: RowCount, together: Together
) -> None:
    store.open_exception(item())

    outcomes = together(
        20, lambda i: store.resolve_exception("exc-1", {"action": "skip"}, f"actor-{i}")
    )

    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(o, AlreadyResolved) for o in outcomes if o not in winners)
    stored = store.get_exception("exc-1")
    assert stored is not None and stored.resolution == winners[0].resolution
    assert row_count("exception_item", "status = 'resolved'") == 1


def test_escalating_a_resolved_item_is_a_no_op(store: Store) -> None:
    """A workflow's escalation timer can fire just after a person resolved the item: the
    escalation returns the resolved row unchanged instead of failing the run."""
    store.open_exception(item())
    resolved = store.resolve_exception("exc-1", {"action": "skip"}, "fm@acme")

    late = store.escalate_exception("exc-1", owner="ops")

    assert late.status == "resolved"
    assert late.owner == "finance"
    assert late.resolution == resolved.resolution == {"action": "skip", "actor": "fm@acme"}
    assert late.resolved_at == resolved.resolved_at
    assert store.get_exception("exc-1") == late


def test_resolving_again_with_the_same_resolution_returns_the_row(store: Store) -> None:
    """An activity retried after its first attempt committed records nothing new; only a
    different resolution (or actor) is refused."""
    store.open_exception(item())
    decision = {"action": "retry_with_data", "data": {"role": "Senior Architect"}, "n": [1, 2]}
    first = store.resolve_exception("exc-1", decision, "dm@acme")

    again = store.resolve_exception("exc-1", dict(decision), "dm@acme")

    assert again.status == "resolved"
    assert (again.resolution, again.resolved_at) == (first.resolution, first.resolved_at)
    with pytest.raises(AlreadyResolved) as caught:
        store.resolve_exception("exc-1", {"action": "abandon"}, "dm@acme")
    assert caught.value.resolution == first.resolution
    with pytest.raises(AlreadyResolved):
        store.resolve_exception("exc-1", decision, "someone-else")


def test_concurrent_escalations_and_a_resolution_never_fail(
    store: Store, row_count: RowCount, together: Together
) -> None:
    store.open_exception(item())

    def act(i: int) -> str:
        if i == 0:
            return store.resolve_exception("exc-1", {"action": "skip"}, "fm@acme").status
        return store.escalate_exception("exc-1", owner=f"ops-{i}").status

    outcomes = together(20, act)

    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    assert outcomes[0] == "resolved"
    assert set(outcomes[1:]) <= {"escalated", "resolved"}
    stored = store.get_exception("exc-1")
    assert stored is not None and stored.status == "resolved"
    assert stored.resolution == {"action": "skip", "actor": "fm@acme"}
    assert row_count("exception_item") == 1
