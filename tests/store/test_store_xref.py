"""xref: idempotent, race-safe links between enterprise ids and each system's objects."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any

import pytest

from contracts.ids import mint_ulid
from store import NotFound, Store, XrefConflict, XrefRow

Together = Callable[[int, Callable[[int], Any]], list[Any]]
RowCount = Callable[..., int]


def new_eid() -> str:
    return mint_ulid(int(time.time() * 1000), secrets.randbits(80))


def link(store: Store, enterprise_id: str, external_id: str = "006A1", **kw: Any) -> XrefRow:
    return store.link_xref(
        enterprise_id, "project", "CRM", "acme", "Opportunity", external_id, **kw
    )


def test_link_then_find(store: Store, row_count: RowCount) -> None:
    eid = new_eid()
    row = link(store, eid, remote_version="v1")

    assert row.id is not None
    assert (row.enterprise_id, row.status, row.remote_version) == (eid, "active", "v1")
    assert row.last_synced_at.tzinfo is not None
    assert row.last_synced_at.utcoffset() == UTC.utcoffset(None)
    assert store.find_enterprise_id("CRM", "acme", "Opportunity", "006A1") == eid
    assert store.find_enterprise_id("CRM", "other-tenant", "Opportunity", "006A1") is None
    assert row_count("xref") == 1


def test_relink_same_enterprise_id_is_idempotent_and_refreshes(
    store: Store, row_count: RowCount
) -> None:
    eid = new_eid()
    first = link(store, eid, remote_version="v1")
    again = link(store, eid, status="archived")

    assert again.id == first.id
    assert again.status == "archived"
    assert again.remote_version == "v1"  # None keeps the known version
    assert again.last_synced_at >= first.last_synced_at
    assert link(store, eid, remote_version="v2").remote_version == "v2"
    assert row_count("xref") == 1


def test_external_object_linked_to_other_enterprise_id_conflicts(
    store: Store, row_count: RowCount
) -> None:
    first, second = new_eid(), new_eid()
    link(store, first)

    with pytest.raises(XrefConflict) as caught:
        link(store, second)

    assert caught.value.existing_enterprise_id == first
    assert caught.value.enterprise_id == second
    assert store.find_enterprise_id("CRM", "acme", "Opportunity", "006A1") == first
    assert row_count("xref") == 1


def test_enterprise_id_already_linked_to_other_object_of_same_type_conflicts(
    store: Store, row_count: RowCount
) -> None:
    eid = new_eid()
    link(store, eid, external_id="006A1")

    with pytest.raises(XrefConflict) as caught:
        link(store, eid, external_id="006B2")

    assert caught.value.existing_external_id == "006A1"
    assert row_count("xref") == 1


def test_links_across_systems_and_lookups(store: Store) -> None:
    eid = new_eid()
    link(store, eid)
    store.link_xref(eid, "project", "PSA", "acme", "workspace", "77")
    store.link_xref(eid, "project", "ERP", "acme", "job", "PRJ-1")

    assert [(x.system, x.external_id) for x in store.xrefs_for(eid)] == [
        ("CRM", "006A1"),
        ("ERP", "PRJ-1"),
        ("PSA", "77"),
    ]
    found = store.find_xref(eid, "PSA", "workspace")
    assert found is not None and found.external_id == "77"
    assert store.find_xref(eid, "HCM", "worker") is None
    assert store.xrefs_for(new_eid()) == []


def test_set_xref_status(store: Store, row_count: RowCount) -> None:
    eid = new_eid()
    store.link_xref(eid, "project", "PSA", "acme", "workspace", "77")

    row = store.set_xref_status("PSA", "acme", "workspace", "77", "archived")

    assert row.status == "archived"
    assert row_count("xref", "status = 'archived'") == 1
    with pytest.raises(NotFound):
        store.set_xref_status("PSA", "acme", "workspace", "missing", "archived")


def test_fifty_concurrent_links_of_one_key_make_one_row(
    store: Store, row_count: RowCount, together: Together
) -> None:
    eid = new_eid()

    outcomes = together(50, lambda _: link(store, eid).enterprise_id)

    assert outcomes == [eid] * 50
    assert row_count("xref") == 1


def test_concurrent_links_with_different_enterprise_ids_one_wins(
    store: Store, row_count: RowCount, together: Together
) -> None:
    candidates = [new_eid() for _ in range(20)]

    outcomes = together(20, lambda i: link(store, candidates[i]).enterprise_id)

    winners = [o for o in outcomes if isinstance(o, str)]
    losers = [o for o in outcomes if isinstance(o, XrefConflict)]
    assert len(winners) == 1 and len(losers) == 19, outcomes
    assert {e.existing_enterprise_id for e in losers} == set(winners)
    assert store.find_enterprise_id("CRM", "acme", "Opportunity", "006A1") == winners[0]
    assert row_count("xref") == 1


def reserve(store: Store, candidate: str, external_id: str = "001ACME") -> str:
    return store.reserve_enterprise_id(candidate, "customer", "CRM", "acme", "Account", external_id)


def test_reserve_links_the_candidate_then_returns_it_again(
    store: Store, row_count: RowCount
) -> None:
    first, second = new_eid(), new_eid()

    assert reserve(store, first) == first
    assert reserve(store, first) == first  # a retried activity with the same candidate
    assert reserve(store, second) == first  # a later reservation gets the id already there

    row = store.find_xref(first, "CRM", "Account")
    assert row is not None
    assert (row.entity_type, row.tenant, row.external_id, row.status) == (
        "customer",
        "acme",
        "001ACME",
        "active",
    )
    assert store.find_xref(second, "CRM", "Account") is None
    assert row_count("xref") == 1


def test_concurrent_reservations_of_one_key_all_get_the_same_id(
    store: Store, row_count: RowCount, together: Together
) -> None:
    """Deals of one customer won at the same moment reserve the customer's id at once: every
    caller gets the winner's id, none an error, and there is exactly one link."""
    candidates = [new_eid() for _ in range(40)]

    outcomes = together(40, lambda i: reserve(store, candidates[i]))

    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    assert len(set(outcomes)) == 1, outcomes
    [winner] = set(outcomes)
    assert winner in candidates
    assert store.find_enterprise_id("CRM", "acme", "Account", "001ACME") == winner
    assert row_count("xref") == 1
    assert row_count("xref", "enterprise_id = :e", e=winner) == 1


