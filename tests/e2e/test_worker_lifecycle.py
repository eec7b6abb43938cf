"""Worker lifecycle end to end on the real dev server: HCM twin (Workday routes) -> Schedule ->
poller -> one WorkerLifecycle run per worker -> the Kantata twin's resource pool and the
NetSuite twin's labor cost rate history, each change at the worker's own midnight.

- a hire effective today (in Sydney) becomes a PSA user the same day, who can be staffed and
  log time that day; a cost-rate change effective tomorrow waits (nothing written yet), so
  today's time is still costed at the hire's rate;
- for a worker hired earlier, a cost-rate change effective today is written from today: time
  dated before it keeps the old rate, time from today costs the new one; a change entered
  later but effective earlier (out of order) changes nothing, and the polls that read the same
  events again (duplicates) add nothing."""

from __future__ import annotations

import contextlib
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text

import worker
from activities.time_posting import post_approved_time
from bench._harness.waiting import must_eventually as eventually
from connectors.erp import NetSuiteErp
from connectors.psa import KantataPsa
from contracts import Money, System
from contracts.settings import load_settings
from contracts.v1 import BillingRule, Customer, Project
from contracts.v1.processes import STATUS_QUERY
from contracts.v1.workforce import LifecycleStatus, lifecycle_workflow_id
from sandbox.seed import build_firm
from stack import Stack, running_stack
from tests._servers import start_worker_process, stop_process

pytestmark = pytest.mark.e2e

POLL_EVERY_2S = {"PSSYNC_HCM_POLL_INTERVAL_S": "2"}
ZONE = "Australia/Sydney"
EID = "01JWKRC0000000000000000001"
AUTH = {"Authorization": "Bearer dev-static-token"}
FIRM = build_firm(7)  # what the stack seeds


def count(stack: Stack, system: str, table: str, where: str = "1=1") -> int:
    with stack.sandbox.state(system).engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar_one())


def rows(stack: Stack, system: str, sql: str) -> list[Any]:
    with stack.sandbox.state(system).engine.connect() as conn:
        return list(conn.execute(text(sql)).all())


def hire_body(worker_id: str, on: date, rate: str) -> dict[str, Any]:
    return {
        "workerId": worker_id,
        "firstName": "Grace",
        "lastName": f"Hopper {worker_id}",
        "email": f"{worker_id.lower()}@example.com",
        "hireDate": on.isoformat(),
        "jobProfile": "Consultant",
        "location": "Sydney",
        "timeZone": ZONE,
        "costCenterId": "CC-100",
        "practice": "Cloud",
        "costRate": {"amount": rate, "currency": "USD"},
    }


def raise_body(on: date, rate: str) -> dict[str, Any]:
    return {"effectiveDate": on.isoformat(), "costRate": {"amount": rate, "currency": "USD"}}


