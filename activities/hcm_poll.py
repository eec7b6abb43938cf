"""The HCM poller: HCM has no push, so a Temporal Schedule reads its changed-workers window.

    await ensure_hcm_schedule(client, every=timedelta(minutes=5), task_queue=TASK_QUEUE)

Each Schedule action runs `HcmChangesPoller`, whose one activity `hcm.poll_changes` reads the
window `[cursor - overlap, now)`, and for every event not seen before:

- a termination starts `WorkerTermination` with the ID built from tenant, worker and effective
  date (`plumbing.temporal.start_or_join`: a re-detected termination joins the run there); its
  dates are days in the worker's HCM time zone (`termination_input`). Without a zone, or with
  one that is not IANA (reported in `notes`), they are UTC days, as before: a termination is
  never held back for its zone;
- a rescind signals that run `rescind`; a rehire signals the worker's latest termination run,
  which treats it as a rescind only while the termination is not yet effective.

Exactly once across crashes and restarts: an event is marked seen in the store's inbox only
after its workflow was started or signalled, and the cursor advances only after the whole
window was handled — a crash re-reads the window, and the inbox drops what was already done.
The overlap catches entries committed late or stamped by a skewed clock.

Every other lifecycle event — hire, rehire, transfer, job or cost-rate change, leave start and
end, FTE change — is signalled, with signal-with-start, to the worker's one `WorkerLifecycle`
run (`worker/{tenant}/{worker}`), as an effective-dated `contracts.v1.workforce.WorkerChange`
carrying HCM's event id, sequence and the worker's time zone. A rehire also still reaches the
termination run as before. An event without a time zone is reported and not routed: pssync
never guesses the zone an effective date is a day in.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.client import Client
from temporalio.common import SearchAttributePair, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from activities._errors import translate_errors
from connectors.hcm import HcmPort, WorkerChange, WorkerEventType
from contracts.ids import InvalidId, canonical_hcm_id
from contracts.naming import termination_workflow_id
from contracts.v1.worker_termination import (
    HCM_CHANGES_POLLER,
    HCM_SCHEDULE_ID,
    PROCESS_WORKER_TERMINATION,
    RESCIND_SIGNAL,
    RESCIND_UPDATE,
    WORKER_TERMINATION,
    PollerInput,
    PollResult,
    RescindAccepted,
    RescindRequest,
    RescindSource,
    TerminationInput,
)
from contracts.v1.workforce import (
    PROCESS_WORKER_LIFECYCLE,
    WORKER_CHANGE_SIGNAL,
    WORKER_LIFECYCLE,
    LifecycleInput,
    WorkerChangeKind,
    lifecycle_workflow_id,
    zone,
)
from contracts.v1.workforce import WorkerChange as LifecycleChange
from plumbing.temporal import (
    BUSINESS_PROCESS,
    WORKER_ID,
    ensure_interval_schedule,
    signal_with_start,
    start_or_join,
)
from store import Store

POLL_CONCURRENCY = 8
"""Workers whose changes are routed at once (each change is a Temporal round trip)."""

INBOX_SOURCE = "hcm"

LIFECYCLE_EVENTS = frozenset(
    {
        WorkerEventType.HIRE,
        WorkerEventType.REHIRE,
        WorkerEventType.TRANSFER,
        WorkerEventType.JOB_CHANGE,
        WorkerEventType.COST_RATE_CHANGE,
        WorkerEventType.LEAVE_START,
        WorkerEventType.LEAVE_END,
        WorkerEventType.FTE_CHANGE,
    }
)
"""HCM events the worker's `WorkerLifecycle` run applies (a rehire also reaches the
termination run)."""


def lifecycle_change(worker_id: str, change: WorkerChange) -> LifecycleChange:
    """The effective-dated lifecycle change of an HCM event (ValueError when it has no time
    zone, or one that is not IANA)."""
    if change.time_zone is None:
        raise ValueError("HCM gave no time zone for the worker")
    changed = change.changed
    return LifecycleChange(
        event_id=change.event_id,
        sequence=change.sequence
        if change.sequence is not None
        else int(change.entry_moment.timestamp() * 1_000_000),
        entered_at=change.entry_moment,
        worker_id=worker_id,
        kind=WorkerChangeKind(change.event_type.value),
        effective_date=change.effective_date,
        time_zone=change.time_zone,
        name=change.worker.name,
        email=change.worker.email,
        location=changed.location,
        cost_center=changed.cost_center,
        practice=changed.practice,
        manager_id=changed.manager_id,
        role=changed.role,
        cost_rate=changed.cost_rate,
        fte=changed.fte,
        leave_until=changed.leave_until,
    )


def termination_input(
    tenant: str, worker_id: str, change: WorkerChange, request: PollerInput
) -> tuple[TerminationInput, str | None]:
    """The `WorkerTermination` input of an HCM termination event, its days in the worker's HCM
    time zone; and a note when HCM's zone is not IANA (then UTC days, as without a zone)."""
    time_zone, note = change.time_zone, None
    if time_zone is not None:
        try:
            zone(time_zone)
        except ValueError as exc:
            time_zone, note = None, f"{change.event_id}: {exc}: the termination uses UTC days"
    termination = change.termination_date or change.effective_date
    return TerminationInput(
        hcm_tenant=tenant,
        worker_id=worker_id,
        worker_name=change.worker.name,
        termination_date=termination,
        last_day_worked=change.last_day_worked or termination,
        payroll_cutoff_days=request.payroll_cutoff_days,
        event_id=change.event_id,
        activity_timeout_s=request.activity_timeout_s,
        time_zone=time_zone,
    ), note


