"""Reconciliation of the workforce on the time-skipping server, over the in-memory fakes and a
real SQLite store, wired exactly as `worker.build_workers` does.

Two workers leave in HCM. The first's termination never reached pssync (entered in a window the
HCM poller had already read): their assignment runs on past their last day and they booked
time after it. The second's termination run was rescinded in pssync although HCM still shows
them terminated, and their assignment (restored by the rescind) runs on. A `Reconciliation`
run starts the first's termination saga (the repair: it ends the assignment) and hands the
second to a person; the next pass verifies the repair, finds the time the saga cannot undo and
escalates it; the pass after finds nothing new.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

import store
from activities.reconciliation import start_reconciliation
from connectors.erp import FakeErp
from connectors.hcm import FakeHcm
from connectors.psa import FakePsa
from contracts import Money, System
from contracts.naming import termination_workflow_id
from contracts.settings import Settings, load_settings
from contracts.v1 import Customer
from contracts.v1 import Worker as HcmWorker
from contracts.v1.processes import STATUS_QUERY
from contracts.v1.reconciliation import (
    ReconciliationReport,
    reconciliation_desk_workflow_id,
    reconciliation_input,
)
from contracts.v1.worker_termination import (
    RESCIND_SIGNAL,
    WORKER_TERMINATION,
    RescindRequest,
    RescindSource,
    TerminationInput,
    TerminationStatus,
    TerminationStep,
)
from sandbox.temporal import time_skipping_temporal
from tests.connectors._psa_fixtures import EID, make_project
from tests.workflows._worlds import (
    fake_deployment,
    open_project,
    query_until,
    running_workers,
    sqlite_store,
)

GONE, RESCINDED = "W-00051", "W-00052"
ACTED = {
    TerminationStep.WAITING_FOR_PAYROLL_CUTOFF,
    TerminationStep.WAITING_FOR_RESOLUTION,
    TerminationStep.OPEN_FOR_RESCIND,
    TerminationStep.DONE,
}
"""The run took its effective steps (assignments ended, time entry closed)."""


@pytest.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_temporal() as env:
        yield env


@dataclass
class World:
    client: Client
    queue: str
    settings: Settings
    psa: FakePsa
    hcm: FakeHcm
    store: store.Store
    project: str
    today: date

    async def reconcile(self, **changes: Any) -> ReconciliationReport:
        request = reconciliation_input(self.settings, "workforce", requested_by="test")
        request = request.model_copy(update={"settle_s": 0.0, **changes})
        handle = await start_reconciliation(self.client, request, task_queue=self.queue)
        return await handle.result()

    def run_id(self, worker: str, day: date) -> str:
        return termination_workflow_id(self.settings.hcm.tenant, worker, day.isoformat())

    def items(self) -> dict[tuple[str, str], Any]:
        """(drift kind, worker) -> the open reconciliation item."""
        return {
            (i.cause_code, i.context["keys"]["worker_id"]): i
            for i in self.store.list_exceptions(process="reconciliation")
            if i.status != "resolved"
        }

    def running_past(self, worker: str, day: date) -> list[str]:
        return [
            a.external_id
            for a in self.psa.assignments.values()
            if a.worker_id == worker and a.end_date > day
        ]


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def world_of(env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[World]:
    today = (await env.get_current_time()).astimezone(UTC).date()
    months = {f"{(today + timedelta(days=d)):%Y-%m}" for d in range(-90, 120)}
    erp = FakeErp(
        cost_centers=["CC-100"],
        open_periods=sorted(months),
        cost_rates={GONE: Money("80", "USD"), RESCINDED: Money("80", "USD")},
    )
    psa = FakePsa()
    project = make_project(rate_card_id=None).model_copy(
        update={"start_date": today - timedelta(days=90), "end_date": today + timedelta(days=365)}
    )
    pid = await open_project(
        psa,
        erp,
        project,
        enterprise_id=EID,
        customer=Customer(external_id="ACC-1", name="Acme", source_system=System.CRM),
    )
    workers = []
    for w in (GONE, RESCINDED):
        psa.add_user(w, w, role="Consultant", start_date=today - timedelta(days=400))
        workers.append(
            HcmWorker(
                external_id=w,
                name=w,
                hire_date=today - timedelta(days=400),
                cost_center="CC-100",
                source_system=System.HCM,
            )
        )
    hcm = FakeHcm(workers)
    with sqlite_store(tmp_path) as (url, st):
        settings = load_settings(home=tmp_path, database_url=url)
        settings.psa.tenant = f"t-{uuid.uuid4().hex[:8]}"
        settings.hcm.tenant = settings.psa.tenant
        deployment = fake_deployment(settings=settings, store=st, psa=psa, erp=erp, hcm=hcm)
        queue = f"recon-wf-{uuid.uuid4().hex[:8]}"
        async with running_workers(env.client, deployment, queue):
            world = World(env.client, queue, settings, psa, hcm, st, pid, today)
            try:
                yield world
            finally:
                for wid in (
                    reconciliation_desk_workflow_id(settings.psa.tenant),
                    *(world.run_id(w, today - timedelta(days=3)) for w in (GONE, RESCINDED)),
                ):
                    with contextlib.suppress(Exception):
                        await env.client.get_workflow_handle(wid).terminate()


async def test_leavers_are_found_their_termination_run_started_or_escalated(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with world_of(ts_env, tmp_path) as world:
        psa, today = world.psa, world.today
        left = today - timedelta(days=3)
        for w in (GONE, RESCINDED):
            psa.add_assignment(
                world.project,
                "Consultant",
                today - timedelta(days=30),
                today + timedelta(days=60),
                worker_id=w,
                minutes=6000,
            )
        late = psa.add_time_entry(world.project, GONE, left + timedelta(days=1), 120)

        # The second worker's termination ran and was rescinded in pssync; HCM keeps it.
        # (Before any run is awaited: awaiting a result lets the server skip time.)
        await world.hcm.terminate(RESCINDED, left)
        handle = await world.client.start_workflow(
            WORKER_TERMINATION,
            TerminationInput(
                hcm_tenant=world.settings.hcm.tenant,
                worker_id=RESCINDED,
                termination_date=left,
                last_day_worked=left,
            ),
            id=world.run_id(RESCINDED, left),
            task_queue=world.queue,
        )
        await query_until(
            handle,
            STATUS_QUERY,
            TerminationStatus,
            lambda s: s.step in ACTED,
            timeout_s=30,
            poll_s=0.1,
            stuck=lambda s: f"the termination is at {s.step}",
        )
        assert world.running_past(RESCINDED, left) == []
        await handle.signal(
            RESCIND_SIGNAL,
            RescindRequest(actor="hcm", source=RescindSource.HCM_RESCIND, reason="test"),
        )
        await query_until(
            handle,
            STATUS_QUERY,
            TerminationStatus,
            lambda s: s.step is TerminationStep.RESCINDED,
            timeout_s=30,
            poll_s=0.1,
            stuck=lambda s: f"the rescind is at {s.step}",
        )
        assert len(world.running_past(RESCINDED, left)) == 1
        # The first worker's termination is entered in HCM; no poller ever sees it.
        await world.hcm.terminate(GONE, left)

        dry = await world.reconcile(dry_run=True)
        assert dry.found == 3 and dry.repaired == dry.escalated == 0, dry

        first = await world.reconcile()
        assert first.by_kind == {"leaver_future_time": 1, "leaver_open_assignment": 2}, first
        assert (first.found, first.repaired, first.escalated) == (3, 2, 1)
        # Repaired: the termination saga started for the leaver the poller missed, and it
        # ends their assignment on the last day.
        gone_run = world.client.get_workflow_handle(world.run_id(GONE, left))
        await query_until(
            gone_run,
            STATUS_QUERY,
            TerminationStatus,
            lambda s: s.step in ACTED,
            timeout_s=30,
            poll_s=0.1,
            stuck=lambda s: f"the repair's run is at {s.step}",
        )
        assert world.running_past(GONE, left) == []
        # Escalated: the rescinded run's worker is for a person.
        await eventually(lambda: len(world.items()) == 1, "the desk did not open the item")
        [(kind, worker)] = world.items()
        assert (kind, worker) == ("leaver_open_assignment", RESCINDED)
        assert "rescinded" in world.items()[(kind, worker)].detail

        # The next pass: the assignment is verified; the time after the last day, which the
        # saga does not undo, is now for a person.
        second = await world.reconcile()
        assert (second.found, second.gone, second.repaired) == (2, 1, 0), second
        assert (second.escalated, second.kept) == (1, 1)
        await eventually(lambda: len(world.items()) == 2, "the desk did not open the item")
        future = world.items()[("leaver_future_time", GONE)]
        assert future.context["keys"]["entry"] == f"time:{late.external_id}"
        assert "took its steps" in future.detail

        third = await world.reconcile()
        assert (third.new, third.repaired, third.escalated, third.kept) == (0, 0, 0, 2), third
