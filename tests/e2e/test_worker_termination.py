"""Worker termination end to end on the real dev server: HCM twin -> Schedule -> poller ->
WorkerTermination -> PSA and ERP twins; then the worker and the poller restart in the middle
of a second termination and a rescind, and nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.client import Client

import worker
from bench._harness.waiting import must_eventually as eventually
from connectors.erp import NetSuiteErp
from connectors.hcm import WorkdayHcm
from connectors.psa import KantataPsa
from contracts import Money, System
from contracts.naming import termination_workflow_id
from contracts.settings import load_settings
from contracts.v1 import BillingRule, Customer, Project
from contracts.v1.worker_termination import TerminationResult
from sandbox.seed import build_firm
from stack import Stack, running_stack
from tests._servers import start_worker_process, stop_process

pytestmark = pytest.mark.e2e

POLL_EVERY_2S = {"PSSYNC_HCM_POLL_INTERVAL_S": "2"}

FIRM = build_firm(7)
EID = "01JTERM0000000000000000001"


def count(stack: Stack, system: str, table: str, where: str = "1=1") -> int:
    with stack.sandbox.state(system).engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar_one())


def rows(stack: Stack, system: str, sql: str) -> list[Any]:
    with stack.sandbox.state(system).engine.connect() as conn:
        return list(conn.execute(text(sql)).all())


async def test_termination_reaches_psa_and_erp_and_survives_restarts(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / ".pssync")
    async with running_stack(settings, ephemeral_ports=True, run_worker=False) as stack:
        today = date.today()
        active = [w for w in FIRM.workers if w.status == "active" and w.termination_date is None]
        leaver, second = active[0], active[1]
        cost_center = leaver.cost_center
        deployment = worker.Deployment.from_settings(stack.settings)
        psa, erp, hcm = deployment.psa, deployment.erp, deployment.hcm
        assert isinstance(psa, KantataPsa) and isinstance(erp, NetSuiteErp)
        assert isinstance(hcm, WorkdayHcm)
        try:
            # A project in PSA and ERP, both workers staffed on it, time entered.
            project = Project(
                name="Termination e2e",
                customer_id="ACC-TERM",
                billing_rule=BillingRule.TIME_AND_MATERIALS,
                contract_value=Money("50000.00", "USD"),
                start_date=today - timedelta(days=90),
                end_date=today + timedelta(days=180),
                cost_center=cost_center,
                delivery_manager=active[5].id,
                source_system=System.CRM,
            )
            psa_id = await psa.create_project_shell(project, enterprise_id=EID)
            customer = await erp.upsert_customer(
                Customer(external_id="ACC-TERM", name="Term Co", source_system=System.CRM),
                enterprise_id="01JTERM0000000000000000002",
            )
            await erp.upsert_project(
                project, enterprise_id=EID, customer_erp_id=customer, budget=Money("50000", "USD")
            )

            async def staff(worker_id: str, role: str) -> str:
                user = await psa._require_user(worker_id)
                body = await psa._call(
                    "POST",
                    "/assignments.json",
                    json={
                        "assignment": {
                            "workspace_id": int(psa_id),
                            "user_id": int(user),
                            "role": role,
                            "start_date": (today - timedelta(days=30)).isoformat(),
                            "end_date": (today + timedelta(days=60)).isoformat(),
                            "allocated_minutes": 9000,
                        }
                    },
                )
                return str(psa._one(body)["id"])

            async def log_time(worker_id: str, on: date, minutes: int) -> str:
                user = await psa._require_user(worker_id)
                body = await psa._call(
                    "POST",
                    "/time_entries.json",
                    json={
                        "time_entry": {
                            "workspace_id": int(psa_id),
                            "user_id": int(user),
                            "date_performed": on.isoformat(),
                            "time_in_minutes": minutes,
                        }
                    },
                )
                entry = str(psa._one(body)["id"])
                await psa._call(
                    "PUT", f"/time_entries/{entry}.json", json={"time_entry": {"approved": True}}
                )
                return entry

            a1 = await staff(leaver.id, leaver.role)
            a2 = await staff(second.id, second.role)
            e1 = await log_time(leaver.id, today - timedelta(days=2), 480)
            e2 = await log_time(second.id, today - timedelta(days=1), 240)

            log = tmp_path / "worker.log"
            # 1. Terminate in HCM (effective today): within a poll interval, PSA and ERP agree.
            # The worker is a real `pssync worker` process, which creates the poll Schedule.
            await hcm.terminate(leaver.id, today, today - timedelta(days=1))
            proc = start_worker_process(stack.settings, log, POLL_EVERY_2S)
            try:
                wid = termination_workflow_id(settings.hcm.tenant, leaver.id, today.isoformat())

                def leaver_done() -> bool:
                    return (
                        count(stack, "psa", "psa_assignment", f"id = {a1} AND end_date = "
                              f"'{today - timedelta(days=1)}'") == 1
                        and count(stack, "erp", "erp_timebill") == 1
                        and count(stack, "psa", "psa_resource_request", "status = 'open'") == 1
                    )  # fmt: skip

                await eventually(leaver_done, 20)
                user = await psa._require_user(leaver.id)
                closed = rows(
                    stack, "psa", f"SELECT time_entry_closed_after FROM psa_user WHERE id = {user}"
                )
                assert str(closed[0][0]) == str(today - timedelta(days=1))
                [timebill] = rows(stack, "erp", "SELECT external_id, hours FROM erp_timebill")
                assert timebill[0].startswith(f"psa-time-{e1}-")
                assert float(timebill[1]) == 8.0
            finally:
                # The worker process dies mid-stream (the poller keeps firing into the void).
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            # 2. While nothing runs: HCM terminates the second worker and rescinds the first.
            await hcm.terminate(second.id, today, today - timedelta(days=1))
            await hcm.rescind_termination(leaver.id)
            # A new worker process; it brings the Schedule up to date as it starts.
            proc = start_worker_process(stack.settings, log, POLL_EVERY_2S)
            try:
                handle = stack.client.get_workflow_handle(wid, result_type=TerminationResult)
                # The killed worker's tasks time out first; a loaded CI machine needs the room.
                result = await asyncio.wait_for(handle.result(), 90)
                assert result.outcome.value == "rescinded"
                wid2 = termination_workflow_id(settings.hcm.tenant, second.id, today.isoformat())

                def second_done() -> bool:
                    return (
                        count(stack, "psa", "psa_assignment", f"id = {a2} AND end_date = "
                              f"'{today - timedelta(days=1)}'") == 1
                        and count(stack, "erp", "erp_timebill") == 2
                    )  # fmt: skip

                await eventually(second_done, 20)
                # a few more polls see the same events again (overlap): nothing doubles
                polls_before = await _poll_runs(stack.client)
                await eventually(lambda: _more_polls(stack.client, polls_before + 2), 20)
                # the first worker's PSA state is back; each change happened once
                assert count(stack, "psa", "psa_assignment", f"id = {a1}") == 1
                assert (
                    count(stack, "psa", "psa_assignment", f"id = {a1} AND end_date = "
                          f"'{today + timedelta(days=60)}'") == 1
                )  # fmt: skip
                closed = rows(
                    stack, "psa", f"SELECT time_entry_closed_after FROM psa_user WHERE id = {user}"
                )
                assert closed[0][0] is None
                requests = rows(stack, "psa", "SELECT status FROM psa_resource_request")
                assert sorted(r[0] for r in requests) == ["cancelled", "open"]
                timebills = rows(stack, "erp", "SELECT external_id FROM erp_timebill")
                assert sorted(t[0].split("-v")[0] for t in timebills) == sorted(
                    [f"psa-time-{e1}", f"psa-time-{e2}"]
                )
                # one run per worker and effective date
                runs = [
                    w.id
                    async for w in stack.client.list_workflows("WorkflowType = 'WorkerTermination'")
                ]
                assert sorted(runs) == sorted([wid, wid2])
                assert stack.store.get_state(f"hcm.changed_workers/{settings.hcm.tenant}")
            finally:
                stop_process(proc)
        finally:
            with contextlib.suppress(Exception):
                await stack.client.get_schedule_handle("hcm-changes-poller").delete()
            await deployment.aclose()


async def _poll_runs(client: Client) -> int:
    return len([w async for w in client.list_workflows("WorkflowType = 'HcmChangesPoller'")])


async def _more_polls(client: Client, at_least: int) -> bool:
    return await _poll_runs(client) >= at_least