HEARTBEAT_EVERY_S = 2.0


async def _heartbeat_every(seconds: float) -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(seconds)


def cursor_name(tenant: str) -> str:
    return f"hcm.changed_workers/{tenant}"


def latest_run_name(tenant: str, worker_id: str) -> str:
    return f"hcm.termination/{tenant}/{worker_id}"


def _hash(change: WorkerChange) -> str:
    return "sha256:" + hashlib.sha256(change.model_dump_json().encode()).hexdigest()


class HcmPollActivities:
    def __init__(
        self,
        hcm: HcmPort,
        store: Store,
        client: Client,
        *,
        default_tenant: str,
    ) -> None:
        self.hcm = hcm
        self.store = store
        self.client = client
        self.default_tenant = default_tenant

    @activity.defn(name="hcm.poll_changes")
    @translate_errors
    async def poll_changes(self, request: PollerInput) -> PollResult:
        # Heartbeat on a ticker, not per change: a slow HCM page must not look like a dead
        # worker, and a dead worker must be noticed in seconds (the Schedule skips overlapping
        # polls, so a poll held by a lost worker would stall every poll after it).
        ticker = asyncio.create_task(_heartbeat_every(HEARTBEAT_EVERY_S))
        try:
            return await self._poll(request)
        finally:
            ticker.cancel()

    async def _poll(self, request: PollerInput) -> PollResult:
        tenant = request.hcm_tenant or self.default_tenant
        task_queue = request.termination_task_queue or activity.info().task_queue
        now = datetime.now(UTC)
        stored = await asyncio.to_thread(self.store.get_state, cursor_name(tenant))
        if stored is None:
            start = now - timedelta(seconds=request.initial_lookback_s)
        else:
            start = datetime.fromisoformat(stored) - timedelta(seconds=request.overlap_s)
        start = min(start, now)
        changes = await self.hcm.changed_workers(start, now)
        result = PollResult(window_from=start, window_through=now, changes=len(changes))
        # One worker's changes in the HCM's order (a termination before its rescind); different
        # workers' at the same time, a few at once: the routing is a round trip each.
        by_worker: dict[str, list[WorkerChange]] = {}
        for change in changes:
            by_worker.setdefault(change.worker.external_id, []).append(change)
        gate = asyncio.Semaphore(POLL_CONCURRENCY)

        async def route(worker_changes: list[WorkerChange]) -> None:
            async with gate:
                for change in worker_changes:
                    await self._route_once(tenant, task_queue, change, request, result)

        try:
            async with asyncio.TaskGroup() as group:  # a failure cancels the rest: all retried
                for worker_changes in by_worker.values():
                    group.create_task(route(worker_changes))
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None  # typed, as one change's failure always was
        # Only now: a crash above re-reads this window, and the inbox keeps it exactly once.
        await asyncio.to_thread(self.store.put_state, cursor_name(tenant), now.isoformat())
        return result

    async def _route_once(
        self,
        tenant: str,
        task_queue: str,
        change: WorkerChange,
        request: PollerInput,
        result: PollResult,
    ) -> None:
        """Route one change unless the inbox has it (a window read again after a crash)."""
        event_key = f"{tenant}/{change.event_id}"
        if await asyncio.to_thread(self.store.inbox_get, INBOX_SOURCE, event_key):
            result.duplicates += 1
            return
        workflow_id = await self._handle(tenant, task_queue, change, request, result)
        await asyncio.to_thread(self.store.inbox_accept, INBOX_SOURCE, event_key, _hash(change))
        if workflow_id is not None:
            await asyncio.to_thread(
                self.store.inbox_set_workflow, INBOX_SOURCE, event_key, workflow_id
            )

    async def _handle(
        self,
        tenant: str,
        task_queue: str,
        change: WorkerChange,
        request: PollerInput,
        result: PollResult,
    ) -> str | None:
        # The poller is pssync's edge for HCM events: the worker id is made canonical here
        # once (a malformed one is reported and skipped, not retried forever).
        try:
            worker_id = canonical_hcm_id(change.worker.external_id)
        except InvalidId as exc:
            result.ignored.append(f"{change.event_id}: {exc}")
            return None
        if change.event_type in LIFECYCLE_EVENTS:
            routed = await self._route_lifecycle(
                tenant, task_queue, worker_id, change, request, result
            )
            if change.event_type is not WorkerEventType.REHIRE:
                return routed
        if change.event_type is WorkerEventType.TERMINATE:
            started, note = termination_input(tenant, worker_id, change, request)
            termination = started.termination_date
            workflow_id = termination_workflow_id(tenant, worker_id, termination.isoformat())
            # A re-detected termination (a crash before the inbox row) joins the run there;
            # after it closed, the same termination date starts a new run (ALLOW_DUPLICATE).
            await start_or_join(
                self.client,
                WORKER_TERMINATION,
                started,
                id=workflow_id,
                task_queue=task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                search_attributes=[
                    SearchAttributePair(WORKER_ID, worker_id),
                    SearchAttributePair(BUSINESS_PROCESS, PROCESS_WORKER_TERMINATION),
                ],
                # ids only: summaries carry no personal data (docs/security.md)
                static_summary=f"Termination of worker {worker_id}, "
                f"effective {termination.isoformat()}",
            )
            await asyncio.to_thread(
                self.store.put_state, latest_run_name(tenant, worker_id), workflow_id
            )
            result.started.append(workflow_id)
            if note is not None:
                result.notes.append(note)
            return workflow_id
        if change.event_type is WorkerEventType.RESCIND:
            termination = change.termination_date or change.effective_date
            workflow_id = termination_workflow_id(tenant, worker_id, termination.isoformat())
            source = RescindSource.HCM_RESCIND
        elif change.event_type is WorkerEventType.REHIRE:
            latest = await asyncio.to_thread(
                self.store.get_state, latest_run_name(tenant, worker_id)
            )
            if latest is None:
                result.ignored.append(f"{change.event_id}: rehire without a termination run")
                return None
            workflow_id = latest
            source = RescindSource.HCM_REHIRE
        else:
            result.ignored.append(f"{change.event_id}: {change.event_type.value}")
            return None
        signal = RescindRequest(
            actor="hcm",
            source=source,
            reason=f"HCM {change.event_type.value} entered {change.entry_moment.isoformat()}",
            event_id=change.event_id,
            rehire_date=change.effective_date if source is RescindSource.HCM_REHIRE else None,
        )
        try:
            await self.client.get_workflow_handle(workflow_id).signal(RESCIND_SIGNAL, signal)
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
            # No run, or it already finished: nothing left to undo.
            result.ignored.append(f"{change.event_id}: {workflow_id} is not running")
            return workflow_id
        result.signalled.append(workflow_id)
        return workflow_id

    async def _route_lifecycle(
        self,
        tenant: str,
        task_queue: str,
        worker_id: str,
        change: WorkerChange,
        request: PollerInput,
        result: PollResult,
    ) -> str | None:
        """Signal the worker's lifecycle run (starting it first when none runs)."""
        try:
            lifecycle = lifecycle_change(worker_id, change)
        except ValueError as exc:
            result.ignored.append(f"{change.event_id}: {change.event_type.value}: {exc}")
            return None
        workflow_id = lifecycle_workflow_id(tenant, worker_id)
        await signal_with_start(
            self.client,
            WORKER_LIFECYCLE,
            LifecycleInput(
                hcm_tenant=tenant,
                worker_id=worker_id,
                activity_timeout_s=request.activity_timeout_s,
            ),
            id=workflow_id,
            signal=WORKER_CHANGE_SIGNAL,
            signal_arg=lifecycle,
            task_queue=task_queue,
            search_attributes=[
                SearchAttributePair(WORKER_ID, worker_id),
                SearchAttributePair(BUSINESS_PROCESS, PROCESS_WORKER_LIFECYCLE),
            ],
            # ids only: summaries carry no personal data (docs/security.md)
            static_summary=f"Lifecycle of worker {worker_id}",
        )
        result.signalled.append(workflow_id)
        return workflow_id


