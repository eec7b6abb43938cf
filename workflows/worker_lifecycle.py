"""WorkerLifecycle: one run per worker (`worker/{hcm_tenant}/{worker_id}`) applies the HCM's
effective-dated changes — hire, rehire, transfer, job or cost-rate change, leave and return,
FTE change — to the PSA resource and the ERP labor cost, in order, each at its moment.

Messages it accepts:
- signal `worker_change` (`WorkerChange`): from the HCM poller, by signal-with-start (the first
  change starts the run). A change whose HCM event id was seen is dropped (a duplicate);
- update `resolve_exception` (`ExceptionResolution` -> `ResolutionAccepted`): a person's
  decision on an open item (a conflict: skip = acknowledged; a refused write: retry or skip);
- query `status` (`LifecycleStatus`).

What it does with a change:
1. at once: look for conflicts — the worker's assignments during a leave, assignments on
   another practice's projects after a transfer — and open an exception item for the resource
   manager per conflict (they do not hold the change back);
2. keep it in the pending changes, ordered by effective instant (the worker's midnight on the
   effective date, in the worker's zone) then HCM's sequence, and wait durably until it is due;
3. apply it with the pure reducer (`contracts.v1.workforce.apply`): only the fields it is newer
   for, so a stale or out-of-order event never overwrites a newer one; then bring the PSA
   resource to the new state, the ERP employee too (made on a hire or rehire, before the
   labor cost row, so the row in force becomes its labor cost; later kept in step when the
   name, e-mail or cost center change) and, when its cost rate won, add the ERP labor cost row
   effective from its date (never rewriting rows or costs already posted). A refused write
   becomes an exception item (retry or skip); transient failures retry.
4. continue as new after `continue_after` changes (or when Temporal suggests it), carrying the
   state, the pending changes, the seen event ids and the open items.

Deterministic: no I/O; item ids come from the workflow id and the event.
"""

from __future__ import annotations

import bisect
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows._common import BUSINESS_PROCESS, RETRY, WORKER_ID
from workflows._desk import ExceptionDesk

with workflow.unsafe.imports_passed_through():
    from activities._errors import business_error_info
    from activities.workforce import (
        FindLifecycleConflicts,
        PutLaborCostRate,
        UpsertEmployee,
        UpsertResource,
        WorkforceActivities,
    )
    from contracts.naming import erp_task_queue
    from contracts.v1.processes import (
        RESOLVE_EXCEPTION_UPDATE,
        STATUS_QUERY,
        ExceptionResolution,
        ResolutionAccepted,
        ResolutionAction,
    )
    from contracts.v1.workforce import (
        LIFECYCLE_RESOLVER_ROLES,
        PROCESS_WORKER_LIFECYCLE,
        WORKER_CHANGE_SIGNAL,
        WORKER_LIFECYCLE,
        AppliedChange,
        LifecycleConflict,
        LifecycleInput,
        LifecycleStatus,
        Stale,
        WorkerChange,
        WorkerChangeKind,
        WorkerState,
        apply,
        changed_fields,
        local_day,
    )

_RESOURCE_FIELDS = frozenset(
    {
        "name",
        "email",
        "role",
        "location",
        "practice",
        "manager_id",
        "fte",
        "employed_from",
        "on_leave",
        "leave_from",
        "leave_until",
    }
)
_EMPLOYEE_FIELDS = frozenset({"name", "email", "cost_center"})
_HIRES = frozenset({WorkerChangeKind.HIRE, WorkerChangeKind.REHIRE})
ERP_EMPLOYEE_PATCH = "lifecycle-erp-employee"
"""Hires and rehires make the ERP employee (runs recorded before it replay without)."""
_RESOURCE_KINDS = frozenset(
    {
        WorkerChangeKind.HIRE,
        WorkerChangeKind.REHIRE,
        WorkerChangeKind.LEAVE_START,
        WorkerChangeKind.LEAVE_END,
    }
)


def _order(change: WorkerChange) -> tuple[Any, int, str]:
    return (change.effective_at, change.sequence, change.event_id)


