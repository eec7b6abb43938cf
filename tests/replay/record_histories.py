"""Record workflow histories for the replay test.

    python -m tests.replay.record_histories               # every scenario (as before)
    python -m tests.replay.record_histories --new         # only the desk / saga / continue-as-new
                                                          # scenarios (existing files untouched)
    python -m tests.replay.record_histories --only tti_continue_as_new [--only ...]
    python -m tests.replay.record_histories --list

Runs the workflows on the real dev server (what production histories look like) over the
in-memory fakes. Each history is written as JSON beside this file, named by its workflow ID
with "/" as "~"; a workflow that continued as new has one file per run, the run's label after
an "@" (`<id>@continued_as_new.json`, `<id>@continuation.json`). Re-record only for a
deliberate, patched change: the committed files stand for the histories of workflows already
running. Recording a scenario overwrites only its own files.

Scenarios (see `SCENARIOS`):

- `otp_clean`, `otp_corrected_cost_center`, `otp_abandoned_after_erp_refusal`: the saga's
  clean run, a cost center a person corrects, a run abandoned after the ERP refused
  (compensations).
- `otp_clean_encrypted`, `otp_abandoned_encrypted`: the clean run and the abandoned one again,
  recorded as production records them since payload encryption (`plumbing.codec`, the test key
  of `tests/replay/replay_key.py`; failure messages encrypted too). The files recorded before
  encryption hold plain payloads: both kinds must replay.

Every scenario now records with encryption on (the replay test holds the key).
- `demo`: one history per other workflow type, from the demo scenario on the whole stack.
- `otp_escalated_then_corrected`: an exception item escalates (its escalation recorded in the
  store), then ops retries it with corrected data and the run completes.
- `otp_resolution_races_escalation`: the escalation timer fires while the resolution's store
  record is in flight (the store held); the escalation is a no-op and the run completes.
- `otp_compensation_failed`: the ERP refuses the project, a person abandons, closing the ERP
  project runs but archiving the PSA shell is refused (AuthError): the run fails with
  ProvisioningFailed naming the failed compensation.
- `termination_rescinded_after_effective_date`: assignments ended, backfill raised, time entry
  closed, time posted; then HCM rescinds: compensations in reverse, the open item withdrawn.
- `termination_local_midnight`: a Sydney worker terminated effective Sydney's today while UTC
  is still on the day before (record between 13:00 and 24:00 UTC): the run acts at once, with
  the `termination-local-midnight` patch marker, where a run on UTC days would have waited.
- `tti_continue_as_new`: a time pipeline continues as new (a low `max_history_events`) with an
  open exception item carried; the item is resolved in the continuation, which then completes.
- `tti_dispatch_when_idle`: a time pipeline with the `time-dispatch-when-idle` patch marker:
  a lone entry goes out at once, three approved while its batch is at the ERP go together
  right after it.
- `assignment_sync_continue_as_new`: a sync with a refused forecast (open item) continues as
  new; the continuation resolves the item and writes the forecast (left open, as in production).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowHistory,
)
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from contracts import AuthError
from contracts.settings import load_settings
from contracts.v1.processes import (
    ExceptionResolution,
    ProvisioningStatus,
    ProvisioningStep,
    ResolutionAction,
)
from sandbox.temporal import embedded_temporal
from tests.replay.replay_key import REPLAY_KEYS
from tests.workflows import _provisioning as otp
from workflows.opportunity_to_project import OpportunityToProjectWorkflow

HERE = Path(__file__).parent / "histories"

Recorder = Callable[[WorkflowEnvironment], Awaitable[list[Path]]]


# --------------------------------------------------------------------------- helpers


def _write(history: WorkflowHistory, stem: str) -> Path:
    """Write a history as `<stem>.json`; a workflow task that failed is a bug, not a path."""
    types = [e.event_type for e in history.events]
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in types, f"{stem}: a task failed"
    HERE.mkdir(exist_ok=True)
    path = HERE / f"{stem}.json"
    path.write_text(history.to_json())
    print(f"recorded {path.name}: {len(history.events)} events")
    return path


def _stem(workflow_id: str, run: str | None = None) -> str:
    """The file stem of a workflow id (the replay test maps it back): "/" as "~", and the
    run's label after "@" for a workflow with more than one recorded run."""
    return workflow_id.replace("/", "~") + (f"@{run}" if run else "")