async def test_hire_staffed_same_day_and_cost_rates_from_their_own_date(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / ".pssync")
    async with running_stack(settings, ephemeral_ports=True, run_worker=False) as stack:
        today = datetime.now(ZoneInfo(ZONE)).date()  # the workers' today, not the machine's
        deployment = worker.Deployment.from_settings(stack.settings)
        psa, erp = deployment.psa, deployment.erp
        assert isinstance(psa, KantataPsa) and isinstance(erp, NetSuiteErp)
        tenant = stack.settings.hcm.tenant
        hcm = httpx.AsyncClient(
            base_url=f"{stack.settings.hcm.base_url}/ccx/api/v1/{tenant}", headers=AUTH
        )
        proc = None
        try:
            # The ERP's employee master has both (HR's own ERP feed, not this process).
            for wid in ("N-2001", "N-2002"):
                await erp._send(
                    "PUT",
                    erp._path("employee", wid, external=True),
                    {"firstName": "Grace", "lastName": wid, "currency": {"id": "USD"}},
                )
            project = Project(
                name="Lifecycle e2e",
                customer_id="ACC-LIFE",
                billing_rule=BillingRule.TIME_AND_MATERIALS,
                contract_value=Money("50000.00", "USD"),
                start_date=today - timedelta(days=30),
                end_date=today + timedelta(days=180),
                cost_center=FIRM.workers[0].cost_center,
                source_system=System.CRM,
            )
            psa_id = await psa.create_project_shell(project, enterprise_id=EID)
            customer = await erp.upsert_customer(
                Customer(external_id="ACC-LIFE", name="Life Co", source_system=System.CRM),
                enterprise_id="01JWKRC0000000000000000002",
            )
            await erp.upsert_project(
                project, enterprise_id=EID, customer_erp_id=customer, budget=Money("50000", "USD")
            )

            async def post(path: str, body: dict[str, Any]) -> None:
                r = await hcm.post(path, json=body)
                assert r.status_code == 200, r.text

            # N-2002 was hired four days ago (its events are read in the first polls too).
            await post("/workers", hire_body("N-2002", today - timedelta(days=4), "80.00"))
            # 1. A hire effective today in Sydney.
            await post("/workers", hire_body("N-2001", today, "80.00"))
            proc = start_worker_process(stack.settings, tmp_path / "worker.log", POLL_EVERY_2S)

            async def user_of(worker_id: str) -> str | None:
                psa._workers_by_user.clear()
                psa._users_by_worker.clear()
                return await psa._user_of(worker_id)

            user = await eventually(lambda: user_of("N-2001"), 30)

            def first_day() -> Any:
                # The user is invited first, its fields written next (Available From -> its
                # first day for time): wait for the resource, not just the invitation.
                [(start, role)] = rows(
                    stack, "psa", f"SELECT start_date, role FROM psa_user WHERE id = {user}"
                )
                return (str(start), role) if start is not None else None

            assert await eventually(first_day, 30) == (today.isoformat(), "Consultant")

            async def call(method: str, path: str, body: dict[str, Any]) -> str:
                return str(psa._one(await psa._call(method, path, json=body))["id"])

            # staffed and logging time the same day
            await call(
                "POST",
                "/assignments.json",
                {
                    "assignment": {
                        "workspace_id": int(psa_id),
                        "user_id": int(user),
                        "role": "Consultant",
                        "start_date": today.isoformat(),
                        "end_date": (today + timedelta(days=30)).isoformat(),
                        "allocated_minutes": 4800,
                    }
                },
            )

            async def log_time(worker_id: str, on: date, minutes: int) -> str:
                uid = await psa._require_user(worker_id)
                entry = await call(
                    "POST",
                    "/time_entries.json",
                    {
                        "time_entry": {
                            "workspace_id": int(psa_id),
                            "user_id": int(uid),
                            "date_performed": on.isoformat(),
                            "time_in_minutes": minutes,
                        }
                    },
                )
                await call("PUT", f"/time_entries/{entry}.json", {"time_entry": {"approved": True}})
                return entry

            e_today = await log_time("N-2001", today, 60)

            # 2. A raise effective tomorrow waits: nothing written, today's cost unchanged.
            await post(
                "/workers/Employee_ID=N-2001/compensationChanges",
                raise_body(today + timedelta(1), "99"),
            )
            handle = stack.client.get_workflow_handle(lifecycle_workflow_id(tenant, "N-2001"))

            async def pending() -> bool:
                status = await _status(handle)
                return status is not None and len(status.pending) == 1 and len(status.history) == 1

            await eventually(pending, 30)
            assert count(stack, "erp", "erp_labor_cost_rate", "employee = 'N-2001'") == 1
            report = await post_approved_time(psa, erp, "N-2001", through=today)
            # posted here, or already by the time-to-invoice pipeline (the approval's webhook)
            assert report.posted + report.already_posted == [e_today], report
            [(cost,)] = rows(
                stack, "erp", f"SELECT cost_amount FROM erp_timebill WHERE external_id "
                f"LIKE 'psa-time-{e_today}-%'"
            )  # fmt: skip
            assert Decimal(str(cost)) == Decimal("80.00")

            # 3. N-2002: a raise effective today applies from today only.
            yesterday = await log_time("N-2002", today - timedelta(days=1), 60)
            await post(
                "/workers/Employee_ID=N-2002/compensationChanges", raise_body(today, "100.00")
            )
            await eventually(
                lambda: count(stack, "erp", "erp_labor_cost_rate", "employee = 'N-2002'") == 2,
                30,
            )
            # entered later, effective earlier than the raise: out of order, changes nothing
            await post(
                "/workers/Employee_ID=N-2002/compensationChanges",
                raise_body(today - timedelta(days=2), "90.00"),
            )
            handle2 = stack.client.get_workflow_handle(lifecycle_workflow_id(tenant, "N-2002"))

            async def stale_seen() -> bool:
                status = await _status(handle2)
                return status is not None and any(h.stale for h in status.history)

            await eventually(stale_seen, 30)
            e_now = await log_time("N-2002", today, 60)
            report = await post_approved_time(psa, erp, "N-2002", through=today)
            assert sorted(report.posted + report.already_posted) == sorted([yesterday, e_now]), (
                report
            )
            costs = dict(rows(stack, "erp", "SELECT external_id, cost_amount FROM erp_timebill"))
            by_entry = {k.split("-v")[0]: Decimal(str(v)) for k, v in costs.items()}
            assert by_entry[f"psa-time-{yesterday}"] == Decimal("80.00")
            assert by_entry[f"psa-time-{e_now}"] == Decimal("100.00")

            # the polls read the same events again (the window overlaps): nothing doubles
            status = await handle2.query(STATUS_QUERY, result_type=LifecycleStatus)
            applied = len(status.history)
            await eventually(lambda: _polls_after(stack, 3), 20)
            assert count(stack, "erp", "erp_labor_cost_rate", "employee = 'N-2002'") == 2
            assert count(stack, "psa", "psa_user", "email_address = 'n-2001@example.com'") == 1
            status = await handle2.query(STATUS_QUERY, result_type=LifecycleStatus)
            assert len(status.history) == applied
            assert not status.open_items
        finally:
            if proc is not None:
                stop_process(proc)
            with contextlib.suppress(Exception):
                await stack.client.get_schedule_handle("hcm-changes-poller").delete()
            await hcm.aclose()
            await deployment.aclose()


async def _status(handle: Any) -> LifecycleStatus | None:
    """The run's status, or None while the first poll has not started it."""
    try:
        status: LifecycleStatus = await handle.query(STATUS_QUERY, result_type=LifecycleStatus)
    except Exception:
        return None
    return status


_seen_polls: dict[int, int] = {}


async def _polls_after(stack: Stack, more: int) -> bool:
    runs = len([w async for w in stack.client.list_workflows("WorkflowType = 'HcmChangesPoller'")])
    first = _seen_polls.setdefault(id(stack), runs)
    return runs >= first + more