@workflow.defn(name=WORKER_LIFECYCLE)
class WorkerLifecycleWorkflow:
    @workflow.init
    def __init__(self, request: LifecycleInput) -> None:
        self._request = request
        self._state = request.state or WorkerState(worker_id=request.worker_id)
        self._pending: list[WorkerChange] = sorted(request.pending, key=_order)
        self._seen: dict[str, None] = dict.fromkeys(request.seen)
        self._history: list[AppliedChange] = list(request.history)
        self._to_check: list[WorkerChange] = []
        self._received = 0
        self._duplicates = 0
        self._timeout = timedelta(seconds=request.activity_timeout_s)
        self._erp_queue = erp_task_queue(workflow.info().task_queue)
        self._desk = ExceptionDesk(
            process=PROCESS_WORKER_LIFECYCLE,
            roles=LIFECYCLE_RESOLVER_ROLES,
            escalate_to="ops",
            escalation_after=timedelta(seconds=request.escalation_after_s),
            activity_timeout=self._timeout,
            state=request.desk,
        )

    # ----------------------------------------------------------------------- messages

    @workflow.signal(name=WORKER_CHANGE_SIGNAL)
    def worker_change(self, change: WorkerChange) -> None:
        if change.worker_id != self._request.worker_id:
            workflow.logger.warning("change %s is for another worker: dropped", change.event_id)
            return
        if change.event_id in self._seen:
            self._duplicates += 1
            return
        self._seen[change.event_id] = None
        self._received += 1
        keys = [_order(c) for c in self._pending]
        self._pending.insert(bisect.bisect(keys, _order(change)), change)
        self._to_check.append(change)

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> LifecycleStatus:
        return LifecycleStatus(
            worker_id=self._request.worker_id,
            state=self._state,
            pending=list(self._pending),
            history=list(self._history),
            duplicates=self._duplicates,
            open_items=self._desk.open_items,
        )

    @workflow.update(name=RESOLVE_EXCEPTION_UPDATE)
    async def resolve_exception(self, resolution: ExceptionResolution) -> ResolutionAccepted:
        return await self._desk.accept(resolution)

    @resolve_exception.validator
    def _validate_resolution(self, resolution: ExceptionResolution) -> None:
        self._desk.validate(resolution)

    # ----------------------------------------------------------------------- the process

    @workflow.run
    async def run(self, request: LifecycleInput) -> None:
        workflow.upsert_search_attributes(
            [
                WORKER_ID.value_set(request.worker_id),
                BUSINESS_PROCESS.value_set(PROCESS_WORKER_LIFECYCLE),
            ]
        )
        while True:
            while self._to_check:
                await self._check(self._to_check.pop(0))
            await self._desk.escalate_due()
            due = self._next_due()
            if due is not None:
                self._pending.remove(due)
                await self._apply(due)
                continue
            if self._should_continue():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._to_check and self._next_due() is None:
                    workflow.continue_as_new(self._carry())
                continue
            await self._wait_for_work()

    def _next_due(self) -> WorkerChange | None:
        if self._pending and self._pending[0].effective_at <= workflow.now():
            return self._pending[0]
        return None

    async def _wait_for_work(self) -> None:
        """Sleep until a change arrives, the next pending one falls due, or an item is due for
        escalation (durable timers)."""
        moments = [self._pending[0].effective_at] if self._pending else []
        escalation = self._desk.next_escalation()
        if escalation is not None:
            moments.append(escalation)
        timeout = None
        if moments:
            timeout = max(min(moments) - workflow.now(), timedelta(seconds=1))
        try:
            await workflow.wait_condition(
                lambda: bool(self._to_check) or self._should_continue(), timeout=timeout
            )
        except TimeoutError:
            pass

    def _should_continue(self) -> bool:
        return (
            self._received >= self._request.continue_after
            or workflow.info().is_continue_as_new_suggested()
        )

    def _carry(self) -> LifecycleInput:
        seen = list(self._seen)[-self._request.seen_kept :]
        return self._request.model_copy(
            update={
                "state": self._state,
                "pending": list(self._pending),
                "seen": seen,
                "history": self._history[-self._request.history_kept :],
                "desk": self._desk.snapshot(),
            }
        )

    # ----------------------------------------------------------------------- steps

    async def _check(self, change: WorkerChange) -> None:
        """Flag at once what the change collides with; the change itself waits for its day."""
        conflicts: list[LifecycleConflict] = await workflow.execute_activity_method(
            WorkforceActivities.find_conflicts,
            FindLifecycleConflicts(change=change),
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
            summary=f"conflicts of {change.kind.value} {change.event_id}",
        )
        for conflict in conflicts:
            item_id = self._desk.content_item_id(
                f"{conflict.code}/{change.event_id}/{conflict.assignment_id}"
            )
            if self._desk.is_open(item_id):
                continue
            await self._desk.open(
                cause_code=conflict.code,
                detail=conflict.detail,
                owner="resource_manager",
                actions=[ResolutionAction.SKIP],
                item_id=item_id,
                context={
                    "worker_id": change.worker_id,
                    "event_id": change.event_id,
                    "change": change.kind.value,
                    "effective_date": change.effective_date.isoformat(),
                    "assignment_id": conflict.assignment_id,
                    "project_id": conflict.project_id,
                },
            )

    async def _apply(self, change: WorkerChange) -> None:
        result = apply(self._state, change)
        record = AppliedChange(
            event_id=change.event_id,
            kind=change.kind,
            effective_date=change.effective_date,
            effective_at=change.effective_at,
            applied_at=workflow.now(),
            fields=[],
        )
        if isinstance(result, Stale):
            workflow.logger.info(
                "change %s is stale: newer %s", change.event_id, ", ".join(result.newer)
            )
            self._remember(record.model_copy(update={"stale": True}))
            return
        fields = changed_fields(self._state, result)
        if fields & _RESOURCE_FIELDS or change.kind in _RESOURCE_KINDS:
            await self._refusable(
                change,
                "upsert_resource",
                lambda: workflow.execute_activity_method(
                    WorkforceActivities.upsert_resource,
                    UpsertResource(state=result, change=change),
                    start_to_close_timeout=self._timeout,
                    retry_policy=RETRY,
                    summary=f"PSA resource for {change.kind.value} {change.event_id}",
                ),
            )
        hired = change.kind in _HIRES
        if (hired or fields & _EMPLOYEE_FIELDS) and workflow.patched(ERP_EMPLOYEE_PATCH):
            await self._refusable(
                change,
                "upsert_employee",
                lambda: workflow.execute_activity_method(
                    WorkforceActivities.upsert_employee,
                    UpsertEmployee(state=result, create=hired),
                    task_queue=self._erp_queue,
                    start_to_close_timeout=self._timeout,
                    retry_policy=RETRY,
                    summary=f"ERP employee for {change.kind.value} {change.event_id}",
                ),
            )
        rate_stamp = result.stamps.get("cost_rate")
        if (
            change.cost_rate is not None
            and rate_stamp is not None
            and rate_stamp.event_id == change.event_id
        ):
            rate = change.cost_rate
            await self._refusable(
                change,
                "put_labor_cost_rate",
                lambda: workflow.execute_activity_method(
                    WorkforceActivities.put_labor_cost_rate,
                    PutLaborCostRate(
                        worker_id=change.worker_id,
                        rate=rate,
                        effective_from=change.effective_date,
                        key=change.event_id,
                        sequence=change.sequence,
                        today=local_day(workflow.now(), change.time_zone),
                    ),
                    task_queue=self._erp_queue,
                    start_to_close_timeout=self._timeout,
                    retry_policy=RETRY,
                    summary=f"ERP labor cost from {change.effective_date}",
                ),
            )
            fields.add("cost_rate")
        self._state = result
        self._remember(record.model_copy(update={"fields": sorted(fields)}))

    async def _refusable(self, change: WorkerChange, step: str, call: Any) -> None:
        """A refused write becomes an exception item for the resource manager: retry it once
        the cause is fixed, or skip it."""
        while True:
            try:
                await call()
                return
            except ActivityError as err:
                info = business_error_info(err)
                if info is None:
                    raise
                item = await self._desk.open(
                    cause_code=info.code or "BUSINESS_RULE",
                    detail=info.detail or info.message,
                    owner="resource_manager",
                    field=info.field,
                    scope=f"{step}/{change.event_id}",
                    actions=[ResolutionAction.RETRY, ResolutionAction.SKIP],
                    context={
                        "worker_id": change.worker_id,
                        "event_id": change.event_id,
                        "step": step,
                    },
                )
                resolution = await self._desk.wait(item.item_id)
                if resolution is None or resolution.action is ResolutionAction.SKIP:
                    return

    def _remember(self, record: AppliedChange) -> None:
        self._history.append(record)
        del self._history[: -self._request.history_kept]


WORKFLOWS = (WorkerLifecycleWorkflow,)
