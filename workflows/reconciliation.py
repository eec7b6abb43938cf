"""Reconciliation: `Reconciliation`, one run over one domain and scope, and
`ReconciliationDesk`, the tenant's entity workflow that owns the drifts handed to people.

`Reconciliation` (started by a Schedule per domain, `pssync reconcile`, or
`POST /api/reconciliations`) records the run, then walks its scope a page of projects at a time:
`recon.plan` (the store) names the next projects, `recon.compare.<domain>` (ERP queue, at the
ERP's quota, heartbeating) reads the systems, compares, repairs what is safe through the
existing processes, escalates the rest to the desk and records every drift; `recon.finish`
closes the drifts of the scope it no longer found (verified) and records the report. A large
scope continues as new every `chunks_per_run` chunks (or when the server suggests it), carrying
its cursor and totals; a worker crash resumes at the chunk in flight (its heartbeat stops, the
server retries it; every step is idempotent).

`ReconciliationDesk` (id `reconcile-desk/{tenant}`, signal-with-started by the activities)
opens one exception item per escalated drift (`drifts_escalated`; the item id is the drift's
fingerprint and escalation, so a drift found again is never a second item), closes items whose
drift a later run found gone (`drifts_gone`), and takes a person's decision through the
`resolve_exception` update: `skip` acknowledges the drift, `retry` repairs it anyway. It
escalates an item left too long, continues as new before its history grows large, and completes
once idle with nothing open.

Deterministic: no I/O; activities by name; time from `workflow.now()`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows._desk import ExceptionDesk

with workflow.unsafe.imports_passed_through():
    from contracts.naming import erp_task_queue
    from contracts.v1.processes import (
        RESOLVE_EXCEPTION_UPDATE,
        ExceptionResolution,
        ResolutionAction,
    )
    from contracts.v1.reconciliation import (
        DESK_STATUS_QUERY,
        DRIFTS_ESCALATED_SIGNAL,
        DRIFTS_GONE_SIGNAL,
        PROCESS_RECONCILIATION,
        RECON_RESOLVER_ROLES,
        RECONCILIATION,
        RECONCILIATION_DESK,
        BeginRun,
        CompareChunk,
        DeskCarry,
        DeskInput,
        DeskItem,
        DeskStatus,
        DriftDecision,
        DriftResolutionResult,
        DriftsEscalated,
        DriftsGone,
        EscalatedDrift,
        FinishRun,
        PlanPage,
        PlanRequest,
        ReconciliationCarry,
        ReconciliationInput,
        ReconciliationReport,
        RunTotals,
        desk_item_id,
    )
    from workflows._common import BUSINESS_PROCESS

RECON_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["BusinessRuleViolation", "AuthError", "NotFoundError"],
)
"""Transient failures (an ERP outage, 429s) retry without limit: the run waits them out."""
STEP_TIMEOUT = timedelta(minutes=2)
COMPARE_TIMEOUT = timedelta(minutes=30)
HEARTBEAT_TIMEOUT = timedelta(seconds=30)
REPAIR_TIMEOUT = timedelta(minutes=5)
CLOSED_KEPT = 1000


@workflow.defn(name=RECONCILIATION)
class ReconciliationWorkflow:
    def __init__(self) -> None:
        self._details = "starting"

    @workflow.run
    async def run(self, request: ReconciliationInput) -> ReconciliationReport:
        workflow.upsert_search_attributes([BUSINESS_PROCESS.value_set(PROCESS_RECONCILIATION)])
        info = workflow.info()
        queue = info.task_queue
        carry = request.carry
        if carry is None:
            carry = ReconciliationCarry(run_id=info.workflow_id, started_at=workflow.now())
            await workflow.execute_activity(
                "recon.begin",
                BeginRun(**request.scope(), run_id=carry.run_id, started_at=carry.started_at),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=RECON_RETRY,
                summary="record the run",
            )
        totals, cursor, chunks_here = carry.totals, carry.cursor, 0
        while True:
            self._say(f"chunk {carry.chunks + chunks_here + 1}", totals)
            page: PlanPage = await workflow.execute_activity(
                "recon.plan",
                PlanRequest(
                    domain=request.domain,
                    tenant=request.tenant,
                    project=request.project,
                    after=cursor,
                    limit=request.page_size,
                ),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=RECON_RETRY,
                result_type=PlanPage,
                summary=f"next {request.page_size} projects after {cursor or 'the start'}",
            )
            if page.units:
                found: RunTotals = await workflow.execute_activity(
                    f"recon.compare.{request.domain.value}",
                    CompareChunk(
                        run_id=carry.run_id,
                        domain=request.domain,
                        tenant=request.tenant,
                        units=page.units,
                        since=request.since,
                        dry_run=request.dry_run,
                        settle_s=request.settle_s,
                        max_repairs=request.max_repairs,
                        task_queue=queue,
                        escalation_after_s=request.escalation_after_s,
                    ),
                    task_queue=erp_task_queue(queue),
                    start_to_close_timeout=COMPARE_TIMEOUT,
                    heartbeat_timeout=HEARTBEAT_TIMEOUT,
                    retry_policy=RECON_RETRY,
                    result_type=RunTotals,
                    summary=f"compare {len(page.units)} projects",
                )
                totals = totals.add(found)
                chunks_here += 1
            if page.cursor is None:
                break
            cursor = page.cursor
            if chunks_here >= request.chunks_per_run or info.is_continue_as_new_suggested():
                workflow.continue_as_new(
                    request.model_copy(
                        update={
                            "carry": carry.model_copy(
                                update={
                                    "cursor": cursor,
                                    "totals": totals,
                                    "chunks": carry.chunks + chunks_here,
                                }
                            )
                        }
                    )
                )
        report: ReconciliationReport = await workflow.execute_activity(
            "recon.finish",
            FinishRun(
                **request.scope(),
                run_id=carry.run_id,
                totals=totals,
                started_at=carry.started_at,
                finished_at=workflow.now(),
                task_queue=queue,
                escalation_after_s=request.escalation_after_s,
            ),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=RECON_RETRY,
            result_type=ReconciliationReport,
            summary="close verified drifts, record the report",
        )
        workflow.set_current_details(
            f"done: found {report.found} ({report.new} new), repaired {report.repaired}, "
            f"escalated {report.escalated}, gone {report.gone}, unrepaired {report.unrepaired}"
        )
        return report

    def _say(self, step: str, totals: RunTotals) -> None:
        workflow.set_current_details(
            f"{step}: {totals.projects} projects, {totals.records} records compared; "
            f"found {totals.found}, repaired {totals.repaired}, escalated {totals.escalated}"
        )


@workflow.defn(name=RECONCILIATION_DESK)
class ReconciliationDeskWorkflow:
    @workflow.init
    def __init__(self, request: DeskInput) -> None:
        carry = request.carry or DeskCarry()
        self._input = request
        self._items: dict[str, EscalatedDrift] = dict(carry.items)
        self._pending: list[EscalatedDrift] = list(carry.pending)
        self._gone: list[str] = list(carry.gone)
        self._counters: dict[str, int] = dict(carry.counters)
        self._closed: list[str] = list(carry.closed)
        """Items closed lately: a late repeat of their escalation (a retried chunk) is not
        a new item."""
        self._tick = 0
        self._desk = ExceptionDesk(
            process=PROCESS_RECONCILIATION,
            roles=RECON_RESOLVER_ROLES,
            escalate_to="ops",
            escalation_after=timedelta(seconds=request.escalation_after_s),
            activity_timeout=STEP_TIMEOUT,
            retry_policy=RECON_RETRY,
            state=carry.desk,
        )

    # ------------------------------------------------------------------ messages

    @workflow.signal(name=DRIFTS_ESCALATED_SIGNAL)
    def drifts_escalated(self, message: DriftsEscalated) -> None:
        self._pending.extend(message.drifts)
        self._tick += 1

    @workflow.signal(name=DRIFTS_GONE_SIGNAL)
    def drifts_gone(self, message: DriftsGone) -> None:
        self._gone.extend(message.fingerprints)
        self._tick += 1

    @workflow.query(name=DESK_STATUS_QUERY)
    def status(self) -> DeskStatus:
        items = []
        for item in self._desk.open_items:
            drift = self._items.get(item.item_id)
            if drift is None:
                continue
            items.append(
                DeskItem(
                    item_id=item.item_id,
                    kind=drift.drift.kind,
                    fingerprint=drift.drift.fingerprint,
                    keys=drift.drift.keys,
                    detail=item.detail,
                    opened_at=item.opened_at,
                    escalated=item.escalated,
                )
            )
        return DeskStatus(tenant=self._input.tenant, open=items, counters=dict(self._counters))

    @workflow.update(name=RESOLVE_EXCEPTION_UPDATE)
    async def resolve_exception(self, resolution: ExceptionResolution) -> DriftResolutionResult:
        # Claimed before any await: of two resolutions validated together, one wins.
        claimed = self._desk.claim(resolution)
        escalated = self._items.get(resolution.item_id)
        if escalated is None:
            self._desk.release(claimed)
            raise ApplicationError(
                f"exception item {resolution.item_id} is not open on this desk",
                type="NoOpenException",
            )
        queue = workflow.info().task_queue
        decision = DriftDecision(
            item_id=resolution.item_id,
            drift=escalated,
            action=resolution.action,
            actor=resolution.actor,
            task_queue=queue,
        )
        retry = resolution.action is ResolutionAction.RETRY
        try:
            result: DriftResolutionResult = await workflow.execute_activity(
                "recon.force_repair" if retry else "recon.acknowledge",
                decision,
                task_queue=erp_task_queue(queue) if retry else queue,
                start_to_close_timeout=REPAIR_TIMEOUT if retry else STEP_TIMEOUT,
                retry_policy=RECON_RETRY,
                result_type=DriftResolutionResult,
                summary=f"{resolution.action.value} {escalated.drift.kind.value}",
            )
        except ActivityError as err:
            # The item stays open: the person learns why and can choose again.
            self._desk.release(claimed)
            cause = err.cause.message if isinstance(err.cause, ApplicationError) else str(err)
            raise ApplicationError(
                f"the repair of {escalated.drift.kind.value} was refused: {cause}",
                type="RepairRefused",
            ) from err
        await self._desk.record(resolution)
        del self._items[resolution.item_id]
        self._remember_closed(resolution.item_id)
        self._bump("repaired" if retry else "acknowledged")
        self._desk.flag()
        return result

    @resolve_exception.validator
    def _validate(self, resolution: ExceptionResolution) -> None:
        self._desk.validate(resolution)

    # ------------------------------------------------------------------ the run

    @workflow.run
    async def run(self, request: DeskInput) -> DeskStatus:
        workflow.upsert_search_attributes([BUSINESS_PROCESS.value_set(PROCESS_RECONCILIATION)])
        self._desk.flag(force=True)
        while True:
            workflow.set_current_details(
                f"{len(self._desk.open_items)} drifts waiting for a person; "
                + ", ".join(f"{k} {v}" for k, v in sorted(self._counters.items()))
            )
            if self._pending:
                await self._open(self._pending.pop(0))
                continue
            if self._gone:
                await self._close_gone(self._gone.pop(0))
                continue
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._carry())
            if not self._desk.has_open:
                try:
                    await workflow.wait_condition(
                        lambda: bool(self._pending or self._gone or self._desk.has_open),
                        timeout=timedelta(seconds=request.idle_close_s),
                    )
                except TimeoutError:
                    if not (self._pending or self._gone) and workflow.all_handlers_finished():
                        return self.status()
                continue
            await self._next_change()

    async def _open(self, escalated: EscalatedDrift) -> None:
        """One item per drift and escalation: a repeat (a retried activity, a second run
        before the first item closed) is the item already open."""
        drift = escalated.drift
        item_id = desk_item_id(self._input.tenant, drift.fingerprint, escalated.generation)
        if self._desk.is_open(item_id) or item_id in self._items or item_id in self._closed:
            return
        for older_id, older in list(self._items.items()):
            if older.drift.fingerprint == drift.fingerprint and self._desk.is_open(older_id):
                # Acknowledged, changed since and escalated anew: the new item supersedes.
                await self._close(older_id, "superseded by a newer escalation", escalated.run_id)
        context: dict[str, Any] = {
            "domain": drift.domain.value,
            "kind": drift.kind.value,
            "fingerprint": drift.fingerprint,
            "keys": drift.keys,
            "values": drift.values,
            "owner_system": drift.owner.value,
            "evidence": escalated.evidence,
            "run_id": escalated.run_id,
            "actions": [a.value for a in escalated.actions],
        }
        if drift.project:
            context["psa_project_id"] = drift.project
        await self._desk.open(
            item_id=item_id,
            cause_code=drift.kind.value,
            field=None,
            detail=drift.detail,
            owner="finance_controller",
            actions=escalated.actions,
            context=context,
            flag=False,
        )
        self._items[item_id] = escalated
        self._bump("opened")
        self._desk.flag()

    async def _close_gone(self, fingerprint: str) -> None:
        for item_id, escalated in list(self._items.items()):
            if escalated.drift.fingerprint == fingerprint:
                await self._close(item_id, "a later run found the systems agree again", None)
                self._bump("resolved_by_pssync")
        self._desk.flag()

    async def _close(self, item_id: str, reason: str, run_id: str | None) -> None:
        self._items.pop(item_id, None)
        self._remember_closed(item_id)
        await self._desk.close(
            item_id,
            actor="pssync",
            resolution={"action": "resolved", "reason": reason, "run_id": run_id},
        )

    async def _next_change(self) -> None:
        """Wait for a signal or a decision; escalate items left open too long."""
        seen = self._tick
        due = self._desk.next_escalation()
        if due is None:
            await workflow.wait_condition(lambda: self._tick != seen or self._idle_with_nothing())
            return
        wait = max(due - workflow.now(), timedelta(seconds=1))
        try:
            await workflow.wait_condition(lambda: self._tick != seen, timeout=wait)
        except TimeoutError:
            self._bump("escalations", await self._desk.escalate_due())

    def _remember_closed(self, item_id: str) -> None:
        self._closed.append(item_id)
        del self._closed[:-CLOSED_KEPT]

    def _idle_with_nothing(self) -> bool:
        return not self._desk.has_open

    def _bump(self, name: str, by: int = 1) -> None:
        self._counters[name] = self._counters.get(name, 0) + by
        self._tick += 1

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or (
            info.get_current_history_length() > self._input.max_history_events
        )

    def _carry(self) -> DeskInput:
        open_ids = {i.item_id for i in self._desk.open_items}
        return self._input.model_copy(
            update={
                "carry": DeskCarry(
                    desk=self._desk.snapshot(),
                    items={k: v for k, v in self._items.items() if k in open_ids},
                    pending=list(self._pending),
                    gone=list(self._gone),
                    counters=dict(self._counters),
                    closed=list(self._closed),
                )
            }
        )


WORKFLOWS: list[type] = [ReconciliationWorkflow, ReconciliationDeskWorkflow]
