"""The store activities a workflow calls, run against the store under concurrency: the races
that must not fail a saga (reserving a shared id, escalating or resolving a settled item)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any

from activities.store import (
    EscalateExceptionItem,
    ReserveEnterpriseId,
    ResolveExceptionItem,
    StoreActivities,
)
from contracts.ids import mint_ulid
from store import NewExceptionItem, Store

Together = Callable[[int, Callable[[int], Any]], list[Any]]
RowCount = Callable[..., int]


def new_eid() -> str:
    return mint_ulid(int(time.time() * 1000), secrets.randbits(80))


def open_item(store: Store, item_id: str = "exc-1") -> None:
    store.open_exception(
        NewExceptionItem(
            id=item_id,
            workflow_id="opportunity-to-project/acme/006A1",
            process="opportunity_to_project",
            cause_code="COST_CENTER_INVALID",
            field="cost_center",
            detail="cost center CC-9 is closed",
            owner="delivery_manager",
        )
    )


def test_concurrent_reserve_activities_for_one_account_all_get_one_id(
    store: Store, row_count: RowCount, together: Together
) -> None:
    """Two (here 30) deals of one customer won at once: every saga gets the same customer id."""
    acts = StoreActivities(store, {"CRM": "acme"})
    candidates = [new_eid() for _ in range(30)]

    def reserve(i: int) -> str:
        request = ReserveEnterpriseId(
            entity_type="customer",
            system="CRM",
            tenant="acme",
            object_type="Account",
            external_id="001ACME",
            candidate=candidates[i],
        )
        return asyncio.run(acts.reserve_enterprise_id(request))

    outcomes = together(30, reserve)

    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    assert len(set(outcomes)) == 1 and outcomes[0] in candidates
    assert row_count("xref") == 1


def test_escalate_activity_on_a_resolved_item_does_not_raise(store: Store) -> None:
    acts = StoreActivities(store, {})
    open_item(store)
    store.resolve_exception("exc-1", {"action": "retry"}, "dm@acme")

    asyncio.run(acts.escalate_exception(EscalateExceptionItem(item_id="exc-1", owner="ops")))

    row = store.get_exception("exc-1")
    assert row is not None
    assert (row.status, row.owner) == ("resolved", "delivery_manager")


def test_resolve_activity_retried_or_raced_returns_and_keeps_the_first_resolution(
    store: Store, row_count: RowCount, together: Together
) -> None:
    """Callers rely on the activity returning once the item is resolved, by whomever (a retry
    of a committed attempt; a rescind withdrawing an item a person resolved meanwhile)."""
    acts = StoreActivities(store, {})
    open_item(store)

    def resolve(i: int) -> None:
        request = ResolveExceptionItem(item_id="exc-1", actor=f"actor-{i}", resolution={"n": i})
        asyncio.run(acts.resolve_exception(request))

    outcomes = together(20, resolve)

    assert outcomes == [None] * 20
    row = store.get_exception("exc-1")
    assert row is not None and row.status == "resolved" and row.resolution is not None
    assert row.resolution == {"n": int(row.resolution["actor"].split("-")[1]), **row.resolution}
    assert row_count("exception_item", "status = 'resolved'") == 1
