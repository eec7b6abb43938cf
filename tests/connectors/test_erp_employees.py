"""The ERP employee of an HCM worker (`ErpEmployeesPort`): `NetSuiteErp` over HTTP against the
ERP twin's `employee` record, and the in-memory `FakeErp`, run the same scenarios — a hire
makes one employee keyed by the worker id and a repeat sends no write; an employee HR's feed
made keeps what pssync does not own (its labor cost, and its department when HCM names none)
while pssync's fields follow HCM, a rehire re-activates it, a transfer moves its department;
and over HTTP a write whose answer is lost still leaves one employee."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import httpx
import pytest

from connectors.erp import FakeErp, NetSuiteErp
from connectors.erp.employees import ErpEmployee, ErpEmployeesPort, split_name
from connectors.erp.netsuite.employees import employee_from_netsuite
from contracts.money import Money
from tests._shapes import load_fixture
from tests.connectors._erp_twin import settings
from tests.twins._erp_fixtures import ACTIVE_CC, WORKER, ErpTwin, erp_twin

HR_RATE = Money(Decimal("125.50"), "USD")
OTHER_CC = "CC-120"


class Recording(httpx.AsyncBaseTransport):
    """The connector's HTTP transport, noting each request's method, path and answer."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[tuple[str, str, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.sent.append((request.method, request.url.path, response.status_code))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Erp:
    port: FakeErp | NetSuiteErp
    twin: ErpTwin | None = None
    recording: Recording = field(default_factory=Recording)

    def writes(self) -> int:
        """Employee writes the ERP received."""
        if isinstance(self.port, FakeErp):
            return self.port.employee_writes
        return sum(
            1
            for method, path, _ in self.recording.sent
            if method != "GET" and "/record/v1/employee" in path
        )

    async def employees(self, worker_id: str) -> int:
        if self.twin is None:
            assert isinstance(self.port, FakeErp)
            return int(worker_id in self.port.employees)
        return await self.twin.count("employee", f'externalId IS "{worker_id}"')


@pytest.fixture(params=["twin", "fake"])
async def erp(request: pytest.FixtureRequest) -> AsyncIterator[Erp]:
    if request.param == "fake":
        fake = FakeErp(cost_centers=[ACTIVE_CC, OTHER_CC])
        # HR's feed made the seeded worker's employee, with the labor cost the ERP owns.
        fake.employees[WORKER] = ErpEmployee(
            worker_id=WORKER,
            first_name="Ada",
            last_name="Lovelace",
            email="ada@example.com",
            hire_date=date(2020, 1, 1),
            cost_center=ACTIVE_CC,
            active=True,
        )
        fake.cost_rates[WORKER] = HR_RATE
        yield Erp(fake)
        return
    async with erp_twin() as twin:
        made = await twin.client.post(
            "/services/rest/record/v1/department", json={"name": "Data", "externalId": OTHER_CC}
        )
        assert made.status_code == 204, made.text
        recording = Recording()
        connector = NetSuiteErp(
            settings(twin.base_url),
            transport=recording,
            backoff_base_s=0.01,
            backoff_cap_s=0.2,
            poll_interval_s=0.01,
        )
        async with connector:
            yield Erp(connector, twin, recording)


def new_hire(worker_id: str = "N-3001", **fields: object) -> ErpEmployee:
    values: dict[str, object] = {
        "worker_id": worker_id,
        "first_name": "Grace",
        "last_name": "Brewster Hopper",
        "email": f"{worker_id.lower()}@example.com",
        "hire_date": date(2025, 6, 15),
        "cost_center": ACTIVE_CC,
        "active": True,
    }
    return ErpEmployee.model_validate(values | fields)


async def test_a_hire_makes_one_employee_and_a_repeat_writes_nothing(erp: Erp) -> None:
    assert isinstance(erp.port, ErpEmployeesPort)
    hire = new_hire()
    assert await erp.port.get_employee(hire.worker_id) is None

    assert await erp.port.upsert_employee(hire) == hire
    assert await erp.port.get_employee(hire.worker_id) == hire
    assert erp.writes() == 1

    assert await erp.port.upsert_employee(hire) == hire  # a retry after the write
    assert erp.writes() == 1
    assert await erp.employees(hire.worker_id) == 1
    # The employee has no labor cost of pssync's making: the rate history sets it.
    assert await erp.port.get_cost_rate(hire.worker_id) is None

    # A later change (not a hire) brings an existing employee in step, never makes one.
    assert await erp.port.upsert_employee(new_hire("N-3002"), create=False) is None
    assert await erp.employees("N-3002") == 0 and erp.writes() == 1


