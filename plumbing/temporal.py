"""Client-side Temporal plumbing, in one place: search-attribute keys, start-or-join,
signal-with-start and interval Schedules. Used by the gateway, `starter.py` and activities that
start workflows; workflows import only the search-attribute keys (via `workflows._common`).

    result = await start_or_join(
        client, OPPORTUNITY_TO_PROJECT, inp, id=workflow_id, task_queue=TASK_QUEUE,
        search_attributes=[SearchAttributePair(CRM_OPPORTUNITY_ID, opportunity_id)],
    )
    result.outcome                       # "started" | "joined" | "already_completed"

    handle = await signal_with_start(
        client, TIME_TO_INVOICE, inp, id=workflow_id, task_queue=TASK_QUEUE,
        signal=ENTRIES_CHANGED_SIGNAL, signal_arg=EntriesChanged(refs=refs),
    )

    await ensure_interval_schedule(
        client, HCM_SCHEDULE_ID, HCM_CHANGES_POLLER, PollerInput(),
        every=timedelta(minutes=1), task_queue=TASK_QUEUE,
    )

Workflows are addressed by name; nothing here imports `workflows/`, activities, connectors or
the store. Errors are the SDK's own (`RPCError`, `WorkflowAlreadyStartedError`, ...): mapping
them to HTTP answers or retries is the caller's business.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from contracts.naming import SEARCH_ATTRIBUTES

# --------------------------------------------------------------------------- search attributes

_KEY_FACTORIES: dict[str, Callable[[str], SearchAttributeKey[Any]]] = {
    "Keyword": SearchAttributeKey.for_keyword,
    "Text": SearchAttributeKey.for_text,
    "Bool": SearchAttributeKey.for_bool,
    "Int": SearchAttributeKey.for_int,
    "Double": SearchAttributeKey.for_float,
    "Datetime": SearchAttributeKey.for_datetime,
    "KeywordList": SearchAttributeKey.for_keyword_list,
}


def _registered(name: str, kind: str) -> str:
    """`name`, checked against the attributes the dev server and the compose file register."""
    registered = SEARCH_ATTRIBUTES.get(name)
    if registered != kind:
        raise RuntimeError(
            f"search attribute {name!r} is registered as {registered!r}, not {kind!r} "
            "(contracts.naming.SEARCH_ATTRIBUTES)"
        )
    return name


SEARCH_ATTRIBUTE_KEYS: Mapping[str, SearchAttributeKey[Any]] = {
    name: _KEY_FACTORIES[kind](name) for name, kind in SEARCH_ATTRIBUTES.items()
}
"""Every registered custom search attribute's typed key, by name."""

BUSINESS_PROCESS = SearchAttributeKey.for_keyword(_registered("BusinessProcess", "Keyword"))
ENTERPRISE_PROJECT_ID = SearchAttributeKey.for_keyword(
    _registered("EnterpriseProjectId", "Keyword")
)
CRM_OPPORTUNITY_ID = SearchAttributeKey.for_keyword(_registered("CrmOpportunityId", "Keyword"))
CUSTOMER_NAME = SearchAttributeKey.for_keyword(_registered("CustomerName", "Keyword"))
CHANGE_ORDER_ID = SearchAttributeKey.for_keyword(_registered("ChangeOrderId", "Keyword"))
WORKER_ID = SearchAttributeKey.for_keyword(_registered("WorkerId", "Keyword"))
EXCEPTION_OPEN = SearchAttributeKey.for_bool(_registered("ExceptionOpen", "Bool"))

Attributes = Sequence[SearchAttributePair[Any]] | TypedSearchAttributes | None
"""Search attributes to start a workflow with: pairs, or an already typed collection."""


def _typed(attributes: Attributes) -> TypedSearchAttributes | None:
    if attributes is None or isinstance(attributes, TypedSearchAttributes):
        return attributes
    return TypedSearchAttributes(list(attributes))


# --------------------------------------------------------------------------- start or join

StartOutcome = Literal["started", "joined", "already_completed"]


@dataclass(frozen=True)
class StartResult:
    """What `start_or_join` did for a workflow id."""

    workflow_id: str
    run_id: str | None
    outcome: StartOutcome
    """`started`: this call started the run; `joined`: a run was already running under the id;
    `already_completed`: the id's run has closed and the reuse policy starts no new one."""

    @property
    def started(self) -> bool:
        return self.outcome == "started"


_FAILED_STATUSES = frozenset(
    {
        WorkflowExecutionStatus.FAILED,
        WorkflowExecutionStatus.TERMINATED,
        WorkflowExecutionStatus.TIMED_OUT,
        WorkflowExecutionStatus.CANCELED,
    }
)


def _reuse_allowed(policy: WorkflowIDReusePolicy, status: WorkflowExecutionStatus | None) -> bool:
    """Whether `policy` lets a new run start after a closed run with `status`."""
    if policy == WorkflowIDReusePolicy.ALLOW_DUPLICATE:
        return True
    if policy == WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY:
        return status in _FAILED_STATUSES
    return False


