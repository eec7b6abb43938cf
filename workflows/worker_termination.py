"""WorkerTermination: an HCM termination reaches the PSA and the ERP before payroll and
billing notice; and HcmChangesPoller, the Schedule's run that finds terminations in HCM.

`WorkerTermination` (one run per worker and effective date, ID from
`contracts.naming.termination_workflow_id`):

1. at once: flag conflicts — assignments after the last day, unapproved time on or before it,
   open change orders the worker must approve — as exception items, and notify resource and
   project managers;
2. wait durably until the effective date begins where the worker works (midnight in the
   worker's `time_zone`; 00:00 UTC without one, or in a run begun before the
   `termination-local-midnight` patch), re-read HCM (a termination no longer there is a
   rescind);
3. end the PSA assignments on the last day (compensation: restore them), raise backfill
   resource requests for the remaining demand (compensation: cancel them), close the worker to
   time entry after the last day (compensation: reopen), post approved time up to the last day
   to the ERP, notify;
4. at the payroll cutoff, anything still unposted or unapproved is posted again or becomes a
   blocking exception item;
5. stay open for a rescind until the rescind window closes.

Messages it accepts:
- signal `rescind` (`RescindRequest`): from the HCM poller (HCM rescind, or a rehire — a rescind
  only before the termination took effect). Undoes the completed steps in reverse.
- update `rescind_termination` (`RescindRequest` -> `RescindAccepted`): an operator's rescind
  (CLI, gateway); the validator refuses actors without a rescind role and runs that are done.
- update `resolve_exception` (`ExceptionResolution` -> `ResolutionAccepted`): a person's
  decision on one of the run's open items (conflicts: skip = acknowledged; payroll cutoff or a
  refused step: retry or skip). Typed refusals: NoOpenException, NotAuthorized,
  ActionNotAllowed.
- query `status` (`TerminationStatus`).

Deterministic: no I/O; item IDs are uuid5 of the workflow ID and the step. Every wait is for
the start of a day in the worker's zone: the effective date, the payroll cutoff, the end of the
rescind window (`start_of_day`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows._common import BUSINESS_PROCESS, POLL_RETRY, RETRY, WORKER_ID, poll_heartbeat
from workflows._desk import ExceptionDesk
from workflows._saga import Saga
from workflows._termination_dates import days_in

with workflow.unsafe.imports_passed_through():
    from activities._errors import business_error_info
    from activities.hcm_poll import HcmPollActivities
    from activities.store import OutboxEvent, StoreActivities
    from activities.time_posting import (
        PostApprovedTime,
        TimePostingActivities,
        TimePostingReport,
    )
    from activities.worker_termination import (
        AssignmentsAfter,
        Backfill,
        Conflicts,
        EndAssignments,
        FindConflicts,
        ReadWorker,
        RestoreAssignments,
        TerminationActivities,
        TimeEntryClosure,
    )
    from contracts.naming import erp_task_queue
    from contracts.v1 import Assignment, Worker
    from contracts.v1.processes import (
        RESOLVE_EXCEPTION_UPDATE,
        STATUS_QUERY,
        ExceptionResolution,
        ResolutionAccepted,
        ResolutionAction,
    )
    from contracts.v1.worker_termination import (
        HCM_CHANGES_POLLER,
        PROCESS_WORKER_TERMINATION,
        RESCIND_ROLES,
        RESCIND_SIGNAL,
        RESCIND_UPDATE,
        TERMINATION_RESOLVER_ROLES,
        WORKER_TERMINATION,
        EndedAssignment,
        PollerInput,
        PollResult,
        RescindAccepted,
        RescindRequest,
        RescindSource,
        TerminationInput,
        TerminationOutcome,
        TerminationResult,
        TerminationStatus,
        TerminationStep,
        start_of_day,
    )

T = TypeVar("T")


_DONE_STEPS = (TerminationStep.DONE, TerminationStep.RESCINDED, TerminationStep.RESCINDING)


class _Rescinded(Exception):
    """A rescind arrived: undo what was done."""


@workflow.defn(name=WORKER_TERMINATION)
class WorkerTerminationWorkflow:
    @workflow.init
    def __init__(self, request: TerminationInput) -> None:
        self._request = request
        self._status = TerminationStatus(
            step=TerminationStep.FLAGGING_CONFLICTS,
            worker_id=request.worker_id,
            termination_date=request.termination_date,
            last_day_worked=request.last_day_worked,
            payroll_cutoff=request.cutoff,
        )
        self._rescind: RescindRequest | None = None
        self._zone: str | None = None  # the zone the run's days are in (None: UTC)
        self._effective = False
        self._all_items: list[str] = []
        self._saga = Saga()
        self._project_managers: dict[str, str | None] = {}
        self._erp_queue = erp_task_queue(workflow.info().task_queue)
        self._timeout = timedelta(seconds=request.activity_timeout_s)
        self._desk = ExceptionDesk(
            process=PROCESS_WORKER_TERMINATION,
            roles=TERMINATION_RESOLVER_ROLES,
            escalate_to="ops",
            escalation_after=timedelta(seconds=request.escalation_after_s),
            activity_timeout=self._timeout,
        )

    # ----------------------------------------------------------------------- messages

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> TerminationStatus:
        self._status.open_items = self._desk.open_items
        return self._status

    @workflow.signal(name=RESCIND_SIGNAL)
    def rescind(self, request: RescindRequest) -> None:
        self._accept_rescind(request)

    @workflow.update(name=RESCIND_UPDATE)
    def rescind_termination(self, request: RescindRequest) -> RescindAccepted:
        accepted = self._accept_rescind(request)
        return RescindAccepted(
            accepted=accepted,
            detail="undoing the completed steps" if accepted else "already being rescinded",
        )

    @rescind_termination.validator
    def _validate_rescind(self, request: RescindRequest) -> None:
        if not RESCIND_ROLES.intersection(request.actor_roles):
            needs = ", ".join(sorted(RESCIND_ROLES))
            raise ApplicationError(
                f"{request.actor} may not rescind a termination: needs one of {needs}",
                type="NotAuthorized",
            )
        if self._status.step in (TerminationStep.DONE, TerminationStep.RESCINDED):
            raise ApplicationError(
                f"the termination run is {self._status.step.value}", type="NotRescindable"
            )

    def _accept_rescind(self, request: RescindRequest) -> bool:
        if self._rescind is not None:
            return False
        if request.source is RescindSource.HCM_REHIRE and self._effective:
            # A rehire after the termination took effect is a new employment, not a rescind.
            self._status.notes.append(
                f"rehire on {request.rehire_date} after the termination took effect: kept"
            )
            return False
        self._rescind = request
        return True

    @workflow.update(name=RESOLVE_EXCEPTION_UPDATE)
    async def resolve_exception(self, resolution: ExceptionResolution) -> ResolutionAccepted:
        return await self._desk.accept(resolution)

    @resolve_exception.validator
    def _validate_resolution(self, resolution: ExceptionResolution) -> None:
        self._desk.validate(resolution)

    # ----------------------------------------------------------------------- the process

    @workflow.run
    async def run(self, request: TerminationInput) -> TerminationResult:
        workflow.upsert_search_attributes(
            [
                WORKER_ID.value_set(request.worker_id),
                BUSINESS_PROCESS.value_set(PROCESS_WORKER_TERMINATION),
            ]
        )
        try:
            await self._terminate(request)
        except _Rescinded:
            result = await self._undo()
            await workflow.wait_condition(workflow.all_handlers_finished)
            return result
        except asyncio.CancelledError:
            await self._undo()
            raise
        self._step(TerminationStep.DONE, "termination carried out")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._result(TerminationOutcome.COMPLETED)

    async def _terminate(self, request: TerminationInput) -> None:
        worker = request.worker_id
        last_day = request.last_day_worked
        self._zone = days_in(request)
        effective_at = start_of_day(request.termination_date, self._zone)
        self._status.time_zone, self._status.effective_at = self._zone or "UTC", effective_at
        # 1. Conflicts, at once (also for a termination dated months ahead).
        self._step(TerminationStep.FLAGGING_CONFLICTS, "looking for conflicts in the PSA")
        conflicts: Conflicts = await workflow.execute_activity_method(
            TerminationActivities.find_conflicts,
            FindConflicts(worker_id=worker, last_day_worked=last_day),
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
            summary=f"conflicts of {worker}",
        )
        self._project_managers = dict(conflicts.project_managers)
        await self._flag_conflicts(conflicts)
        # 2. Wait for the effective date; a rescind meanwhile has nothing to undo in the PSA.
        self._step(
            TerminationStep.WAITING_FOR_EFFECTIVE_DATE,
            f"waiting until {request.termination_date} 00:00 {self._status.time_zone} "
            f"({effective_at:%Y-%m-%d %H:%M} UTC; last day {last_day})",
        )
        await self._wait_until(effective_at)
        self._effective = True
        current: Worker = await workflow.execute_activity_method(
            TerminationActivities.read_worker,
            ReadWorker(worker_id=worker),
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
            summary=f"HCM still terminates {worker}?",
        )
        if current.termination_date != request.termination_date:
            self._rescind = RescindRequest(
                actor="hcm",
                source=RescindSource.HCM_REREAD,
                reason=f"HCM holds termination date {current.termination_date}",
            )
            raise _Rescinded()
        # 3. End assignments (snapshot first, so the restore knows what they were).
        self._step(TerminationStep.ENDING_ASSIGNMENTS, f"ending assignments on {last_day}")
        snapshots: list[Assignment] = await workflow.execute_activity_method(
            TerminationActivities.assignments_after,
            AssignmentsAfter(worker_id=worker, last_day_worked=last_day),
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
        )
        if snapshots:
            self._saga.add("restore assignments", lambda: self._restore_assignments(snapshots))
            ended: list[EndedAssignment] = await self._business_step(
                TerminationStep.ENDING_ASSIGNMENTS,
                lambda: workflow.execute_activity_method(
                    TerminationActivities.end_assignments,
                    EndAssignments(last_day_worked=last_day, assignments=snapshots),
                    start_to_close_timeout=self._timeout,
                    retry_policy=RETRY,
                    summary=f"end {len(snapshots)} assignments on {last_day}",
                ),
                default=[],
            )
            self._status.ended_assignments = ended
        self._check_rescind()
        # 4. Backfill the remaining demand.
        if snapshots:
            self._step(TerminationStep.RAISING_BACKFILL, "raising backfill resource requests")
            backfill = Backfill(worker_id=worker, last_day_worked=last_day, assignments=snapshots)
            self._saga.add("cancel backfill", lambda: self._cancel(backfill))
            self._status.backfill_request_ids = await self._business_step(
                TerminationStep.RAISING_BACKFILL,
                lambda: workflow.execute_activity_method(
                    TerminationActivities.raise_backfill,
                    backfill,
                    start_to_close_timeout=self._timeout,
                    retry_policy=RETRY,
                    summary="backfill resource requests",
                ),
                default=[],
            )
        self._check_rescind()
        # 5. No time after the last day.
        self._step(TerminationStep.CLOSING_TIME_ENTRY, f"closing time entry after {last_day}")
        self._saga.add("reopen time entry", self._reopen)
        await self._business_step(
            TerminationStep.CLOSING_TIME_ENTRY,
            lambda: workflow.execute_activity_method(
                TerminationActivities.close_time_entry,
                TimeEntryClosure(worker_id=worker, last_day_worked=last_day),
                start_to_close_timeout=self._timeout,
                retry_policy=RETRY,
                summary=f"close time entry after {last_day}",
            ),
            default=None,
        )
        self._check_rescind()
        # 6. Approved time up to the last day into the ERP (postings are facts: never undone).
        self._step(TerminationStep.POSTING_TIME, "posting approved time to the ERP")
        report = await self._post_time()
        self._step(TerminationStep.NOTIFYING, "notifying managers")
        await self._notify(
            "termination.effective",
            f"{self._who()} left on {last_day}: assignments ended, backfill raised, "
            "time entry closed",
            {
                "ended_assignments": [e.before.external_id for e in self._status.ended_assignments],
                "backfill_request_ids": self._status.backfill_request_ids,
                "posted_entry_ids": report.posted,
            },
        )
        self._check_rescind()
        # 7. Payroll cutoff: what is still missing then is posted again or needs a person.
        if not report.complete:
            self._step(
                TerminationStep.WAITING_FOR_PAYROLL_CUTOFF,
                f"{len(report.failed)} approved entries unposted, {len(report.unapproved)} "
                f"unapproved — checking again at the payroll cutoff {request.cutoff}",
            )
            await self._wait_until(start_of_day(request.cutoff, self._zone))
            await self._settle_payroll()
        # 8. A rescind can still undo the steps for a while.
        until = request.cutoff + timedelta(days=request.rescind_window_days)
        self._step(TerminationStep.OPEN_FOR_RESCIND, f"done; a rescind undoes it until {until}")
        await self._wait_until(start_of_day(until, self._zone))

    # ----------------------------------------------------------------------- steps

    async def _post_time(self) -> TimePostingReport:
        report: TimePostingReport = await workflow.execute_activity_method(
            TimePostingActivities.post_approved_time,
            PostApprovedTime(
                worker_id=self._request.worker_id,
                through=self._request.last_day_worked,
                cost_center=self._request.cost_center,
            ),
            task_queue=self._erp_queue,
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
            summary=f"approved time through {self._request.last_day_worked} -> ERP",
        )
        for entry_id in report.posted + report.already_posted:
            if entry_id not in self._status.posted_entry_ids:
                self._status.posted_entry_ids.append(entry_id)
        return report

    async def _settle_payroll(self) -> None:
        while True:
            self._step(TerminationStep.POSTING_TIME, "payroll cutoff: posting approved time")
            report = await self._post_time()
            if report.complete:
                return
            code = "PAYROLL_CUTOFF_UNPOSTED_TIME" if report.failed else "PAYROLL_CUTOFF_UNAPPROVED"
            detail = "; ".join(
                [
                    f"entry {u.entry_id} ({u.date_performed}): {u.code} {u.detail}"
                    for u in report.failed
                ]
                + [
                    f"entry {u.entry_id} ({u.date_performed}) not approved"
                    for u in report.unapproved
                ]
            )
            item_id = await self._open_item(
                code,
                f"payroll cutoff {self._request.cutoff}: {detail}",
                owner="payroll",
                field="time_entries",
                actions=[ResolutionAction.RETRY, ResolutionAction.SKIP],
                context={
                    "unposted": [u.model_dump(mode="json") for u in report.failed],
                    "unapproved": [u.model_dump(mode="json") for u in report.unapproved],
                },
            )
            await self._notify(
                f"payroll.cutoff.{item_id}",
                f"approved time of {self._who()} is not all in the ERP at the payroll cutoff",
                {"item_id": item_id, "cause_code": code},
                roles=["payroll", "resource_manager"],
            )
            resolution = await self._await_resolution(TerminationStep.POSTING_TIME, item_id)
            if resolution.action is ResolutionAction.SKIP:
                return

    async def _business_step(
        self, step: TerminationStep, call: Callable[[], Awaitable[T]], *, default: T
    ) -> T:
        """A refused PSA write becomes a blocking exception item: retry it, or skip it."""
        while True:
            try:
                return await call()
            except ActivityError as err:
                info = business_error_info(err)
                if info is None:
                    raise
                item_id = await self._open_item(
                    info.code or "BUSINESS_RULE",
                    info.detail or info.message,
                    owner="resource_manager",
                    field=info.field,
                    actions=[ResolutionAction.RETRY, ResolutionAction.SKIP],
                    context={"step": step.value}
                    | ({"evidence": info.evidence} if info.evidence is not None else {}),
                )
                resolution = await self._await_resolution(step, item_id)
                if resolution.action is ResolutionAction.SKIP:
                    return default
                self._step(step, f"retrying after {info.code} was resolved")

    async def _flag_conflicts(self, conflicts: Conflicts) -> None:
        last_day = self._request.last_day_worked
        acknowledge = [ResolutionAction.SKIP]
        found: dict[str, Any] = {}
        if conflicts.assignments_after_last_day:
            ids = [a.external_id for a in conflicts.assignments_after_last_day]
            found["assignments_after_last_day"] = ids
            self._status.conflict_items.append(
                await self._open_item(
                    "ASSIGNMENTS_AFTER_LAST_DAY",
                    f"{len(ids)} assignments of {self._who()} run past the last day {last_day}",
                    owner="resource_manager",
                    field="assignments",
                    actions=acknowledge,
                    context={"assignment_ids": ids},
                )
            )
        if conflicts.unapproved_time:
            ids = [e.external_id for e in conflicts.unapproved_time]
            found["unapproved_time"] = ids
            self._status.conflict_items.append(
                await self._open_item(
                    "UNAPPROVED_TIME",
                    f"{len(ids)} time entries of {self._who()} up to {last_day} are unapproved",
                    owner="project_manager",
                    field="time_entries",
                    actions=acknowledge,
                    context={"time_entry_ids": ids},
                )
            )
        if conflicts.change_orders_to_approve:
            ids = [co.external_id for co in conflicts.change_orders_to_approve]
            found["change_orders_to_approve"] = ids
            self._status.conflict_items.append(
                await self._open_item(
                    "APPROVER_LEAVING",
                    f"{self._who()} must approve {len(ids)} open change orders",
                    owner="project_manager",
                    field="change_orders",
                    actions=acknowledge,
                    context={"change_order_ids": ids},
                )
            )
        await self._notify(
            "termination.entered",
            f"{self._who()} is terminated effective {self._request.termination_date}, "
            f"last day {last_day}",
            {"conflicts": found, "exception_items": list(self._status.conflict_items)},
        )

    # ----------------------------------------------------------------------- exceptions

    async def _open_item(
        self,
        code: str,
        detail: str,
        *,
        owner: str,
        field: str | None,
        actions: list[ResolutionAction],
        context: dict[str, Any],
    ) -> str:
        item = await self._desk.open(
            cause_code=code,
            detail=detail,
            owner=owner,
            field=field,
            actions=actions,
            context={
                "worker_id": self._request.worker_id,
                "termination_date": self._request.termination_date.isoformat(),
                "last_day_worked": self._request.last_day_worked.isoformat(),
                **context,
            },
        )
        self._all_items.append(item.item_id)
        return item.item_id

    async def _await_resolution(self, step: TerminationStep, item_id: str) -> ExceptionResolution:
        item = self._desk.get(item_id)
        assert item is not None
        self._step(
            TerminationStep.WAITING_FOR_RESOLUTION,
            f"exception {item.cause_code}: {item.detail} — waiting for "
            + " / ".join(a.value for a in item.allowed_actions),
        )
        resolution = await self._desk.wait(item_id, interrupted=lambda: self._rescind is not None)
        self._check_rescind()
        assert resolution is not None
        self._step(step, f"{item.cause_code} resolved")
        return resolution

    # ----------------------------------------------------------------------- rescind

    async def _wait_until(self, moment: datetime) -> None:
        """Durable wait for `moment`, cut short by a rescind (which raises `_Rescinded`)."""
        delay = moment - workflow.now()
        if delay > timedelta(0):
            try:
                await workflow.wait_condition(lambda: self._rescind is not None, timeout=delay)
            except TimeoutError:
                pass
        self._check_rescind()

    def _check_rescind(self) -> None:
        if self._rescind is not None:
            raise _Rescinded()

    async def _undo(self) -> TerminationResult:
        rescind = self._rescind
        by = rescind.actor if rescind else "cancellation"
        self._status.rescinded_by = by
        self._step(TerminationStep.RESCINDING, f"rescinded by {by}: undoing completed steps")
        undone = self._saga.labels
        failures = await self._saga.compensate()
        self._status.compensation_failures = [str(f) for f in failures]
        # Withdrawn: a person has nothing left to decide.
        await self._desk.withdraw_all("termination rescinded", always_flag=True)
        await self._notify(
            "termination.rescinded",
            f"the termination of {self._who()} was rescinded ({by})",
            {
                "source": rescind.source.value if rescind else "cancellation",
                "reason": rescind.reason if rescind else "",
                "undone": undone,
                "compensation_failures": [str(f) for f in failures],
            },
        )
        self._step(TerminationStep.RESCINDED, f"rescinded by {by}; PSA restored")
        return self._result(TerminationOutcome.RESCINDED)

    async def _restore_assignments(self, snapshots: list[Assignment]) -> None:
        await workflow.execute_activity_method(
            TerminationActivities.restore_assignments,
            RestoreAssignments(
                ended=[EndedAssignment(before=a, action="restore") for a in snapshots]
            ),
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
            summary="compensate: restore assignments",
        )
        self._status.completed.append("compensated: assignments restored")

    async def _cancel(self, backfill: Backfill) -> None:
        await workflow.execute_activity_method(
            TerminationActivities.cancel_backfill,
            backfill,
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
            summary="compensate: cancel backfill requests",
        )
        self._status.completed.append("compensated: backfill cancelled")

    async def _reopen(self) -> None:
        await workflow.execute_activity_method(
            TerminationActivities.reopen_time_entry,
            TimeEntryClosure(worker_id=self._request.worker_id),
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
            summary="compensate: reopen time entry",
        )
        self._status.completed.append("compensated: time entry reopened")

    # ----------------------------------------------------------------------- helpers

    async def _notify(
        self,
        kind: str,
        message: str,
        details: dict[str, Any],
        *,
        roles: list[str] | None = None,
    ) -> None:
        """A notification is an outbox event with recipients by role; the key makes a replayed
        or retried step notify once."""
        recipients: list[dict[str, Any]] = [
            {"role": role} for role in (roles or ["resource_manager"])
        ]
        recipients += [
            {"role": "project_manager", "worker_id": manager, "project_id": project}
            for project, manager in sorted(self._project_managers.items())
            if manager
        ]
        await workflow.execute_activity_method(
            StoreActivities.add_outbox,
            OutboxEvent(
                event_type="notification",
                key=f"{workflow.info().workflow_id}/{kind}",
                payload={
                    "kind": kind,
                    "process": PROCESS_WORKER_TERMINATION,
                    "worker_id": self._request.worker_id,
                    "termination_date": self._request.termination_date.isoformat(),
                    "message": message,
                    "recipients": recipients,
                    "details": details,
                    "at": workflow.now().isoformat(),
                },
            ),
            start_to_close_timeout=self._timeout,
            retry_policy=RETRY,
        )

    def _who(self) -> str:
        return self._request.worker_name or self._request.worker_id

    def _result(self, outcome: TerminationOutcome) -> TerminationResult:
        return TerminationResult(
            outcome=outcome,
            worker_id=self._request.worker_id,
            termination_date=self._request.termination_date,
            ended_assignments=len(self._status.ended_assignments),
            backfill_request_ids=self._status.backfill_request_ids,
            posted_entry_ids=self._status.posted_entry_ids,
            exception_items=list(self._all_items),
            rescinded_by=self._status.rescinded_by,
            compensation_failures=list(self._status.compensation_failures),
        )

    def _step(self, step: TerminationStep, details: str) -> None:
        current = self._status.step
        if current is not step and current not in (
            TerminationStep.WAITING_FOR_RESOLUTION,
            *_DONE_STEPS,
        ):
            self._status.completed.append(current.value)
        self._status.step = step
        workflow.set_current_details(f"**{step.value}** — {details}")


@workflow.defn(name=HCM_CHANGES_POLLER)
class HcmChangesPollerWorkflow:
    """One Schedule action: read HCM's changed-workers window once.

    No messages. Overlapping runs are skipped by the Schedule, so one poller at a time owns the
    cursor; a failed run leaves the cursor where it was and the next action reads again.
    """

    @workflow.run
    async def run(self, request: PollerInput) -> PollResult:
        result: PollResult = await workflow.execute_activity_method(
            HcmPollActivities.poll_changes,
            request,
            start_to_close_timeout=timedelta(seconds=request.activity_timeout_s * 5),
            heartbeat_timeout=poll_heartbeat(request.activity_timeout_s),
            retry_policy=POLL_RETRY,
            summary="HCM changed workers",
        )
        workflow.set_current_details(
            f"window {result.window_from.isoformat()} .. {result.window_through.isoformat()}: "
            f"{result.changes} changes, {len(result.started)} started, "
            f"{len(result.signalled)} signalled, {result.duplicates} seen before"
        )
        return result


WORKFLOWS = [WorkerTerminationWorkflow, HcmChangesPollerWorkflow]
