"""Reconciliation of forecast alignment on the time-skipping server, over the in-memory fakes
and a real SQLite store, wired exactly as `worker.build_workers` does.

Four projects' staffing reaches the ERP labor forecast through the real assignment sync; then
the systems drift the way real life makes them drift: an assignment deleted in the PSA with no
webhook (the sync's forecast goes stale), the same where the project's sync was terminated too
(its `staffing` query still answers; the repair must start a new run that writes the whole
forecast, the emptied month as zero), a draft forecast edited by hand in the ERP, a
finance-locked forecast edited by hand, a project whose `assignment.changed` webhooks were all
lost (no forecast at all) and whose staffing costs far more than its budget. A
`Reconciliation` run finds each, repairs the safe ones through the assignment sync and hands
the rest to people; asserted on the ERP forecast, the desk, and a second pass that finds
nothing new.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

import store
from activities.reconciliation import start_reconciliation
from connectors.erp import FakeErp
from connectors.psa import FakePsa
from contracts import Money
from contracts.naming import assignment_sync_workflow_id
from contracts.settings import Settings, load_settings
from contracts.v1.assignment_sync import SyncSettings
from contracts.v1.models import ForecastStatus
from contracts.v1.reconciliation import (
    ReconciliationReport,
    reconciliation_desk_workflow_id,
    reconciliation_input,
)
from sandbox.temporal import time_skipping_temporal
from tests.connectors._psa_fixtures import make_project
from tests.workflows._worlds import fake_deployment, open_project, running_workers, sqlite_store
from workflows.assignment_sync import route_assignment_changed

W1, W2 = "W-00001", "W-00002"
FAST = SyncSettings(debounce_s=0.2)


@pytest.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_temporal() as env:
        yield env


@dataclass
class World:
    env: WorkflowEnvironment
    client: Client
    queue: str
    settings: Settings
    psa: FakePsa
    erp: FakeErp
    store: store.Store
    projects: dict[str, tuple[str, str]]
    """name -> (PSA id, ERP id)."""
    months: list[str]

    async def reconcile(self, **changes: Any) -> ReconciliationReport:
        request = reconciliation_input(self.settings, "forecast_alignment", requested_by="test")
        request = request.model_copy(update={"settle_s": 0.0, **changes})
        handle = await start_reconciliation(self.client, request, task_queue=self.queue)
        return await handle.result()

    def hours(self, name: str, period: str) -> Decimal | None:
        found = self.erp.forecasts.get((self.projects[name][1], period))
        return found.hours if found else None

    async def sync(self, name: str) -> None:
        """Announce each of the project's assignments to its sync (the webhooks)."""
        pid = self.projects[name][0]
        for a in self.psa.assignments.values():
            if a.project_id == pid:
                await route_assignment_changed(
                    self.client,
                    self.settings.psa.tenant,
                    pid,
                    a.external_id,
                    int(a.source_version or 1),
                    task_queue=self.queue,
                    settings=FAST,
                )

    def items(self) -> dict[tuple[str, str | None], Any]:
        """(drift kind, PSA project) -> the open reconciliation item."""
        return {
            (i.cause_code, i.context.get("psa_project_id")): i
            for i in self.store.list_exceptions(process="reconciliation")
            if i.status != "resolved"
        }


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.05)


def _month(day: date) -> str:
    return f"{day:%Y-%m}"