async def ensure_hcm_schedule(
    client: Client,
    *,
    every: timedelta,
    task_queue: str,
    poller: PollerInput | None = None,
    schedule_id: str = HCM_SCHEDULE_ID,
) -> None:
    """Create the Schedule that runs `HcmChangesPoller` every `every`, or bring an existing one
    up to date. Overlapping runs are skipped: one poller at a time owns the cursor."""
    await ensure_interval_schedule(
        client,
        schedule_id,
        HCM_CHANGES_POLLER,
        poller or PollerInput(),
        every=every,
        task_queue=task_queue,
    )


async def rescind_termination(
    client: Client,
    *,
    hcm_tenant: str,
    worker_id: str,
    termination_date: str,
    actor: str,
    actor_roles: list[str],
    reason: str = "",
) -> RescindAccepted:
    """An operator's rescind (for the CLI and the gateway): an update, so the caller learns
    whether the run accepted it; refusals come back as `WorkflowUpdateFailedError`."""
    handle = client.get_workflow_handle(
        termination_workflow_id(hcm_tenant, worker_id, termination_date)
    )
    accepted: RescindAccepted = await handle.execute_update(
        RESCIND_UPDATE,
        RescindRequest(
            actor=actor, actor_roles=actor_roles, reason=reason, source=RescindSource.OPERATOR
        ),
        result_type=RescindAccepted,
    )
    return accepted