async def start_or_join(
    client: Client,
    workflow: str,
    arg: Any,
    *,
    id: str,
    task_queue: str,
    search_attributes: Attributes = None,
    static_summary: str | None = None,
    static_details: str | None = None,
    id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
    rpc_timeout: timedelta | None = None,
    attempts: int = 3,
) -> StartResult:
    """Start `workflow` under `id`, or join the run already running there — and say which,
    through the public API only.

    The start is made with `id_conflict_policy=FAIL`: if it succeeds, this call started the
    run. If the server answers that the id is taken (`WorkflowAlreadyStartedError`, raised both
    for a running run and for a closed run the reuse policy protects), the id's latest run is
    described: RUNNING -> `joined`; closed and not reusable under `id_reuse_policy` (default:
    only failed, terminated, timed-out or cancelled runs are started afresh) ->
    `already_completed`; closed and reusable (it ended between the two calls) -> start again,
    at most `attempts` times.
    """
    if id_reuse_policy == WorkflowIDReusePolicy.TERMINATE_IF_RUNNING:
        raise ValueError("start_or_join joins a running run; TERMINATE_IF_RUNNING would end it")
    typed = _typed(search_attributes)
    last: WorkflowAlreadyStartedError | None = None
    for _ in range(max(1, attempts)):
        try:
            handle = await client.start_workflow(
                workflow,
                arg,
                id=id,
                task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=id_reuse_policy,
                search_attributes=typed,
                static_summary=static_summary,
                static_details=static_details,
                rpc_timeout=rpc_timeout,
            )
        except WorkflowAlreadyStartedError as exc:
            last = exc
            try:
                desc = await client.get_workflow_handle(id).describe(rpc_timeout=rpc_timeout)
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                continue  # gone since (retention): start again
            if desc.status == WorkflowExecutionStatus.RUNNING:
                return StartResult(id, desc.run_id, "joined")
            if not _reuse_allowed(id_reuse_policy, desc.status):
                return StartResult(id, desc.run_id or exc.run_id, "already_completed")
            continue  # the run ended after our start was refused: a new one may start now
        return StartResult(id, handle.result_run_id, "started")
    assert last is not None
    raise last


# --------------------------------------------------------------------------- signal with start


async def signal_with_start(
    client: Client,
    workflow: str,
    arg: Any,
    *,
    id: str,
    signal: str,
    signal_arg: Any,
    task_queue: str,
    search_attributes: Attributes = None,
    static_summary: str | None = None,
    rpc_timeout: timedelta | None = None,
) -> WorkflowHandle[Any, Any]:
    """Signal the run under `id` with `signal(signal_arg)`, starting it with `arg` first when
    none is running (one atomic call). The handle's `result_run_id` is the run signalled."""
    return await client.start_workflow(
        workflow,
        arg,
        id=id,
        task_queue=task_queue,
        start_signal=signal,
        start_signal_args=[signal_arg],
        search_attributes=_typed(search_attributes),
        static_summary=static_summary,
        rpc_timeout=rpc_timeout,
    )


async def signal_or_start(
    client: Client,
    workflow: str,
    arg: Any,
    *,
    id: str,
    signal: str,
    signal_arg: Any,
    **start: Any,
) -> str | None:
    """`signal_with_start` (`start`: its other options) for a run that is usually running: a
    plain signal first, and a signal-with-start only when Temporal finds no running run under
    `id` (none yet, or it completed). The same outcome at about half the server's work: a
    signal-with-start cost the dev server 6.0 ms of CPU against 3.2 ms for a signal
    (`bench/temporal_costs.py`). The run id when this call started it, else None (the
    running run was signalled)."""
    try:
        await client.get_workflow_handle(id).signal(
            signal, signal_arg, rpc_timeout=start.get("rpc_timeout")
        )
        return None
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    handle = await signal_with_start(
        client, workflow, arg, id=id, signal=signal, signal_arg=signal_arg, **start
    )
    return handle.result_run_id


# --------------------------------------------------------------------------- schedules


async def ensure_interval_schedule(
    client: Client,
    schedule_id: str,
    workflow: str,
    arg: Any,
    *,
    every: timedelta,
    task_queue: str,
    workflow_id: str | None = None,
    overlap: ScheduleOverlapPolicy = ScheduleOverlapPolicy.SKIP,
) -> None:
    """Create the Schedule `schedule_id` that starts `workflow(arg)` every `every` (run ids
    `<workflow_id or schedule_id-run>-<time>`), or bring an existing one up to date. Overlapping
    runs are skipped by default: one run at a time owns whatever cursor the workflow keeps."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            workflow,
            arg,
            id=workflow_id or f"{schedule_id}-run",
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=overlap),
    )
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(replace)


__all__ = [
    "BUSINESS_PROCESS",
    "CHANGE_ORDER_ID",
    "CRM_OPPORTUNITY_ID",
    "CUSTOMER_NAME",
    "ENTERPRISE_PROJECT_ID",
    "EXCEPTION_OPEN",
    "SEARCH_ATTRIBUTE_KEYS",
    "WORKER_ID",
    "Attributes",
    "StartOutcome",
    "StartResult",
    "ensure_interval_schedule",
    "signal_with_start",
    "start_or_join",
]