@contextlib.asynccontextmanager
async def world_of(env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[World]:
    today = (await env.get_current_time()).astimezone(UTC).date()
    first = (today.replace(day=1) + timedelta(days=40)).replace(day=1)  # next month but one
    second = (first + timedelta(days=40)).replace(day=1)
    erp = FakeErp(
        cost_centers=["CC-100"],
        cost_rates={W1: Money("80.00", "USD"), W2: Money("100.00", "USD")},
    )
    psa = FakePsa()
    with sqlite_store(tmp_path) as (url, st):
        settings = load_settings(home=tmp_path, database_url=url)
        settings.psa.tenant = f"t-{uuid.uuid4().hex[:8]}"
        projects: dict[str, tuple[str, str]] = {}
        for n, (name, budget) in enumerate(
            (("P1", "90000"), ("P2", "90000"), ("P3", "1000"), ("P4", "90000"))
        ):
            eid = f"01JP00000000000000000008{n}0"
            project = make_project(rate_card_id=None).model_copy(
                update={"name": name, "contract_value": Money(budget, "USD")}
            )
            pid = await open_project(psa, erp, project, enterprise_id=eid)
            st.link_xref(eid, "project", "PSA", settings.psa.tenant, "workspace", pid)
            projects[name] = (pid, (await erp.get_project(f"eid:{eid}")).erp_id)
        queue = f"recon-fc-{uuid.uuid4().hex[:8]}"
        deployment = fake_deployment(settings=settings, store=st, psa=psa, erp=erp)
        async with running_workers(env.client, deployment, queue):
            world = World(
                env,
                env.client,
                queue,
                settings,
                psa,
                erp,
                st,
                projects,
                [_month(first), _month(second)],
            )
            try:
                yield world
            finally:
                wids = [reconciliation_desk_workflow_id(settings.psa.tenant)]
                wids += [
                    assignment_sync_workflow_id(settings.psa.tenant, p)
                    for p, _ in projects.values()
                ]
                for wid in wids:
                    with contextlib.suppress(Exception):
                        await env.client.get_workflow_handle(wid).terminate()


def _week(month: str) -> tuple[date, date]:
    start = date.fromisoformat(f"{month}-01")
    while start.weekday() != 0:
        start += timedelta(days=1)
    return start, start + timedelta(days=4)


async def test_forecast_drift_is_found_repaired_or_escalated_and_a_second_pass_agrees(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with world_of(ts_env, tmp_path) as world:
        psa, erp = world.psa, world.erp
        m1, m2 = world.months
        (p1, _), (p2, e2), (p3, _), (p4, _) = (world.projects[n] for n in ("P1", "P2", "P3", "P4"))
        psa.add_assignment(p1, "Consultant", *_week(m1), worker_id=W1, minutes=40 * 60)
        gone = psa.add_assignment(p1, "Consultant", *_week(m2), worker_id=W2, minutes=40 * 60)
        psa.add_assignment(p2, "Consultant", *_week(m1), worker_id=W1, minutes=20 * 60)
        psa.add_assignment(p2, "Consultant", *_week(m2), worker_id=W1, minutes=30 * 60)
        psa.add_assignment(p3, "Consultant", *_week(m1), worker_id=W2, minutes=40 * 60)
        psa.add_assignment(p4, "Consultant", *_week(m1), worker_id=W1, minutes=10 * 60)
        gone4 = psa.add_assignment(p4, "Consultant", *_week(m2), worker_id=W1, minutes=10 * 60)
        await world.sync("P1")
        await world.sync("P2")  # P3's webhooks were all lost
        await world.sync("P4")
        await eventually(
            lambda: (
                world.hours("P1", m2) == Decimal("40.00")
                and world.hours("P2", m2) == Decimal("30.00")
                and world.hours("P4", m2) == Decimal("10.00")
            ),
            "the sync did not write the forecasts",
        )
        assert world.hours("P3", m1) is None
        clean = await world.reconcile(project=p1)
        assert clean.found == 0 and clean.projects == 1, clean

        # The drift, none of it announced to pssync:
        del psa.assignments[gone.external_id]  # P1: deleted in the PSA, no webhook
        del psa.assignments[gone4.external_id]  # P4: the same, and its sync terminated
        with contextlib.suppress(RPCError):  # already closed: timed out on this server
            await world.client.get_workflow_handle(
                assignment_sync_workflow_id(world.settings.psa.tenant, p4)
            ).terminate("an operator stopped it")
        key = (e2, m1)  # P2: a draft edited by hand; a locked one edited by hand
        erp.forecasts[key] = erp.forecasts[key].model_copy(update={"hours": Decimal("12")})
        key = (e2, m2)
        erp.forecasts[key] = erp.forecasts[key].model_copy(
            update={"hours": Decimal("99"), "status": ForecastStatus.LOCKED}
        )

        dry = await world.reconcile(dry_run=True)
        assert dry.found == 6 and dry.repaired == dry.escalated == 0

        first = await world.reconcile()
        assert first.by_kind == {
            "assignment_budget_variance": 1,
            "forecast_hours_mismatch": 2,
            "forecast_missing": 1,
            "forecast_stale": 2,
        }, first
        assert (first.found, first.repaired, first.escalated, first.projects) == (6, 4, 2, 4)

        # Repaired through the sync: P1's and P4's deleted months read zero (P4's by a new run
        # of its sync, which keeps its other month), P2's draft is restored, P3 gets its
        # forecast (its sync started by the repair); the locked one is untouched.
        # New syncs debounce 5 s (the default settings, as the gateway starts them): move the
        # server's clock while waiting, so a timer the loaded worker creates late still fires.
        # (The time-skipping server may also jump past the syncs' default execution timeout
        # while a run is awaited: then every sync here is repaired as P4's is.)
        deadline = asyncio.get_running_loop().time() + 60
        while not (
            world.hours("P1", m2) == Decimal("0.00")
            and world.hours("P4", m2) == Decimal("0.00")
            and world.hours("P2", m1) == Decimal("20.00")
            and world.hours("P3", m1) == Decimal("40.00")
        ):
            assert asyncio.get_running_loop().time() < deadline, (
                "the repairs did not land",
                world.hours("P1", m2),
                world.hours("P4", m2),
                world.hours("P2", m1),
                world.hours("P3", m1),
            )
            await world.env.sleep(1)
        assert world.hours("P2", m2) == Decimal("99")
        assert world.hours("P1", m1) == Decimal("40.00")
        assert world.hours("P4", m1) == Decimal("10.00")
        await eventually(lambda: len(world.items()) == 2, "the desk did not open two items")
        items = world.items()
        assert set(items) == {("forecast_hours_mismatch", p2), ("assignment_budget_variance", p3)}
        locked = items[("forecast_hours_mismatch", p2)]
        assert "locked" in locked.detail and locked.context["keys"]["period"] == m2
        variance = items[("assignment_budget_variance", p3)]
        assert variance.context["values"]["psa"] == "4000.00"
        assert Decimal(variance.context["values"]["erp"]) == 1000
        assert variance.context["actions"] == ["skip"]

        second = await world.reconcile()
        assert (second.new, second.repaired, second.escalated) == (0, 0, 0), second
        assert (second.found, second.kept, second.gone) == (2, 2, 4)
        assert len(world.items()) == 2
