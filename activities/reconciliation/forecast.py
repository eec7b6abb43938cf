"""Forecast alignment: a chunk of projects compared (`recon.compare.forecast_alignment`, ERP
queue): each project's PSA assignments and what its assignment sync knows against the ERP labor
forecast per period, and its labor cost against its ERP budget.

Per project: the PSA's assignments (`list_assignments`, one request), the project's
`AssignmentSync` (its `staffing` query: the assignments it holds and the periods it forecast)
and the ERP budget (`get_budget`). Per chunk: the ERP forecasts of all its projects in the
periods any of them needs (`list_forecasts_of`: SuiteQL over the forecast custom record, 100
projects a query, pages of 1,000), and the workers' cost rates once (`get_cost_rate`).
`forecast_rules` compares them with the sync's own forecast computation. Safe repairs go
through the sync: thin `assignment_changed` signals (signal-with-start, as the gateway routes
`assignment.changed`), after which it re-reads the assignments and writes the forecast, never
over a finance-approved or locked period. A sync that is not running (terminated, timed out)
is started afresh with the periods it must cover and told of the whole staffing
(`forecast_rules.restart_of`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import SearchAttributePair
from temporalio.service import RPCError, RPCStatusCode

from activities._errors import translate_errors
from activities.assignment_sync import facts_of
from activities.reconciliation._base import (
    HEARTBEAT_EVERY_S,
    _CallCounter,
    _ReconBase,
    heartbeat_every,
)
from activities.reconciliation.forecast_rules import (
    ErpForecast,
    ForecastContext,
    ForecastFinding,
    ForecastSide,
    SyncNudge,
    SyncRestart,
    SyncView,
    compare_forecast,
    periods_to_read,
    restart_of,
)
from contracts.errors import NotFoundError
from contracts.money import Money
from contracts.naming import assignment_sync_workflow_id
from contracts.v1.assignment_sync import (
    ASSIGNMENT_CHANGED_SIGNAL,
    ASSIGNMENT_SYNC,
    PROCESS_ASSIGNMENT_SYNC,
    STAFFING_QUERY,
    AssignmentChange,
    AssignmentFacts,
    AssignmentSyncInput,
    AssignmentSyncState,
    Staffing,
)
from contracts.v1.models import Forecast
from contracts.v1.reconciliation import CompareChunk, RunTotals
from contracts.v1.time_to_invoice import period_of
from plumbing.temporal import BUSINESS_PROCESS, signal_with_start

PROJECTS_AT_ONCE = 4


class _ForecastMixin(_ReconBase):
    budget_variance: Decimal

    @activity.defn(name="recon.compare.forecast_alignment")
    @translate_errors
    async def compare_forecast_alignment(self, request: CompareChunk) -> RunTotals:
        """Compare a chunk of projects' staffing with the ERP forecast; repair through the
        assignment sync, escalate the rest, record all."""
        ticker = asyncio.create_task(heartbeat_every(HEARTBEAT_EVERY_S))
        try:
            return await self._compare_forecasts(request)
        finally:
            ticker.cancel()

    async def _compare_forecasts(self, request: CompareChunk) -> RunTotals:
        counter = _CallCounter(self.psa, self.erp)
        limit = asyncio.Semaphore(PROJECTS_AT_ONCE)
        rates: dict[str, Money | None] = {}
        rate_lock = asyncio.Lock()

        async def rate_of(worker_id: str) -> None:
            async with rate_lock:
                if worker_id not in rates:
                    counter.note(self.erp)
                    rates[worker_id] = await self.erp.get_cost_rate(worker_id)

        async def staffing(psa_project_id: str, erp_project: str | None) -> _Staffed | None:
            async with limit:
                return await self._staffing(request.tenant, psa_project_id, erp_project, counter)

        staffed = [
            s
            for s in await asyncio.gather(
                *(staffing(u.psa_project_id, u.erp_project) for u in request.units)
            )
            if s is not None
        ]
        forecasts: dict[str, dict[str, Forecast]] = {}
        if staffed:
            counter.note(self.erp)
            forecasts = await self.erp.list_forecasts_of(
                sorted({s.erp_project for s in staffed}),
                periods=sorted({p for s in staffed for p in s.periods}),
            )
        activity.heartbeat()

        async def one(project: _Staffed) -> ForecastSide | None:
            async with limit:
                held = forecasts.get(project.erp_project)
                if held is None:
                    return None  # no ERP project: project master's drift, not a forecast's
                side = await self._forecast_side(project, held, counter)
                for a in side.assignments:
                    if a.worker_id:
                        await rate_of(a.worker_id)
                return side

        found = await asyncio.gather(*(one(s) for s in staffed))
        sides = [s for s in found if s is not None]
        ctx = ForecastContext(
            tenant=request.tenant,
            now=datetime.now(UTC),
            settle_s=request.settle_s,
            since_period=period_of(request.since) if request.since else None,
            budget_variance=getattr(self, "budget_variance", ForecastContext.budget_variance),
        )
        findings = [f for side in sides for f in compare_forecast(ctx, _with_rates(side, rates))]
        by_project = {s.psa_project_id: s for s in sides}

        async def repair(chunk: CompareChunk, repairs: Sequence[Any]) -> None:
            await self._repair_forecasts(chunk, repairs, by_project)

        totals = await self._settle(request, findings, repair)
        totals.records = sum(len(s.assignments) + len(s.erp) for s in sides)
        totals.projects = len(request.units)
        totals.vendor_calls = counter.total()
        return totals

    async def _staffing(
        self, tenant: str, psa_project_id: str, erp_project: str | None, counter: _CallCounter
    ) -> _Staffed | None:
        """The project's staffing, its sync's view and the periods to compare (None: the
        project has no ERP project, so nothing can be forecast)."""
        counter.note(self.psa)
        assignments = await self.psa.list_assignments(project_id=psa_project_id)
        if erp_project is None:
            counter.note(self.psa)
            try:
                project = await self.psa.get_project(psa_project_id)
            except NotFoundError:
                return None
            if project.enterprise_id is None:
                return None
            erp_project = f"eid:{project.enterprise_id}"
        facts = [facts_of(a) for a in assignments]
        sync = await self._sync_view(tenant, psa_project_id)
        changed = [a.updated_at for a in assignments if a.updated_at is not None]
        return _Staffed(
            psa_project_id=psa_project_id,
            erp_project=erp_project,
            assignments=facts,
            sync=sync,
            periods=periods_to_read(facts, sync),
            changed_at=max(changed) if changed else None,
        )

    async def _forecast_side(
        self, project: _Staffed, held: dict[str, Forecast], counter: _CallCounter
    ) -> ForecastSide:
        """The project as the systems hold it: its staffing, the ERP forecast of each period
        it needs (None: the ERP holds none for that month) and its ERP budget."""
        erp: dict[str, ErpForecast | None] = {}
        for period in project.periods:
            current = held.get(period)
            erp[period] = None if current is None else _erp_forecast(current)
        budget: Money | None = None
        counter.note(self.erp)
        try:
            budget = (await self.erp.get_budget(project.erp_project)).amount
        except NotFoundError:
            pass  # no budget held: no variance to measure
        activity.heartbeat()
        return ForecastSide(
            psa_project_id=project.psa_project_id,
            assignments=project.assignments,
            rates={},
            erp=erp,
            sync=project.sync,
            budget=budget,
            changed_at=project.changed_at,
        )

    async def _sync_view(self, tenant: str, psa_project_id: str) -> SyncView | None:
        """What the project's assignment sync holds (None: it has none)."""
        handle = self._client().get_workflow_handle(
            assignment_sync_workflow_id(tenant, psa_project_id)
        )
        try:
            staffing: Staffing = await handle.query(STAFFING_QUERY, result_type=Staffing)
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return None
            raise
        return SyncView(
            assignments={a.assignment_id: a.version for a in staffing.assignments},
            periods=tuple(f.period for f in staffing.forecast),
            pending=staffing.pending,
        )

    async def _repair_forecasts(
        self, request: CompareChunk, findings: Sequence[Any], sides: dict[str, ForecastSide]
    ) -> None:
        """Each project's sync told once (however many of its periods drifted): a running one
        what it missed; when none runs, a new one the whole staffing and its periods."""
        nudges: dict[str, SyncNudge] = {}
        for f in findings:
            if isinstance(f, ForecastFinding) and f.repair is not None:
                nudges.setdefault(f.repair.psa_project_id, f.repair)
        for project, nudge in sorted(nudges.items()):
            restart = restart_of(sides[project])
            if restart is not None and not await self._sync_running(request.tenant, project):
                await self._restart_sync(request.tenant, restart, task_queue=request.task_queue)
            else:
                await self._nudge_sync(request.tenant, nudge, task_queue=request.task_queue)

    async def _sync_running(self, tenant: str, psa_project_id: str) -> bool:
        handle = self._client().get_workflow_handle(
            assignment_sync_workflow_id(tenant, psa_project_id)
        )
        try:
            described = await handle.describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return False
            raise
        return described.status is WorkflowExecutionStatus.RUNNING

    async def _nudge_sync(self, tenant: str, nudge: SyncNudge, *, task_queue: str) -> None:
        start = AssignmentSyncInput(psa_tenant=tenant, psa_project_id=nudge.psa_project_id)
        await self._signal_sync(tenant, start, nudge.changes, task_queue=task_queue)

    async def _restart_sync(self, tenant: str, restart: SyncRestart, *, task_queue: str) -> None:
        """Start the sync knowing the periods it must cover (a month whose assignments all
        went is written as zero), then tell it of the whole staffing."""
        known = AssignmentSyncState(
            psa_tenant=tenant,
            psa_project_id=restart.psa_project_id,
            periods=list(restart.periods),
        )
        start = AssignmentSyncInput(
            psa_tenant=tenant, psa_project_id=restart.psa_project_id, state=known
        )
        await self._signal_sync(tenant, start, restart.changes, task_queue=task_queue)

    async def _signal_sync(
        self,
        tenant: str,
        start: AssignmentSyncInput,
        changes: Sequence[tuple[str, int]],
        *,
        task_queue: str,
    ) -> None:
        project = start.psa_project_id
        for assignment_id, version in changes:
            await signal_with_start(
                self._client(),
                ASSIGNMENT_SYNC,
                start,
                id=assignment_sync_workflow_id(tenant, project),
                signal=ASSIGNMENT_CHANGED_SIGNAL,
                signal_arg=AssignmentChange(assignment_id=assignment_id, version=version),
                task_queue=task_queue,
                search_attributes=[SearchAttributePair(BUSINESS_PROCESS, PROCESS_ASSIGNMENT_SYNC)],
                static_summary=f"Staffing of PSA project {project} -> ERP labor forecast",
            )
            activity.heartbeat()


@dataclass(frozen=True)
class _Staffed:
    """What the PSA and the assignment sync hold of one project, and the ERP project it is."""

    psa_project_id: str
    erp_project: str
    assignments: list[AssignmentFacts]
    sync: SyncView | None
    periods: list[str]
    """The periods whose ERP forecast the comparison needs."""
    changed_at: datetime | None


def _erp_forecast(forecast: Any) -> ErpForecast:
    return ErpForecast(
        period=forecast.period,
        hours=forecast.hours,
        labor_cost=forecast.labor_cost.amount,
        currency=forecast.labor_cost.currency,
        status=forecast.status.value,
    )


def _with_rates(side: ForecastSide, rates: dict[str, Money | None]) -> ForecastSide:
    workers = {a.worker_id for a in side.assignments if a.worker_id}
    return ForecastSide(
        psa_project_id=side.psa_project_id,
        assignments=side.assignments,
        rates={w: rates.get(w) for w in workers},
        erp=side.erp,
        sync=side.sync,
        budget=side.budget,
        changed_at=side.changed_at,
        settings=side.settings,
    )