async def test_an_employee_hr_made_keeps_what_pssync_does_not_own(erp: Erp) -> None:
    hr_made = await erp.port.get_employee(WORKER)
    assert hr_made is not None and hr_made.cost_center == ACTIVE_CC and hr_made.active

    # HCM's rehire: a new name, e-mail and hire date, no cost center.
    rehire = ErpEmployee(
        worker_id=WORKER,
        first_name="Ada",
        last_name="King",
        email="ada.king@example.com",
        hire_date=date(2025, 6, 1),
        active=True,
    )
    after = await erp.port.upsert_employee(rehire)
    assert after == rehire.model_copy(update={"cost_center": ACTIVE_CC})
    assert await erp.port.get_employee(WORKER) == after
    assert await erp.port.get_cost_rate(WORKER) == HR_RATE  # HR's labor cost, untouched

    # A transfer moves the department and leaves the rest (a change without a name).
    moved = await erp.port.upsert_employee(
        ErpEmployee(worker_id=WORKER, cost_center=OTHER_CC), create=False
    )
    assert moved == after.model_copy(update={"cost_center": OTHER_CC})
    assert await erp.port.get_employee(WORKER) == moved
    assert await erp.port.get_cost_rate(WORKER) == HR_RATE
    assert erp.writes() == 2
    if erp.twin is not None:
        body = (await erp.twin.client.get(f"/services/rest/record/v1/employee/eid:{WORKER}")).json()
        assert body["currency"]["id"] == "USD" and body["laborCost"] == 125.5


async def test_a_rehire_reactivates_an_inactive_employee(erp: Erp) -> None:
    if isinstance(erp.port, FakeErp):
        erp.port.employees[WORKER] = erp.port.employees[WORKER].model_copy(update={"active": False})
    else:
        assert erp.twin is not None
        left = await erp.twin.client.patch(
            f"/services/rest/record/v1/employee/eid:{WORKER}", json={"isInactive": True}
        )
        assert left.status_code == 204, left.text
    before = await erp.port.get_employee(WORKER)
    assert before is not None and before.active is False

    await erp.port.upsert_employee(
        ErpEmployee(worker_id=WORKER, hire_date=date(2025, 6, 1), active=True)
    )
    after = await erp.port.get_employee(WORKER)
    assert after == before.model_copy(update={"active": True, "hire_date": date(2025, 6, 1)})


async def test_a_write_whose_answer_is_lost_leaves_one_employee() -> None:
    async with erp_twin() as twin:
        recording = Recording()
        async with NetSuiteErp(
            settings(twin.base_url), transport=recording, backoff_base_s=0.01, backoff_cap_s=0.1
        ) as erp:
            lost = await twin.client.post(
                "/_admin/erp/lost-responses", json={"rate": 0.5, "seed": 3}
            )
            assert lost.status_code == 200
            hires = [new_hire(f"N-40{n}") for n in range(6)]
            for hire in hires:  # one after the other: the seeded losses fall the same each run
                assert await erp.upsert_employee(hire) == hire
            await twin.client.post("/_admin/erp/lost-responses", json={})
        # Some write went through and its answer was lost; the retry upserted the same one.
        assert any(m == "PUT" and status == 504 for m, _, status in recording.sent)
        for hire in hires:
            assert await twin.count("employee", f'externalId IS "{hire.worker_id}"') == 1
            body = (
                await twin.client.get(f"/services/rest/record/v1/employee/eid:{hire.worker_id}")
            ).json()
            assert (body["firstName"], body["lastName"], body["hireDate"]) == (
                "Grace",
                "Brewster Hopper",
                "2025-06-15",
            )


def test_names_split_given_name_first_and_a_published_employee_reads() -> None:
    assert split_name("Grace Brewster Hopper") == ("Grace", "Brewster Hopper")
    assert split_name("  Cher ") == ("Cher", "Cher")
    with pytest.raises(ValueError):
        split_name(" ")
    built = load_fixture("netsuite", "record_employee_get_built.json")
    read = employee_from_netsuite(built, worker_id="E1001", cost_center=ACTIVE_CC)
    assert read == ErpEmployee(
        worker_id="E1001",
        first_name="Ada",
        last_name="Lovelace",
        email="ada@example.com",
        cost_center=ACTIVE_CC,
        active=True,
    )
