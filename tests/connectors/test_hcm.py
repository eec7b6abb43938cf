"""The HCM connector against the Workday twin over loopback HTTP, and the fake beside it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.hcm import FakeHcm, HcmHrActions, WorkdayHcm, WorkerEventType
from contracts.errors import AuthError, BusinessRuleViolation, NotFoundError, TransientError
from contracts.systems import System
from contracts.v1 import WorkerStatus
from sandbox import hcm as hcm_twin
from sandbox._twin import FaultConfig
from sandbox.seed import Worker as SeedWorker
from sandbox.seed import build_firm
from tests._servers import serve
from tests._twins import Clock, ConnectedTwin, employee, until

TODAY = date(2025, 6, 15)
NOON = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)


@dataclass
class Twin(ConnectedTwin):
    clock: Clock

    def employee(self, n: int) -> SeedWorker:
        return employee(self.firm, n, TODAY)


@pytest.fixture(scope="module")
async def twin() -> AsyncIterator[Twin]:
    firm = build_firm(9, workers=40, today=TODAY)
    clock = Clock(NOON)
    app = hcm_twin.create_app(None, tenant="acme", clock=clock)
    hcm_twin.load_firm(app, firm)
    async with serve(app) as base:
        yield Twin(app, base, firm, clock)


@pytest.fixture(autouse=True)
def _calm(twin: Twin) -> None:
    twin.clock.now = NOON
    twin.calm()


@pytest.fixture
async def workday(twin: Twin) -> AsyncIterator[WorkdayHcm]:
    async with WorkdayHcm(twin.settings(), backoff_base_s=0.01, page_limit=7) as hcm:
        yield hcm


# --------------------------------------------------------------------------- reads


async def test_get_worker_is_canonical(workday: WorkdayHcm, twin: Twin) -> None:
    seeded = twin.employee(0)
    worker = await workday.get_worker(seeded.id)
    assert worker.source_system is System.HCM
    assert (worker.external_id, worker.name, worker.email) == (
        seeded.id,
        seeded.name,
        seeded.email,
    )
    assert worker.status is WorkerStatus.ACTIVE and worker.hire_date == seeded.hire_date
    assert (worker.cost_center, worker.location, worker.role) == (
        seeded.cost_center,
        seeded.location,
        seeded.role,
    )
    assert worker.termination_date is None and worker.cost_rate is None
    assert worker.source_version and worker.updated_at.tzinfo is not None


async def test_list_workers_pages_through_everyone(workday: WorkdayHcm, twin: Twin) -> None:
    workers = await workday.list_workers()
    assert [w.external_id for w in workers] == sorted(w.id for w in twin.firm.workers)
    statuses = {w.external_id: w.status for w in workers}
    for seeded in twin.firm.workers:
        expected = {
            "terminated": WorkerStatus.TERMINATED,
            "leave": WorkerStatus.LEAVE,
        }.get(seeded.status, WorkerStatus.ACTIVE)
        assert statuses[seeded.id] is expected
    assert twin.state.stats().served >= 6  # 40 workers at 7 a page


async def test_unknown_worker_is_not_found(workday: WorkdayHcm) -> None:
    with pytest.raises(NotFoundError):
        await workday.get_worker("99999")


async def test_worker_active_on(workday: WorkdayHcm, twin: Twin) -> None:
    gone = next(w for w in twin.firm.workers if w.status == "terminated")
    assert gone.last_day_worked is not None
    assert await workday.worker_active_on(gone.id, gone.last_day_worked)
    assert not await workday.worker_active_on(gone.id, gone.last_day_worked + timedelta(days=1))
    assert not await workday.worker_active_on(gone.id, gone.hire_date - timedelta(days=1))


# --------------------------------------------------------------------------- the window


async def test_future_dated_termination_in_its_entry_window(
    workday: WorkdayHcm, twin: Twin
) -> None:
    seeded = twin.employee(1)
    twin.clock.now = entered = NOON + timedelta(minutes=3)
    worker = await workday.terminate(seeded.id, date(2025, 8, 29), date(2025, 8, 27), "Relocation")
    assert worker.termination_date == date(2025, 8, 29)
    assert worker.last_day_worked == date(2025, 8, 27) and worker.status is WorkerStatus.ACTIVE

    changes = await workday.changed_workers(
        entered - timedelta(minutes=1), entered + timedelta(minutes=1)
    )
    (change,) = [c for c in changes if c.worker.external_id == seeded.id]
    assert change.event_type is WorkerEventType.TERMINATE
    assert change.effective_date == date(2025, 8, 29) and change.entry_moment == entered
    assert change.termination_date == date(2025, 8, 29)
    assert change.last_day_worked == date(2025, 8, 27)
    assert change.worker.status is WorkerStatus.ACTIVE

    later = await workday.changed_workers(
        entered + timedelta(minutes=1), entered + timedelta(days=90)
    )
    assert seeded.id not in {c.worker.external_id for c in later}
    boundary = await workday.changed_workers(entered - timedelta(hours=1), entered)
    assert seeded.id not in {c.worker.external_id for c in boundary}

    assert await workday.worker_active_on(seeded.id, date(2025, 8, 27))
    assert not await workday.worker_active_on(seeded.id, date(2025, 8, 28))


async def test_window_pages_and_orders_by_entry(workday: WorkdayHcm, twin: Twin) -> None:
    start = NOON + timedelta(hours=2)
    ids = []
    for n in range(2, 11):
        twin.clock.now = start + timedelta(seconds=n)
        seeded = twin.employee(n)
        ids.append(seeded.id)
        await workday.terminate(seeded.id, date(2025, 12, 31))
    changes = await workday.changed_workers(start, start + timedelta(minutes=1))
    assert [c.worker.external_id for c in changes] == ids  # 9 workers, pages of 7
    moments = [c.entry_moment for c in changes]
    assert moments == sorted(moments)


async def test_rescind_and_rehire(workday: WorkdayHcm, twin: Twin) -> None:
    seeded = twin.employee(11)
    await workday.terminate(seeded.id, date(2025, 7, 1))
    twin.clock.now = rescinded = NOON + timedelta(hours=5)
    worker = await workday.rescind_termination(seeded.id)
    assert worker.termination_date is None and worker.last_day_worked is None
    (change,) = [
        c
        for c in await workday.changed_workers(rescinded, rescinded + timedelta(seconds=1))
        if c.worker.external_id == seeded.id
    ]
    assert change.event_type is WorkerEventType.RESCIND
    assert change.effective_date == date(2025, 7, 1)

    await workday.terminate(seeded.id, date(2025, 6, 1))
    twin.clock.now = datetime(2025, 6, 20, 9, 0, tzinfo=UTC)
    assert (await workday.get_worker(seeded.id)).status is WorkerStatus.TERMINATED
    back = await workday.rehire(seeded.id, date(2025, 6, 23))
    assert back.hire_date == date(2025, 6, 23) and back.termination_date is None


@pytest.mark.parametrize(
    ("kwargs", "code", "field"),
    [
        ({"termination_date": date(1990, 1, 1)}, "TERMINATION_BEFORE_HIRE", "terminationDate"),
        (
            {"termination_date": date(2025, 7, 1), "last_day": date(2025, 7, 3)},
            "LAST_DAY_AFTER_TERMINATION",
            "lastDayOfWork",
        ),
    ],
)
async def test_refusals_are_typed(
    workday: WorkdayHcm, twin: Twin, kwargs: dict[str, Any], code: str, field: str
) -> None:
    seeded = twin.employee(12)
    with pytest.raises(BusinessRuleViolation) as refused:
        await workday.terminate(seeded.id, **kwargs)
    assert (refused.value.code, refused.value.field, refused.value.system) == (
        code,
        field,
        System.HCM,
    )
    assert (await workday.get_worker(seeded.id)).termination_date is None


# --------------------------------------------------------------------------- failures


async def test_retry_after_is_honoured(twin: Twin) -> None:
    twin.state.set_faults(FaultConfig(rate_limit_rate=0.5, retry_after_s=0.15, seed=1))
    settings = twin.settings(auth="bearer", token=SecretStr("dev-static-token"))
    async with WorkdayHcm(settings, backoff_base_s=0.001, page_limit=20) as hcm:
        started = time.monotonic()
        workers = await hcm.list_workers()
        elapsed = time.monotonic() - started
    throttled = twin.state.stats().throttled_429
    assert len(workers) == 40
    assert throttled >= 1 and hcm.http.retries == throttled
    assert elapsed >= 0.15 * throttled


async def test_5xx_burst_is_ridden_out(twin: Twin) -> None:
    twin.state.set_faults(FaultConfig(error_rate=0.5, error_statuses=[500, 502, 503, 504], seed=4))
    async with WorkdayHcm(twin.settings(), backoff_base_s=0.001, page_limit=10) as hcm:
        workers = await hcm.list_workers()
    assert len(workers) == 40
    assert twin.state.stats().errors_5xx >= 1
    assert hcm.http.retries == twin.state.stats().errors_5xx


async def test_outage_then_recovery(twin: Twin) -> None:
    twin.state.set_faults(FaultConfig(outage=True))
    async with WorkdayHcm(twin.settings(), backoff_base_s=0.005) as hcm:
        call = asyncio.create_task(hcm.get_worker(twin.employee(0).id))
        await until(lambda: twin.state.stats().errors_5xx >= 3)
        assert not call.done()
        twin.state.set_faults(FaultConfig())
        worker = await asyncio.wait_for(call, 10)
    assert worker.external_id == twin.employee(0).id


async def test_outage_past_the_budget_is_transient(twin: Twin) -> None:
    twin.state.set_faults(FaultConfig(outage=True))
    async with WorkdayHcm(twin.settings(retry_budget_s=0.2), backoff_base_s=0.01) as hcm:
        with pytest.raises(TransientError):
            await hcm.list_workers()


async def test_wrong_credentials_are_auth_errors(twin: Twin) -> None:
    async with WorkdayHcm(twin.settings(client_secret=SecretStr("nope"))) as hcm:
        with pytest.raises(AuthError):
            await hcm.list_workers()


async def test_wrong_tenant_is_not_found(twin: Twin) -> None:
    async with WorkdayHcm(twin.settings(tenant="someone-else")) as hcm:
        with pytest.raises(NotFoundError):
            await hcm.get_worker(twin.employee(0).id)


# --------------------------------------------------------------------------- the port, both ways


@dataclass
class Port:
    hcm: HcmHrActions
    clock: Clock
    worker_id: str


@pytest.fixture(params=["twin", "fake"])
async def port(request: pytest.FixtureRequest, twin: Twin) -> AsyncIterator[Port]:
    seeded = twin.employee(13 if request.param == "twin" else 0)
    if request.param == "fake":
        async with WorkdayHcm(twin.settings()) as source:
            workers = await source.list_workers()
        clock = Clock(NOON)
        yield Port(FakeHcm(workers, clock=clock), clock, seeded.id)
        return
    async with WorkdayHcm(twin.settings(), backoff_base_s=0.01) as hcm:
        yield Port(hcm, twin.clock, seeded.id)


async def test_port_termination_lifecycle(port: Port) -> None:
    hcm, wid = port.hcm, port.worker_id
    before = await hcm.get_worker(wid)
    port.clock.now = entered = NOON + timedelta(days=1)
    with pytest.raises(BusinessRuleViolation) as early:
        await hcm.terminate(wid, before.hire_date - timedelta(days=1))
    assert (early.value.code, early.value.field) == ("TERMINATION_BEFORE_HIRE", "terminationDate")

    pending = await hcm.terminate(wid, date(2025, 7, 31), date(2025, 7, 30))
    assert pending.status is WorkerStatus.ACTIVE and pending.termination_date == date(2025, 7, 31)
    with pytest.raises(BusinessRuleViolation) as twice:
        await hcm.terminate(wid, date(2025, 8, 31))
    assert twice.value.code == "TERMINATION_EXISTS"

    changes = await hcm.changed_workers(entered, entered + timedelta(seconds=1))
    assert [(c.worker.external_id, c.event_type, c.effective_date) for c in changes] == [
        (wid, WorkerEventType.TERMINATE, date(2025, 7, 31))
    ]
    assert (
        await hcm.changed_workers(entered + timedelta(seconds=1), entered + timedelta(days=1)) == []
    )
    assert await hcm.worker_active_on(wid, date(2025, 7, 30))
    assert not await hcm.worker_active_on(wid, date(2025, 7, 31))

    port.clock.now = datetime(2025, 8, 1, 9, 0, tzinfo=UTC)
    assert (await hcm.get_worker(wid)).status is WorkerStatus.TERMINATED

    port.clock.now = rescinded = datetime(2025, 8, 2, 9, 0, tzinfo=UTC)
    back = await hcm.rescind_termination(wid)
    assert back.status is WorkerStatus.ACTIVE and back.termination_date is None
    changes = await hcm.changed_workers(rescinded, rescinded + timedelta(seconds=1))
    assert [(c.event_type, c.effective_date) for c in changes] == [
        (WorkerEventType.RESCIND, date(2025, 7, 31))
    ]
    with pytest.raises(BusinessRuleViolation) as nothing:
        await hcm.rescind_termination(wid)
    assert nothing.value.code == "NO_TERMINATION"
    with pytest.raises(NotFoundError):
        await hcm.get_worker("99999")
    with pytest.raises(NotFoundError):
        await hcm.terminate("99999", date(2025, 9, 1))