async def _until(check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 30) -> Any:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _history_has(handle: WorkflowHandle[Any, Any], event_type: int) -> bool:
    return event_type in [e.event_type for e in (await handle.fetch_history()).events]


async def _activity_completed(handle: WorkflowHandle[Any, Any], activity_type: str) -> bool:
    events = (await handle.fetch_history()).events
    scheduled = {
        e.event_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity_type
    }
    return any(
        e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        and e.activity_task_completed_event_attributes.scheduled_event_id in scheduled
        for e in events
    )


_WORKFLOW_TASK_EVENTS = (
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
)


async def _quiet_history(handle: WorkflowHandle[Any, Any]) -> WorkflowHistory:
    """The history of an open run once its last workflow task has completed and nothing new
    arrives: a whole task at the end, not one caught half-way."""
    last = -1

    async def settled() -> WorkflowHistory | None:
        nonlocal last
        history = await handle.fetch_history()
        tasks = [e.event_type for e in history.events if e.event_type in _WORKFLOW_TASK_EVENTS]
        # only the commands of the last task after its completion (timers, search attributes)
        done = tasks[-1] == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        stable = len(history.events) == last
        last = len(history.events)
        if done and stable:
            return history
        await asyncio.sleep(0.2)
        return None

    found: WorkflowHistory = await _until(settled, f"{handle.id} to go quiet")
    return found


