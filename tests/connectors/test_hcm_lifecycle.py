"""Lifecycle events through the Workday twin and the HCM connector: a hire, a transfer to
another zone, a compensation change and a leave reach `changed_workers` effective-dated, with
the worker's IANA time zone, the fields they change and an order key; and the poller's
conversion to the lifecycle contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from activities.hcm_poll import lifecycle_change
from connectors.hcm import WorkdayHcm, WorkerEventType
from contracts import Money
from contracts.v1.workforce import WorkerChangeKind
from sandbox import hcm as hcm_twin
from sandbox.seed import build_firm
from tests._servers import serve
from tests._twins import Clock, ConnectedTwin

TODAY = date(2025, 6, 15)
NOON = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
BASE = "/ccx/api/v1/acme/workers"
AUTH = {"Authorization": "Bearer dev-static-token"}


@dataclass
class Twin(ConnectedTwin):
    clock: Clock
    http: httpx.AsyncClient

    async def post(self, path: str, body: dict[str, Any], *, status: int = 200) -> Any:
        response = await self.http.post(f"{BASE}{path}", json=body)
        assert response.status_code == status, response.text
        return response.json()


@pytest.fixture(scope="module")
async def twin() -> AsyncIterator[Twin]:
    firm = build_firm(9, workers=40, today=TODAY)
    clock = Clock(NOON)
    app = hcm_twin.create_app(None, tenant="acme", clock=clock)
    hcm_twin.load_firm(app, firm)
    async with serve(app) as base, httpx.AsyncClient(base_url=base, headers=AUTH) as http:
        yield Twin(app, base, firm, clock, http)


@pytest.fixture
async def workday(twin: Twin) -> AsyncIterator[WorkdayHcm]:
    async with WorkdayHcm(twin.settings(), backoff_base_s=0.01, page_limit=7) as hcm:
        yield hcm


async def test_lifecycle_events_reach_the_window_effective_dated_in_the_workers_zone(
    workday: WorkdayHcm, twin: Twin
) -> None:
    start = twin.clock.now = NOON + timedelta(hours=1)
    await twin.post(
        "",
        {
            "workerId": "N-1001",
            "firstName": "Grace",
            "lastName": "Hopper",
            "hireDate": "2025-06-16",
            "jobProfile": "Consultant",
            "location": "Sydney",
            "timeZone": "Australia/Sydney",
            "costCenterId": "CC-100",
            "practice": "Cloud",
            "managerWorkerId": "W-0001",
            "costRate": {"amount": "80.00", "currency": "AUD"},
        },
    )
    twin.clock.now += timedelta(minutes=1)
    await twin.post(
        "/Employee_ID=N-1001/compensationChanges",
        {"effectiveDate": "2025-07-01", "costRate": {"amount": "90.00", "currency": "AUD"}},
    )
    twin.clock.now += timedelta(minutes=1)
    await twin.post(
        "/Employee_ID=N-1001/jobChanges",
        {
            "type": "transfer",
            "effectiveDate": "2025-08-01",
            "location": "Auckland",
            "timeZone": "Pacific/Auckland",
            "practice": "Data",
        },
    )
    twin.clock.now += timedelta(minutes=1)
    await twin.post(
        "/Employee_ID=N-1001/leavesOfAbsence",
        {"firstDayOfLeave": "2025-09-01", "estimatedLastDayOfLeave": "2025-09-30"},
    )
    changes = await workday.changed_workers(start, twin.clock.now + timedelta(seconds=1))
    mine = [c for c in changes if c.worker.external_id == "N-1001"]
    assert [c.event_type for c in mine] == [
        WorkerEventType.HIRE,
        WorkerEventType.COST_RATE_CHANGE,
        WorkerEventType.TRANSFER,
        WorkerEventType.LEAVE_START,
    ]
    hire, raise_, transfer, leave = mine
    assert hire.changed.cost_rate == Money("80.00", "AUD")
    assert (hire.changed.practice, hire.changed.manager_id) == ("Cloud", "W-0001")
    assert hire.changed.fte == Decimal(1)
    assert raise_.changed.cost_rate == Money("90.00", "AUD")
    assert (transfer.changed.location, transfer.changed.practice) == ("Auckland", "Data")
    assert leave.changed.leave_until == date(2025, 9, 30)
    # the worker is read as HCM holds them now: in Auckland's zone
    assert {c.time_zone for c in mine} == {"Pacific/Auckland"}
    sequences = [c.sequence for c in mine]
    assert sequences == sorted(sequences) and len(set(sequences)) == 4

    lifecycle = lifecycle_change("N-1001", raise_)
    assert lifecycle.kind is WorkerChangeKind.COST_RATE_CHANGE
    assert lifecycle.effective_date == date(2025, 7, 1)
    assert lifecycle.effective_at == datetime(2025, 6, 30, 12, 0, tzinfo=UTC)  # NZST midnight


async def test_the_twin_refuses_what_workday_would(twin: Twin) -> None:
    await twin.post(
        "",
        {
            "workerId": "N-1002",
            "firstName": "Alan",
            "lastName": "Turing",
            "hireDate": "2025-06-20",
            "timeZone": "Mars/Olympus",
            "costCenterId": "CC-100",
        },
        status=400,
    )
    seeded = twin.firm.workers[0].id
    body = await twin.post(
        f"/Employee_ID={seeded}/returnFromLeave",
        {"firstDayBackAtWork": "2025-06-20"},
        status=400,
    )
    assert body["errors"][0]["code"] in {"NOT_ON_LEAVE"}