def test_links_after_concurrent_reservations_stay_idempotent(
    store: Store, row_count: RowCount, together: Together
) -> None:
    """Each saga that reserved the customer's id later links it (CRM account and ERP customer)
    in its `link_xrefs` step; doing so from every saga at once changes nothing but the refresh."""
    candidates = [new_eid() for _ in range(20)]
    [winner] = set(together(20, lambda i: reserve(store, candidates[i])))

    def link_customer(_: int) -> tuple[str, str]:
        account = store.link_xref(winner, "customer", "CRM", "acme", "Account", "001ACME")
        erp = store.link_xref(winner, "customer", "ERP", "acme", "customer", "C-100")
        return account.enterprise_id, erp.enterprise_id

    outcomes = together(20, link_customer)

    assert outcomes == [(winner, winner)] * 20
    assert [(x.system, x.object_type, x.external_id) for x in store.xrefs_for(winner)] == [
        ("CRM", "Account", "001ACME"),
        ("ERP", "customer", "C-100"),
    ]
    assert row_count("xref") == 2


def test_reserve_with_a_candidate_already_linked_elsewhere_conflicts(
    store: Store, row_count: RowCount
) -> None:
    """A candidate already standing for another account is a caller's bug, not a race."""
    eid = new_eid()
    reserve(store, eid, external_id="001ACME")

    with pytest.raises(XrefConflict) as caught:
        reserve(store, eid, external_id="001OTHER")

    assert caught.value.existing_external_id == "001ACME"
    assert store.find_enterprise_id("CRM", "acme", "Account", "001OTHER") is None
    assert row_count("xref") == 1
