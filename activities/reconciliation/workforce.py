"""Workforce: HCM leavers compared with their PSA staffing and time (`recon.compare.workforce`,
ERP queue like every comparison), repaired through the termination saga.

One unit of work per run (the tenant's workers, or one project's share of them): HCM's workers
(`list_workers`, one request), and per leaver — a termination whose date has come — their PSA
assignments (`list_assignments(worker_id=...)`), their time from `OPEN_TIME_LOOKBACK_DAYS`
before the last day on (`list_worker_time`), and their termination run's state (its `status`
query). `workforce_rules` compares them. Safe repair: the worker's `WorkerTermination` is
started for the termination HCM holds, exactly as the HCM poller starts it
(`activities.hcm_poll`: the id from tenant, worker and termination date, so a run already there
is joined, and a finished one is never started again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowQueryFailedError
from temporalio.common import SearchAttributePair
from temporalio.service import RPCError, RPCStatusCode

from activities._errors import translate_errors
from activities.hcm_poll import latest_run_name
from activities.reconciliation._base import (
    HEARTBEAT_EVERY_S,
    _CallCounter,
    _ReconBase,
    heartbeat_every,
)
from activities.reconciliation.workforce_rules import (
    Leaver,
    LeaverAssignment,
    LeaverTime,
    RunState,
    TerminationRepair,
    WorkforceContext,
    WorkforceFinding,
    compare_leaver,
    is_leaver,
)
from connectors.hcm import HcmPort
from contracts.ids import InvalidId, canonical_hcm_id
from contracts.naming import termination_workflow_id
from contracts.systems import System
from contracts.v1 import Worker
from contracts.v1.processes import STATUS_QUERY
from contracts.v1.reconciliation import CompareChunk, RunTotals
from contracts.v1.worker_termination import (
    PROCESS_WORKER_TERMINATION,
    WORKER_TERMINATION,
    TerminationInput,
    TerminationStatus,
    TerminationStep,
)
from plumbing.temporal import BUSINESS_PROCESS, WORKER_ID, start_or_join

LEAVERS_AT_ONCE = 4
OPEN_TIME_LOOKBACK_DAYS = 92
"""Unapproved time this long before the last day still counts as open (older time is the
payroll's history, not a leaver's loose end)."""
_BEFORE_EFFECTIVE = frozenset(
    {
        TerminationStep.FLAGGING_CONFLICTS,
        TerminationStep.WAITING_FOR_EFFECTIVE_DATE,
        TerminationStep.ENDING_ASSIGNMENTS,
        TerminationStep.RAISING_BACKFILL,
        TerminationStep.CLOSING_TIME_ENTRY,
    }
)
_RESCINDED = frozenset({TerminationStep.RESCINDING, TerminationStep.RESCINDED})


class _WorkforceMixin(_ReconBase):
    hcm: HcmPort | None

    @activity.defn(name="recon.compare.workforce")
    @translate_errors
    async def compare_workforce(self, request: CompareChunk) -> RunTotals:
        """Compare every leaver HCM holds with the PSA; start their termination runs where
        missing, escalate the rest, record all."""
        ticker = asyncio.create_task(heartbeat_every(HEARTBEAT_EVERY_S))
        try:
            return await self._compare_workforce(request)
        finally:
            ticker.cancel()

    def _hcm(self) -> HcmPort:
        if self.hcm is None:
            raise RuntimeError("workforce reconciliation needs the HCM port")
        return self.hcm

    def _hcm_tenant(self) -> str:
        return self.tenants.get(System.HCM.value, "default")

    async def _compare_workforce(self, request: CompareChunk) -> RunTotals:
        hcm = self._hcm()
        counter = _CallCounter(self.psa, hcm)
        now = datetime.now(UTC)
        today = now.date()
        counter.note(hcm)
        workers = await hcm.list_workers()
        leavers = [w for w in workers if is_leaver(w.termination_date, today)]
        only = {u.psa_project_id for u in request.units} - {"*"}
        limit = asyncio.Semaphore(LEAVERS_AT_ONCE)

        async def one(worker: Worker) -> Leaver | None:
            async with limit:
                return await self._leaver(worker, counter)

        found = [x for x in await asyncio.gather(*(one(w) for w in leavers)) if x is not None]
        ctx = WorkforceContext(
            tenant=request.tenant,
            today=today,
            now=now,
            settle_s=request.settle_s,
            since=request.since,
            project=next(iter(only)) if len(only) == 1 else None,
        )
        findings = [f for leaver in found for f in compare_leaver(ctx, leaver)]
        totals = await self._settle(request, findings, self._repair_workforce)
        totals.records = len(workers) + sum(len(x.assignments) + len(x.time) for x in found)
        totals.projects = len({f.drift.project for f in findings})
        totals.vendor_calls = counter.total()
        return totals

    async def _leaver(self, worker: Worker, counter: _CallCounter) -> Leaver | None:
        try:
            worker_id = canonical_hcm_id(worker.external_id)
        except InvalidId:
            return None
        assert worker.termination_date is not None
        last = worker.last_day_worked or worker.termination_date
        counter.note(self.psa, 2)
        assignments = await self.psa.list_assignments(worker_id=worker_id)
        time = await self.psa.list_worker_time(
            worker_id, performed_from=last - timedelta(days=OPEN_TIME_LOOKBACK_DAYS)
        )
        run, run_id = await self._termination_run(worker_id, worker.termination_date.isoformat())
        activity.heartbeat()
        return Leaver(
            worker_id=worker_id,
            termination_date=worker.termination_date,
            last_day=last,
            assignments=[
                LeaverAssignment(a.external_id, a.project_id, a.start_date, a.end_date)
                for a in assignments
            ],
            time=[
                LeaverTime(t.external_id, t.project_id, t.date_performed, t.approved) for t in time
            ],
            run=run,
            run_id=run_id,
            updated_at=worker.updated_at,
        )

    async def _termination_run(self, worker_id: str, day: str) -> tuple[RunState, str | None]:
        """The state of the worker's termination run for that date (its `status` query)."""
        workflow_id = termination_workflow_id(self._hcm_tenant(), worker_id, day)
        handle = self._client().get_workflow_handle(workflow_id)
        try:
            status: TerminationStatus = await handle.query(
                STATUS_QUERY, result_type=TerminationStatus
            )
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return RunState.NONE, None
            return RunState.ACTED, workflow_id  # closed in a way it cannot answer: finished
        except WorkflowQueryFailedError:
            return RunState.ACTED, workflow_id
        if status.rescinded_by is not None or status.step in _RESCINDED:
            return RunState.RESCINDED, workflow_id
        if status.step in _BEFORE_EFFECTIVE:
            return RunState.IN_PROGRESS, workflow_id
        return RunState.ACTED, workflow_id

    async def _repair_workforce(self, request: CompareChunk, findings: Sequence[Any]) -> None:
        """Each leaver's termination run started (or joined) once."""
        repairs: dict[str, TerminationRepair] = {}
        for f in findings:
            if isinstance(f, WorkforceFinding) and f.repair is not None:
                repairs.setdefault(f.repair.worker_id, f.repair)
        for _, repair in sorted(repairs.items()):
            await self._start_termination(repair, task_queue=request.task_queue)
            activity.heartbeat()

    async def _start_termination(self, repair: TerminationRepair, *, task_queue: str) -> str:
        tenant = self._hcm_tenant()
        day = repair.termination_date.isoformat()
        workflow_id = termination_workflow_id(tenant, repair.worker_id, day)
        result = await start_or_join(
            self._client(),
            WORKER_TERMINATION,
            TerminationInput(
                hcm_tenant=tenant,
                worker_id=repair.worker_id,
                termination_date=repair.termination_date,
                last_day_worked=repair.last_day,
            ),
            id=workflow_id,
            task_queue=task_queue,
            search_attributes=[
                SearchAttributePair(WORKER_ID, repair.worker_id),
                SearchAttributePair(BUSINESS_PROCESS, PROCESS_WORKER_TERMINATION),
            ],
            # ids only: summaries carry no personal data (docs/security.md)
            static_summary=f"Termination of worker {repair.worker_id}, effective {day}",
            static_details="started by reconciliation: the HCM poller never saw it",
        )
        await asyncio.to_thread(
            self.store.put_state, latest_run_name(tenant, repair.worker_id), workflow_id
        )
        return f"termination run {workflow_id}: {result.outcome}"