async def _run_status(handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionStatus | None:
    return (await handle.describe()).status


async def _continued(
    env: WorkflowEnvironment,
    first: WorkflowHandle[Any, Any],
    push: Callable[[], Awaitable[None]],
    tries: int,
    what: str,
    max_history_events: int,
) -> WorkflowHandle[Any, Any]:
    """`push` the first run (at most `tries` times) until it has continued as new; a handle
    on the continuation, the run that followed."""
    for _ in range(tries):
        if await _run_status(first) is WorkflowExecutionStatus.CONTINUED_AS_NEW:
            break
        await push()
    else:
        events = len((await first.fetch_history()).events)
        raise RuntimeError(
            f"the {what} never continued as new: {events} events in its first run "
            f"(max_history_events={max_history_events})"
        )
    current = env.client.get_workflow_handle(first.id)
    second_run = (await current.describe()).run_id
    assert second_run != first.run_id
    return env.client.get_workflow_handle(first.id, run_id=second_run)


def _write_both_runs(
    workflow_id: str, first: WorkflowHistory, second: WorkflowHistory
) -> list[Path]:
    """The histories of a run that continued as new and of its continuation."""
    assert first.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    return [
        _write(first, _stem(workflow_id, "continued_as_new")),
        _write(second, _stem(workflow_id, "continuation")),
    ]


# --------------------------------------------------------------------------- OpportunityToProject


async def _otp_step(
    handle: WorkflowHandle[Any, Any],
    step: ProvisioningStep = ProvisioningStep.WAITING_FOR_RESOLUTION,
) -> ProvisioningStatus:
    return await otp.wait_for_step(handle, step, timeout_s=30)


def _settings(home: Path) -> Any:
    """Settings of a recording: payloads encrypted with the replay test's key."""
    return load_settings(home=home, payloads={"keys": REPLAY_KEYS})


def _otp_basic(name: str, suffix: str = "") -> Recorder:
    """The first three saga scenarios, recorded as they always were (`suffix`: the same run
    under another workflow id, hence file)."""

    async def record(env: WorkflowEnvironment) -> list[Path]:
        opp, path = {
            "clean": (otp.won_opportunity(), None),
            "corrected_cost_center": (otp.won_opportunity(cost_center="CC-404"), "correct"),
            "abandoned_after_erp_refusal": (otp.won_opportunity(), "abandon"),
        }[name]
        with tempfile.TemporaryDirectory() as tmp:
            async with otp.provisioning_world(env.client, Path(tmp), opportunity=opp) as world:
                if path == "abandon":
                    world.erp_refuses_the_project(otp.credit_hold())
                # the id = the file stem
                handle = await otp.start_saga(
                    world, workflow_id=f"opportunity_to_project_{name}{suffix}"
                )
                if path is not None:
                    status = await _otp_step(handle)
                    assert status.open_exception is not None
                    action = (
                        ResolutionAction.RETRY_WITH_DATA
                        if path == "correct"
                        else ResolutionAction.ABANDON
                    )
                    await handle.execute_update(
                        OpportunityToProjectWorkflow.resolve_exception,
                        otp.resolution(
                            status.open_exception.item_id,
                            action,
                            corrections={"cost_center": "CC-120"} if path == "correct" else {},
                        ),
                    )
                try:
                    await handle.result()
                except WorkflowFailureError:
                    pass
                history = await handle.fetch_history()
        return [_write(history, f"opportunity_to_project_{name}{suffix}")]

    return record


async def record_otp_escalated_then_corrected(env: WorkflowEnvironment) -> list[Path]:
    """An unknown cost center waits for a person; nobody answers within `escalation_after_s`,
    so the item escalates to ops (recorded in the store); ops then corrects the cost center
    and the saga completes."""
    opp = otp.won_opportunity(cost_center="CC-404")
    with tempfile.TemporaryDirectory() as tmp:
        async with otp.provisioning_world(env.client, Path(tmp), opportunity=opp) as world:
            handle = await otp.start_saga(
                world,
                workflow_id="opportunity_to_project_escalated_then_corrected",
                escalation_after_s=1,
            )
            status = await _otp_step(handle)
            item = status.open_exception
            assert item is not None and item.cause_code == "INVALID_COST_CENTER", item

            async def escalated() -> bool:
                row = world.store.get_exception(item.item_id)
                return row is not None and row.status == "escalated" and row.owner == "ops"

            await _until(escalated, "the escalation in the store")
            await _until(
                lambda: _activity_completed(handle, "store.escalate_exception"),
                "the escalation's activity in the history",
            )
            await handle.execute_update(
                OpportunityToProjectWorkflow.resolve_exception,
                otp.cost_center_corrected(item.item_id, actor="olga.ops", actor_roles=["ops"]),
            )
            result = await handle.result()
            assert result.enterprise_id
            row = world.store.get_exception(item.item_id)
            assert row is not None and row.status == "resolved" and row.owner == "ops", row
            history = await handle.fetch_history()
    return [_write(history, _stem(handle.id))]


async def record_otp_resolution_races_escalation(env: WorkflowEnvironment) -> list[Path]:
    """A person's resolution is accepted and its store record is in flight (the store held)
    when the escalation timer fires: the escalation finds the item claimed and does nothing;
    once the record is written the run goes on and completes. As tests/workflows/test_races."""
    from tests.workflows.test_races import resolved_as_the_timer_fires

    opp = otp.won_opportunity(cost_center="CC-404")
    with tempfile.TemporaryDirectory() as tmp:
        async with otp.provisioning_world(env.client, Path(tmp), opportunity=opp) as world:
            handle = await otp.start_saga(
                world,
                workflow_id="opportunity_to_project_resolution_races_escalation",
                escalation_after_s=2,
                activity_timeout_s=3600,  # the held store call must not time out
            )
            status = await _otp_step(handle)
            assert status.open_exception is not None
            item_id = status.open_exception.item_id
            accepted = await resolved_as_the_timer_fires(handle, world.store, item_id)
            assert accepted.action is ResolutionAction.RETRY_WITH_DATA
            result = await handle.result()
            assert result.enterprise_id
            row = world.store.get_exception(item_id)
            assert row is not None and row.status == "resolved", row
            assert row.owner == "delivery_manager", row  # never escalated
            history = await handle.fetch_history()
    assert not await _activity_completed(handle, "store.escalate_exception")
    return [_write(history, _stem(handle.id))]


async def record_otp_compensation_failed(env: WorkflowEnvironment) -> list[Path]:
    """The ERP refuses the project (a business rule) after the PSA shell exists; a person
    abandons. Compensation runs in reverse: the ERP project is closed, but archiving the PSA
    shell is refused with a non-retryable AuthError. The run fails with ProvisioningFailed
    naming the failed compensation."""
    with tempfile.TemporaryDirectory() as tmp:
        async with otp.provisioning_world(env.client, Path(tmp)) as world:
            world.erp_refuses_the_project(otp.credit_hold())
            world.recorders["psa"].failures["archive_project"] = AuthError(
                "PSA 401: the integration user may not archive projects", system="PSA"
            )
            handle = await otp.start_saga(
                world, workflow_id="opportunity_to_project_compensation_failed"
            )
            status = await _otp_step(handle)
            assert status.open_exception is not None
            assert status.open_exception.cause_code == "CUSTOMER_CREDIT_HOLD"
            await handle.execute_update(
                OpportunityToProjectWorkflow.resolve_exception,
                otp.resolution(
                    status.open_exception.item_id, ResolutionAction.ABANDON, note="lost deal"
                ),
            )
            try:
                await handle.result()
            except WorkflowFailureError as err:
                failure = err.cause
            else:
                raise AssertionError("the run did not fail")
            assert isinstance(failure, ApplicationError), failure
            assert failure.type == "ProvisioningFailed", failure
            assert "compensation failed: archive PSA project" in failure.message, failure.message
            undo = world.compensations()
            assert undo == ["erp.close_project", "psa.archive_project"], undo
            (shell,) = world.psa.projects.values()
            assert not shell.archived
            history = await handle.fetch_history()
    return [_write(history, _stem(handle.id))]


# --------------------------------------------------------------------------- WorkerTermination


async def record_termination_rescinded_after_effective_date(
    env: WorkflowEnvironment,
) -> list[Path]:
    """A termination effective today: assignments ended, backfill raised, time entry closed,
    approved time posted; while it is open for a rescind, HCM rescinds (as the poller
    delivers it): the compensations run in reverse and the open conflict item is withdrawn."""
    from contracts.v1.worker_termination import (
        RESCIND_SIGNAL,
        RescindRequest,
        RescindSource,
        TerminationOutcome,
        TerminationStatus,
        TerminationStep,
    )
    from tests.workflows import test_worker_termination as term

    with tempfile.TemporaryDirectory() as tmp:
        async with term.termination_world(env, Path(tmp)) as world:
            t = world.today
            term.staff(world)
            world.add_time(3, 240, approved=True)
            before = world.psa_state()
            termination, last_day = t, t - timedelta(days=1)
            handle = await term.start(
                world,
                termination,
                last_day,
                # a fixed id (the production one carries the date): one file name per scenario
                workflow_id=f"termination/test/{term.WORKER}/rescinded_after_effective_date",
                rescind_window_days=30,
            )
            await term.reaches(handle, TerminationStep.OPEN_FOR_RESCIND)
            assert world.psa_state() != before
            assert world.psa.users[term.WORKER].closed_after == last_day
            assert world.erp.postings, "approved time was not posted"
            await handle.signal(
                RESCIND_SIGNAL,
                RescindRequest(
                    actor="hcm", source=RescindSource.HCM_RESCIND, event_id="evt-rescind-1"
                ),
            )
            result = await handle.result()
            assert result.outcome is TerminationOutcome.RESCINDED, result
            assert result.compensation_failures == [], result
            assert world.psa_state() == before
            status: TerminationStatus = await handle.query("status", result_type=TerminationStatus)
            undone = [c for c in status.completed if c.startswith("compensated:")]
            assert undone == [
                "compensated: time entry reopened",
                "compensated: backfill cancelled",
                "compensated: assignments restored",
            ], undone
            items = world.exceptions(handle.id)
            assert items and all(
                i.status == "resolved" and (i.resolution or {}).get("action") == "withdrawn"
                for i in items
            ), items
            history = await handle.fetch_history()
    return [_write(history, _stem(handle.id))]


async def record_termination_local_midnight(env: WorkflowEnvironment) -> list[Path]:
    """A Sydney worker terminated effective Sydney's today, recorded while UTC is still on the
    day before: the run acts at once (Sydney's day has begun), where a run on UTC days would
    have waited for UTC's midnight; ends one assignment and completes. Written with plain
    payloads, as the other termination histories (the replay test expects only `*_encrypted`
    files encrypted)."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from contracts.v1.worker_termination import TerminationOutcome
    from tests.workflows import test_worker_termination as term

    now = datetime.now(UTC)
    sydney_today = now.astimezone(ZoneInfo("Australia/Sydney")).date()
    if sydney_today == now.date():
        raise RuntimeError("record between 13:00 and 24:00 UTC (Sydney a day ahead of UTC)")
    with tempfile.TemporaryDirectory() as tmp:
        async with term.termination_world(env, Path(tmp)) as world:
            t = world.today
            world.psa.add_assignment(
                world.project_id, "Consultant", t - timedelta(days=30), t + timedelta(days=60),
                worker_id=term.WORKER, minutes=9100,
            )  # fmt: skip
            handle = await term.start(
                world,
                sydney_today,
                sydney_today - timedelta(days=1),
                workflow_id=f"termination/test/{term.WORKER}/local_midnight",
                time_zone="Australia/Sydney",
                payroll_cutoff_days=0,
            )
            result = await handle.result()
            assert result.outcome is TerminationOutcome.COMPLETED, result
            assert result.ended_assignments == 1, result
            history = await handle.fetch_history()
            await _decode_in_place(env, history)
    return [_write(history, _stem(handle.id))]


# --------------------------------------------------------------------------- TimeToInvoice


TTI_TENANT = "replay"
TTI_MAX_HISTORY_EVENTS = 100  # the least TimePipelineInput allows


async def record_tti_continue_as_new(env: WorkflowEnvironment) -> list[Path]:
    """A project's pipeline posts approved time signal by signal with an entry held open
    (no rate for its role) until its history passes `max_history_events` and it continues as
    new, carrying the open item. In the continuation a person corrects the role, the entry
    posts, more time posts, and the run completes once idle."""
    from activities.time_to_invoice import signal_pipeline
    from contracts.v1.time_to_invoice import (
        ENTRIES_CHANGED_SIGNAL,
        PipelineStatus,
        TimePipelineInput,
        TimeResolutionResult,
    )
    from tests.workflows import test_time_to_invoice as tti

    with tempfile.TemporaryDirectory() as tmp:
        async with tti.tti_world(env, Path(tmp)) as world:
            pid = world.projects["tm"]
            defaults = TimePipelineInput(
                psa_tenant=TTI_TENANT,
                psa_project_id=pid,
                linger_ms=100,
                idle_close_s=3,
                max_history_events=TTI_MAX_HISTORY_EVENTS,
            )
            made = 0

            def approved(n: int) -> list[Any]:
                nonlocal made
                out = []
                for _ in range(n):
                    worker = tti.W1 if made % 2 else tti.W2
                    on = world.today - timedelta(days=1 + made % 40)
                    out.append(
                        world.psa.add_time_entry(
                            pid, worker, on, 60 + 15 * (made // 40), approved=True
                        )
                    )
                    made += 1
                return out

            async def signal(entries: list[Any]) -> str:
                return await signal_pipeline(
                    env.client,
                    defaults,
                    pid,
                    ENTRIES_CHANGED_SIGNAL,
                    tti.entries_changed(entries),
                    task_queue=world.task_queue,
                )

            async def settled(posted: int) -> PipelineStatus:
                async def check() -> PipelineStatus | None:
                    handle = env.client.get_workflow_handle(workflow_id)
                    status: PipelineStatus = await handle.query(
                        "status", result_type=PipelineStatus
                    )
                    done = status.counters.get("posted", 0) >= posted
                    return status if done and not status.pending and not status.in_flight else None

                found: PipelineStatus = await _until(check, f"{posted} entries posted")
                return found

            no_rate = tti._no_rate(world)
            workflow_id = await signal([no_rate, *approved(2)])
            first = env.client.get_workflow_handle(workflow_id)
            first_run = (await first.describe()).run_id
            first = env.client.get_workflow_handle(workflow_id, run_id=first_run)
            status = await settled(2)
            assert [i.cause.value for i in status.open_items] == ["MissingRateCard"], status
            item_id = status.open_items[0].item_id
            posted = 2

            async def more() -> None:
                nonlocal posted
                await signal(approved(2))
                posted += 2
                await settled(posted)

            current = await _continued(env, first, more, 60, "pipeline", TTI_MAX_HISTORY_EVENTS)
            status = await current.query("status", result_type=PipelineStatus)
            assert [i.item_id for i in status.open_items] == [item_id], status  # carried
            result = await current.execute_update(
                "resolve_exception",
                ExceptionResolution(
                    item_id=item_id,
                    action=ResolutionAction.RETRY_WITH_DATA,
                    actor="frank.finance",
                    actor_roles=["finance_controller"],
                    corrections={"role": "Consultant"},
                ),
                result_type=TimeResolutionResult,
            )
            assert result.outcome.value == "posted", result
            await signal(approved(2))
            await current.result()  # idle for `idle_close_s` with nothing open: completes
            row = world.store.get_exception(item_id)
            assert row is not None and row.status == "resolved", row
            assert len(world.postings("tm")) == posted + 3
            first_history = await first.fetch_history()
            second_history = await current.fetch_history()
    return _write_both_runs(workflow_id, first_history, second_history)


TTI_DISPATCH_TENANT = "dispatch"


async def record_tti_dispatch_when_idle(env: WorkflowEnvironment) -> list[Path]:
    """A pipeline with the `time-dispatch-when-idle` patch: one approved entry goes to the ERP
    at once (no linger timer), three more approved while its batch is held at the ERP wait for
    it and go together as soon as it comes back; the run completes once idle."""
    from activities.time_to_invoice import signal_pipeline
    from contracts.v1.time_to_invoice import (
        ENTRIES_CHANGED_SIGNAL,
        PipelineStatus,
        TimePipelineInput,
    )
    from tests.workflows import test_time_to_invoice as tti
    from tests.workflows.test_time_to_invoice_dispatch import held_erp

    with tempfile.TemporaryDirectory() as tmp:
        async with tti.tti_world(env, Path(tmp)) as world:
            pid = world.projects["tm"]
            defaults = TimePipelineInput(
                psa_tenant=TTI_DISPATCH_TENANT, psa_project_id=pid, linger_ms=60_000, idle_close_s=3
            )
            entries = tti._approved(world, "tm", 4)
            released, calls = held_erp(world)

            async def signal(batch: list[Any]) -> str:
                return await signal_pipeline(
                    env.client,
                    defaults,
                    pid,
                    ENTRIES_CHANGED_SIGNAL,
                    tti.entries_changed(batch),
                    task_queue=world.task_queue,
                )

            workflow_id = await signal(entries[:1])
            handle = env.client.get_workflow_handle(workflow_id)
            await _until(lambda: _true(bool(calls)), "the first batch at the ERP")
            await signal(entries[1:])

            async def waiting() -> bool:
                status = await handle.query("status", result_type=PipelineStatus)
                return status.pending == 3 and status.in_flight == 1

            await _until(waiting, "three entries waiting for the batch out")
            released.set()
            await handle.result()
            assert calls == [1, 3], calls
            assert len(world.postings("tm")) == 4
            history = await handle.fetch_history()
            await _decode_in_place(env, history)
    return [_write(history, _stem(workflow_id))]


async def _decode_in_place(env: WorkflowEnvironment, history: WorkflowHistory) -> None:
    """Plain payloads in the file: a name without `_encrypted` promises them (test_replay)."""
    from tests.replay.test_replay import payloads_in

    codec = env.client.data_converter.payload_codec
    assert codec is not None
    for event in history.events:
        for payload in payloads_in(event):
            (plain,) = await codec.decode([payload])
            payload.CopyFrom(plain)


async def _true(value: bool) -> bool:
    return value


# --------------------------------------------------------------------------- AssignmentSync


AS_MAX_HISTORY_EVENTS = 100  # the least SyncSettings allows


async def record_assignment_sync_continue_as_new(env: WorkflowEnvironment) -> list[Path]:
    """A project's sync writes a forecast; finance approves the period and the next change is
    refused (an open item); redelivered stale changes grow the history past
    `max_history_events` and the run continues as new with the item carried. In the
    continuation finance acknowledges the item, reopens the period, and the next change's
    forecast goes through. The continuation is left open (the sync never ends)."""
    from contracts.money import Money
    from contracts.v1 import ForecastStatus
    from contracts.v1.assignment_sync import AssignmentSyncInput, SyncSettings
    from tests.workflows import test_assignment_sync as sync
    from workflows.assignment_sync import AssignmentSyncWorkflow

    with tempfile.TemporaryDirectory() as tmp:
        async with sync.sync_world(env.client, Path(tmp)) as world:
            workflow_id = f"assignment-sync/test/{world.psa_project_id}"
            handle = await env.client.start_workflow(
                AssignmentSyncWorkflow.run,
                AssignmentSyncInput(
                    psa_tenant="test",
                    psa_project_id=world.psa_project_id,
                    settings=SyncSettings(
                        debounce_s=0.3,
                        max_history_events=AS_MAX_HISTORY_EVENTS,
                        standard_cost_rates={"Consultant": Money(80, "USD")},
                    ),
                ),
                id=workflow_id,
                task_queue=world.task_queue,
            )
            first_run = handle.result_run_id
            assert first_run is not None
            first = env.client.get_workflow_handle(workflow_id, run_id=first_run)
            change = AssignmentSyncWorkflow.assignment_changed
            await first.signal(change, sync.change("A1", 1, 40))
            await sync.settled(first, lambda s: s.forecast_version == 1)
            world.erp.set_forecast_status(sync.ERP_PROJECT, "2026-03", ForecastStatus.APPROVED)
            await first.signal(change, sync.change("A1", 2, 100))
            staffing = await sync.settled(first, lambda s: bool(s.open_refusals))
            item_id = staffing.open_refusals[0].item_id
            assert item_id is not None

            async def redelivered() -> None:
                # a redelivered old webhook: dropped, but it costs history
                await first.signal(change, sync.change("A1", 1, 40))
                await asyncio.sleep(0.05)

            current = await _continued(env, first, redelivered, 100, "sync", AS_MAX_HISTORY_EVENTS)
            staffing = await sync.settled(current, lambda s: s.runs == 2)
            assert [r.item_id for r in staffing.open_refusals] == [item_id], staffing  # carried
            await current.execute_update(
                AssignmentSyncWorkflow.resolve_exception,
                ExceptionResolution(
                    item_id=item_id,
                    action=ResolutionAction.SKIP,
                    actor="frank.finance",
                    actor_roles=["finance_controller"],
                ),
            )
            world.erp.set_forecast_status(sync.ERP_PROJECT, "2026-03", ForecastStatus.DRAFT)
            await current.signal(change, sync.change("A1", 3, 60))
            staffing = await sync.settled(current, lambda s: s.forecast_version == 2)
            assert not staffing.open_refusals, staffing
            row = world.store.get_exception(item_id)
            assert row is not None and row.status == "resolved", row
            first_history = await first.fetch_history()
            second_history = await _quiet_history(current)
    return _write_both_runs(workflow_id, first_history, second_history)


# --------------------------------------------------------------------------- the demo


async def from_the_demo() -> None:
    """One history per other workflow type, from the demo scenario on the whole stack: a
    change order approved by two people, a termination from HCM (still open for a rescind —
    an open history replays too) and the HCM poller."""
    from demo import run_scenario
    from stack import running_stack

    wanted = {
        "ChangeOrder",
        "WorkerTermination",
        "HcmChangesPoller",
        "AssignmentSync",
        "TimeToInvoice",
        "TimeToInvoiceSweep",
    }
    home = Path(tempfile.mkdtemp()) / ".pssync"
    async with running_stack(_settings(home), ephemeral_ports=True) as stack:
        await run_scenario(stack, deals=2, say=lambda _m: None)
        # The sweep runs every few minutes; an operator can run it at once.
        from contracts.naming import time_sweep_schedule_id

        sweep = stack.client.get_schedule_handle(time_sweep_schedule_id(stack.settings.psa.tenant))
        await sweep.trigger()
        for _ in range(300):
            runs = [
                wf
                async for wf in stack.client.list_workflows(
                    "WorkflowType = 'TimeToInvoiceSweep' AND ExecutionStatus = 'Completed'"
                )
            ]
            if runs:
                break
            await asyncio.sleep(0.1)
        for workflow_type in sorted(wanted):
            runs = [
                wf async for wf in stack.client.list_workflows(f"WorkflowType = '{workflow_type}'")
            ]
            if not runs:
                print(f"no {workflow_type} run in the demo")
                continue
            # the run that did the most (e.g. the pipeline with a resolution and an invoice)
            histories = [
                await stack.client.get_workflow_handle(run.id).fetch_history() for run in runs
            ]
            history = max(histories, key=lambda h: len(h.events))
            # file stem = workflow id with '/' replaced (the replay test maps it back)
            name = history.workflow_id.replace("/", "~")
            (HERE / f"{name}.json").write_text(history.to_json())
            print(f"recorded {workflow_type} {history.workflow_id}: {len(history.events)} events")


# --------------------------------------------------------------------------- the CLI

SCENARIOS: dict[str, Recorder] = {
    "otp_clean": _otp_basic("clean"),
    "otp_corrected_cost_center": _otp_basic("corrected_cost_center"),
    "otp_abandoned_after_erp_refusal": _otp_basic("abandoned_after_erp_refusal"),
    "otp_clean_encrypted": _otp_basic("clean", "_encrypted"),
    "otp_abandoned_encrypted": _otp_basic("abandoned_after_erp_refusal", "_encrypted"),
    "otp_escalated_then_corrected": record_otp_escalated_then_corrected,
    "otp_resolution_races_escalation": record_otp_resolution_races_escalation,
    "otp_compensation_failed": record_otp_compensation_failed,
    "termination_rescinded_after_effective_date": (
        record_termination_rescinded_after_effective_date
    ),
    "termination_local_midnight": record_termination_local_midnight,
    "tti_continue_as_new": record_tti_continue_as_new,
    "tti_dispatch_when_idle": record_tti_dispatch_when_idle,
    "assignment_sync_continue_as_new": record_assignment_sync_continue_as_new,
}
"""Scenarios recorded on one embedded dev server, each writing only its own files."""
DEMO = "demo"
"""The demo scenario on the whole stack (its own server)."""
NEW = [
    "otp_escalated_then_corrected",
    "otp_resolution_races_escalation",
    "otp_compensation_failed",
    "termination_rescinded_after_effective_date",
    "tti_continue_as_new",
    "assignment_sync_continue_as_new",
]
"""The scenarios added with the exception desk and the saga helper (`--new`)."""


async def record(names: list[str]) -> list[str]:
    """Record the named scenarios; returns the names that failed (each one is tried)."""
    failed: list[str] = []
    on_server = [n for n in names if n in SCENARIOS]
    if on_server:
        home = Path(tempfile.mkdtemp())
        async with embedded_temporal(_settings(home), ui=False, persist=False) as env:
            for name in on_server:
                began = time.monotonic()
                try:
                    await SCENARIOS[name](env)
                except Exception as err:  # report, and go on with the others
                    failed.append(name)
                    print(f"FAILED {name}: {type(err).__name__}: {err}")
                else:
                    print(f"  {name}: {time.monotonic() - began:.1f}s")
    if DEMO in names:
        await from_the_demo()
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    choices = [*SCENARIOS, DEMO]
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--only",
        action="append",
        choices=choices,
        metavar="SCENARIO",
        help="record only this scenario (repeatable); see --list",
    )
    group.add_argument(
        "--new", action="store_true", help="record only the scenarios added for the desk/saga"
    )
    group.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name in choices:
            print(name + ("  (new)" if name in NEW else ""))
        return 0
    names = args.only or (NEW if args.new else choices)
    failed = asyncio.run(record(names))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
