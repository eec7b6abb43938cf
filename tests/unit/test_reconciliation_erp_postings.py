"""`list_postings_of`, the read reconciliation makes of the ERP: many projects' postings in a
few SuiteQL queries, the same postings `list_postings` gives project by project — against the
ERP twin over real HTTP, and the in-memory fake held to the same answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from connectors.erp import ErpPort, FakeErp, NetSuiteErp
from tests.connectors.test_erp import ENTERPRISE_ID, posting, provision, settings
from tests.twins._erp_fixtures import ACTIVE_CC, ErpTwin, erp_twin

OTHER = "01J0000000000000000000PRJ2"
UNKNOWN = "01J0000000000000000NOSUCH1"


@pytest.fixture
async def twin() -> AsyncIterator[ErpTwin]:
    async with erp_twin() as t:
        yield t


async def two_projects(erp: ErpPort) -> tuple[str, str]:
    first = await provision(erp)
    second = await provision(erp, OTHER)
    results = await erp.post_time(
        [
            posting("A-1"),
            posting("A-2", first),
            posting("B-1", OTHER, hours="2", cost="251.00"),
        ]
    )
    assert all(r.ok for r in results)
    return first, second


async def test_many_projects_postings_in_a_few_queries_as_project_by_project(
    twin: ErpTwin,
) -> None:
    async with NetSuiteErp(
        settings(twin.base_url), backoff_base_s=0.01, poll_interval_s=0.01
    ) as erp:
        _, second = await two_projects(erp)
    # A new client: nothing cached, every project named by its enterprise id or internal id.
    async with NetSuiteErp(settings(twin.base_url), backoff_base_s=0.01) as erp:
        before = erp.calls
        found = await erp.list_postings_of([f"eid:{ENTERPRISE_ID}", second, f"eid:{UNKNOWN}"])
        batched = erp.calls - before
        assert set(found) == {f"eid:{ENTERPRISE_ID}", second, f"eid:{UNKNOWN}"}
        assert sorted(p.idempotency_key for p in found[f"eid:{ENTERPRISE_ID}"]) == ["A-1", "A-2"]
        assert [p.idempotency_key for p in found[second]] == ["B-1"]
        assert found[f"eid:{UNKNOWN}"] == []
        one_by_one = {
            "A": await erp.list_postings(ENTERPRISE_ID),
            "B": await erp.list_postings(second),
        }
        assert sorted(found[f"eid:{ENTERPRISE_ID}"], key=lambda p: p.idempotency_key) == sorted(
            one_by_one["A"], key=lambda p: p.idempotency_key
        )
        assert found[second] == one_by_one["B"]
        assert {p.project_id for p in found[second]} == {second}
        assert found[second][0].cost_center == ACTIVE_CC
        # ids once, timebills once, departments once (currencies cached by the client)
        assert batched <= 4, batched


async def test_the_fake_answers_the_same() -> None:
    erp = FakeErp(cost_centers=[ACTIVE_CC], open_periods=["2025-06"])
    _, second = await two_projects(erp)
    found = await erp.list_postings_of([ENTERPRISE_ID, second, f"eid:{UNKNOWN}"])
    assert sorted(p.idempotency_key for p in found[ENTERPRISE_ID]) == ["A-1", "A-2"]
    assert [p.idempotency_key for p in found[second]] == ["B-1"]
    assert found[f"eid:{UNKNOWN}"] == []
