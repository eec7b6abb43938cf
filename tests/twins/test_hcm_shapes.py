"""The Workday twin answers in the shape of Workday's published examples
(tests/fixtures/vendors/workday): the same keys and JSON types, values aside.

The twin's workers carry every key of the published `/workers` view, and beyond it only the
employment fields pssync needs that the view lacks (`EMPLOYMENT`, see
connectors/hcm/mapping.py); the `_built` examples, which add those fields, match it exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from sandbox import hcm
from sandbox.seed import Firm, build_firm
from tests._servers import serve
from tests._shapes import assert_same_shape, load_fixture
from tests._twins import Clock, TwinApp, employee

TODAY = date(2025, 6, 15)
NOON = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
BASE = "/ccx/api/v1/acme/workers"
AUTH = {"Authorization": "Bearer dev-static-token"}
EMPLOYMENT = frozenset(
    {"workerId", "workerType", "jobProfile", "location", "costCenter", "workerStatus"}
    | {"lastUpdated", "events"}
)
"""Keys beyond the published view: pssync's employment fields and the window's events."""
OPTIONAL = frozenset(
    {"businessTitle", "primarySupervisoryOrganization", "primaryWorkEmail", "primaryWorkPhone"}
)
"""Published keys a worker may have no value for (null)."""


@dataclass
class Twin(TwinApp):
    client: httpx.AsyncClient
    clock: Clock
    firm: Firm


@pytest.fixture(scope="module")
async def twin() -> AsyncIterator[Twin]:
    firm = build_firm(5, workers=12, today=TODAY)
    clock = Clock(NOON)
    app = hcm.create_app(None, tenant="acme", clock=clock)
    hcm.load_firm(app, firm)
    async with serve(app) as base, httpx.AsyncClient(base_url=base, headers=AUTH) as client:
        yield Twin(app, client, clock, firm)


async def get(twin: Twin, path: str, **params: Any) -> Any:
    response = await twin.client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_worker_list_has_the_published_shape(twin: Twin) -> None:
    body = await get(twin, BASE, limit=5)
    assert len(body["data"]) == 5
    assert_same_shape(
        body, load_fixture("workday", "workers_list.json"), extra=EMPLOYMENT, nullable=OPTIONAL
    )


async def test_one_worker_has_the_published_shape(twin: Twin) -> None:
    w = employee(twin.firm, 0, TODAY)
    body = await get(twin, f"{BASE}/Employee_ID={w.id}")
    published = load_fixture("workday", "workers_list.json")["data"][0]
    assert_same_shape(body, published, extra=EMPLOYMENT, nullable=OPTIONAL)
    assert_same_shape(body, load_fixture("workday", "worker_active_built.json"), nullable=True)


async def test_a_terminated_worker_has_the_built_shape(twin: Twin) -> None:
    w = employee(twin.firm, 1, TODAY)
    response = await twin.client.post(
        f"{BASE}/Employee_ID={w.id}/terminate",
        json={"terminationDate": "2025-06-10", "lastDayOfWork": "2025-06-09"},
    )
    assert response.status_code == 200, response.text
    body = await get(twin, f"{BASE}/Employee_ID={w.id}")
    assert body["workerStatus"]["terminated"] is True
    built = load_fixture("workday", "worker_terminated_built.json")
    # The built example extends the staffing view (`person`, `primaryJob`); compare what both
    # views share and the employment fields.
    shared = {k: v for k, v in built.items() if k in body}
    expected = {"id", "descriptor", "href", "workerId", "workerType", "costCenter"}
    assert set(shared) == expected | {"workerStatus", "lastUpdated"}
    assert_same_shape({k: body[k] for k in shared}, shared, nullable=True)


async def test_the_changed_workers_window_has_the_built_shape(twin: Twin) -> None:
    w = employee(twin.firm, 2, TODAY)
    twin.clock.now = datetime(2025, 6, 15, 10, 30, tzinfo=UTC)
    response = await twin.client.post(
        f"{BASE}/Employee_ID={w.id}/terminate",
        json={"terminationDate": "2025-07-31", "lastDayOfWork": "2025-07-29", "reason": "x"},
    )
    assert response.status_code == 200, response.text
    twin.clock.now = NOON
    body = await get(
        twin, BASE, updatedFrom="2025-06-15T10:00:00Z", updatedThrough="2025-06-15T11:00:00Z"
    )
    assert [item["workerId"] for item in body["data"]] == [w.id]
    assert_same_shape(body, load_fixture("workday", "workers_window_built.json"), nullable=True)
