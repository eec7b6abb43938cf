"""WorkerLifecycle makes the ERP employee of a hire and re-activates a rehire's, on the
time-skipping server: with pssync's NetSuite connector against the ERP twin (the employee, its
department and its labor cost as NetSuite would hold them), and with the in-memory ERP for a
refused write (an exception item, the labor cost row waiting behind it)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment

from connectors.erp import NetSuiteErp
from connectors.erp.employees import ErpEmployee
from connectors.hcm import FakeHcm
from connectors.psa import FakePsa
from contracts import Money, System
from contracts.errors import BusinessRuleViolation
from contracts.settings import load_settings
from contracts.v1.processes import (
    RESOLVE_EXCEPTION_UPDATE,
    ExceptionResolution,
    ResolutionAccepted,
    ResolutionAction,
)
from contracts.v1.workforce import WorkerChangeKind
from tests.connectors._erp_twin import netsuite_on
from tests.twins._erp_fixtures import ACTIVE_CC, ErpTwin, erp_twin
from tests.workflows._worlds import fake_deployment, running_workers, sqlite_store
from tests.workflows.test_worker_lifecycle import (
    WORKER,
    World,
    hire,
    new_id,
    status_until,
    ts_env,
    world,
)

__all__ = ["ts_env", "world"]  # the fixtures, shared with the lifecycle's other tests

RECORD = "/services/rest/record/v1"


@contextlib.asynccontextmanager
async def twin_world(
    env: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[tuple[World, ErpTwin, NetSuiteErp]]:
    """The lifecycle's world with the NetSuite connector on the ERP twin as its ERP."""
    psa, hcm = FakePsa(), FakeHcm()
    async with erp_twin() as twin, netsuite_on(twin) as erp:
        with sqlite_store(tmp_path) as (url, st):
            settings = load_settings(home=tmp_path, database_url=url)
            deployment = fake_deployment(settings=settings, store=st, psa=psa, erp=erp, hcm=hcm)
            queue = f"life-erp-{uuid.uuid4().hex[:8]}"
            async with running_workers(env.client, deployment, queue):
                world = World(env.client, env, queue, psa, erp, hcm, st)  # type: ignore[arg-type]
                yield world, twin, erp


async def employee_json(twin: ErpTwin) -> dict[str, Any]:
    response = await twin.client.get(f"{RECORD}/employee/eid:{WORKER}")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def department_id(twin: ErpTwin, code: str) -> str:
    response = await twin.client.get(f"{RECORD}/department/eid:{code}")
    response.raise_for_status()
    return str(response.json()["id"])


async def test_a_hire_is_one_erp_employee_with_its_data_and_labor_cost(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with twin_world(ts_env, tmp_path) as (world, twin, erp):
        day = await world.today() - timedelta(days=3)
        change = hire(world, day, email="grace@example.com", cost_center=ACTIVE_CC)
        handle = await world.send(change, workflow_id=new_id())
        await status_until(handle, lambda s: len(s.history) == 1, "hire applied")

        assert await twin.count("employee", f'externalId IS "{WORKER}"') == 1
        body = await employee_json(twin)
        assert {k: body.get(k) for k in ("firstName", "lastName", "email", "hireDate")} == {
            "firstName": "Grace",
            "lastName": "Hopper",
            "email": "grace@example.com",
            "hireDate": day.isoformat(),
        }
        assert body["department"]["id"] == await department_id(twin, ACTIVE_CC)
        assert body["isInactive"] is False
        # made before the rate row, so the row in force is the employee's labor cost
        assert await erp.get_cost_rate(WORKER) == Money("80.00", "AUD")
        assert [r.key for r in await erp.labor_cost_rates(WORKER)] == [change.event_id]
        await handle.terminate("test done")


async def test_a_rehire_reactivates_the_employee_hr_left_inactive(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with twin_world(ts_env, tmp_path) as (world, twin, erp):
        # HR's feed made the employee for the first employment and made it inactive on leaving.
        made = await twin.client.put(
            f"{RECORD}/employee/eid:{WORKER}",
            json={
                "firstName": "Grace",
                "lastName": "Hopper",
                "hireDate": "2019-02-01",
                "department": {"externalId": ACTIVE_CC},
                "laborCost": 70,
                "currency": {"id": "AUD"},
                "isInactive": True,
            },
        )
        assert made.status_code == 204, made.text
        day = await world.today()
        rehire = world.change(
            WorkerChangeKind.REHIRE,
            day,
            name="Grace Hopper",
            email="grace@example.com",
            cost_center="CC-404",  # not a department of the ERP's
            cost_rate=Money("90.00", "AUD"),
        )
        handle = await world.send(rehire, workflow_id=new_id())
        status = await status_until(handle, lambda s: len(s.history) == 1, "rehire applied")
        assert not status.open_items

        assert await twin.count("employee", f'externalId IS "{WORKER}"') == 1
        body = await employee_json(twin)
        assert (body["isInactive"], body["hireDate"], body["email"]) == (
            False,
            day.isoformat(),
            "grace@example.com",
        )
        # a cost center the ERP does not have leaves the department HR set
        assert body["department"]["id"] == await department_id(twin, ACTIVE_CC)
        # the first employment's cost prices time before the rehire; the rehire's from its day
        assert await erp.get_cost_rate(WORKER) == Money("90.00", "AUD")
        assert [(r.key, r.rate) for r in await erp.labor_cost_rates(WORKER)] == [
            ("opening", Money("70", "AUD")),
            (rehire.event_id, Money("90.00", "AUD")),
        ]
        await handle.terminate("test done")


async def test_a_refused_employee_waits_for_a_person_and_the_rate_row_behind_it(
    world: World,
) -> None:
    world.erp.fail_employee_next(
        BusinessRuleViolation(
            "USER_ERROR",
            "Please enter value(s) for: Subsidiary",
            field="subsidiary",
            system=System.ERP,
        )
    )
    day: date = await world.today()
    wid = new_id()
    handle = await world.send(hire(world, day, cost_center="CC-100"), workflow_id=wid)
    status = await status_until(handle, lambda s: bool(s.open_items), "refusal flagged")
    [item] = status.open_items
    assert (item.cause_code, item.field) == ("USER_ERROR", "subsidiary")
    assert world.erp.employees == {} and await world.erp.labor_cost_rates(WORKER) == []
    await handle.execute_update(
        RESOLVE_EXCEPTION_UPDATE,
        ExceptionResolution(
            item_id=item.item_id,
            action=ResolutionAction.RETRY,
            actor="hr@example.com",
            actor_roles=["hr"],
        ),
        result_type=ResolutionAccepted,
    )
    status = await status_until(handle, lambda s: len(s.history) == 1, "hire applied")
    assert not status.open_items
    assert world.erp.employees == {
        WORKER: ErpEmployee(
            worker_id=WORKER,
            first_name="Grace",
            last_name="Hopper",
            hire_date=day,
            cost_center="CC-100",
            active=True,
        )
    }
    assert await world.erp.get_cost_rate(WORKER) == Money("80.00", "AUD")
    # a later change that does not touch the employee's fields writes nothing more to it
    writes = world.erp.employee_writes
    raise_ = world.change(WorkerChangeKind.COST_RATE_CHANGE, day, cost_rate=Money("85", "AUD"))
    await world.send(raise_, workflow_id=wid)
    await status_until(handle, lambda s: len(s.history) == 2, "raise applied")
    assert world.erp.employee_writes == writes
    await handle.terminate("test done")
