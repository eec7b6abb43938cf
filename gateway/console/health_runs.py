"""Runs and health, the Temporal side: the runs in flight per process, the oldest running runs'
retrying activities and the runs that failed recently, read for one page of
`gateway.console.health` — bounded (`RUNNING_LIST_MAX` runs listed, `DESCRIBE_MAX` described
`DESCRIBE_CONCURRENCY` at a time within `DESCRIBE_TIMEOUT_S` each, `TEMPORAL_BUDGET_S` in all)
and filtered by the person's scopes. What Temporal does not answer becomes a notice.

Must never: import workflows, activities or connectors.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowHistoryEventFilterType,
)
from temporalio.service import RPCError

from contracts import scopes
from contracts.settings import Actor
from gateway.console import views
from gateway.scoping import Scoper
from store import StoreError

log = logging.getLogger("pssync.gateway.console")

PROCESSES = tuple(views.PROCESS_NAMES)
"""The business processes counted in flight (the `BusinessProcess` search attribute)."""
RUNNING_LIST_MAX = 1000
"""Running runs read from visibility (the oldest of them are described)."""
DESCRIBE_MAX = 25
DESCRIBE_CONCURRENCY = 6
DESCRIBE_TIMEOUT_S = 2.0
TEMPORAL_BUDGET_S = 8.0
"""How long the page waits for Temporal in all; what is not back by then is left out."""
FAILURES_MAX = 20
FAILURES_LIST_MAX = 200
"""Closed runs read for a scoped person (the first `FAILURES_MAX` they reach are shown)."""
RECENT = timedelta(hours=24)
MESSAGE_MAX = 500

FAILED_STATUSES = ("Failed", "TimedOut", "Terminated")
_STATUS_WORDS = {
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.TIMED_OUT: "timed out",
    WorkflowExecutionStatus.TERMINATED: "terminated",
}
TEMPORAL_ERRORS = (RPCError, RuntimeError, TimeoutError, ConnectionError)
STORE_ERRORS = (SQLAlchemyError, StoreError, OSError)

T = TypeVar("T")


# --------------------------------------------------------------------------- what is shown


@dataclass(frozen=True)
class RetryingActivity:
    activity_type: str
    attempt: int
    maximum_attempts: int
    last_failure: str
    next_attempt: datetime | None


@dataclass
class StuckRun:
    workflow_id: str
    process: str
    started: datetime | None = None
    open_items: int = 0
    causes: list[str] = field(default_factory=list)
    oldest_item: datetime | None = None
    retrying: list[RetryingActivity] = field(default_factory=list)


@dataclass(frozen=True)
class FailedRun:
    workflow_id: str
    process: str
    status: str
    closed: datetime | None
    cause: str


@dataclass
class SystemHealth:
    """One system's numbers; None: not known (no metric, or the worker did not answer)."""

    system: str
    calls: float | None = None
    errors: float | None = None
    quota_used: float | None = None
    quota_limit: float | None = None
    rate_limited: float | None = None
    quota_waits: float | None = None

    @property
    def error_rate(self) -> float | None:
        if not self.calls or self.errors is None:
            return None
        return self.errors / self.calls


@dataclass
class Health:
    in_flight: dict[str, int | None] = field(default_factory=dict)
    in_flight_exact: bool = True
    running_read: int = 0
    described: int = 0
    stuck: list[StuckRun] = field(default_factory=list)
    open_items_total: int = 0
    failures: list[FailedRun] = field(default_factory=list)
    recent_causes: list[tuple[str, int]] = field(default_factory=list)
    inbox: dict[str, dict[str, Any]] = field(default_factory=dict)
    outbox_pending: int | None = None
    cursors: list[tuple[str, str]] = field(default_factory=list)
    gateway: dict[str, Any] = field(default_factory=dict)
    systems: list[SystemHealth] = field(default_factory=list)
    worker_metrics: bool = False
    notices: dict[str, str] = field(default_factory=dict)
    """Section -> what could not be read (temporal, describe, store, worker)."""


def process_of(execution: WorkflowExecution | Any) -> str:
    for pair in getattr(execution, "typed_search_attributes", None) or ():
        if pair.key.name == "BusinessProcess" and isinstance(pair.value, str):
            return pair.value
    return ""


def _attributes(execution: WorkflowExecution) -> dict[str, Any]:
    return {pair.key.name: pair.value for pair in execution.typed_search_attributes or ()}


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "…"


def _when(proto_time: Any) -> datetime | None:
    if proto_time is None or not proto_time.seconds:
        return None
    moment: datetime = proto_time.ToDatetime(tzinfo=UTC)
    return moment


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def _bounded(awaitable: Awaitable[T], timeout_s: float) -> T:
    return await asyncio.wait_for(awaitable, timeout=max(0.05, timeout_s))


# --------------------------------------------------------------------------- Temporal side


class RunReader:
    """Reads runs from Temporal for one page: bounded listings, describes and close events,
    filtered by the person's scopes."""

    def __init__(self, client: Client, scoper: Scoper, actor: Actor, process: str) -> None:
        self.client = client
        self.scoper = scoper
        self.actor = actor
        self.process = process
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._deadline = loop.time() + TEMPORAL_BUDGET_S
        self._gate = asyncio.Semaphore(DESCRIBE_CONCURRENCY)

    @property
    def everything(self) -> bool:
        return scopes.EVERYTHING in self.actor.scopes

    def left(self) -> float:
        return self._deadline - self._loop.time()

    def where(self, condition: str) -> str:
        if self.process:
            return f"BusinessProcess = {_quoted(self.process)} AND {condition}"
        return condition

    async def reaches(self, execution: WorkflowExecution) -> bool:
        if self.everything:
            return True
        keys = scopes.keys_of_workflow(execution.id) | scopes.keys_of_search_attributes(
            _attributes(execution)
        )
        for k in list(keys):
            kind, _, value = k.partition(":")
            if kind == "project":
                keys |= await self.scoper.project_keys(value)
        return scopes.covers(self.actor.scopes, keys)

    async def listing(self, query: str, limit: int) -> list[WorkflowExecution]:
        found: list[WorkflowExecution] = []
        runs = self.client.list_workflows(
            query,
            page_size=min(limit, 1000),
            limit=limit,
            rpc_timeout=timedelta(seconds=max(0.5, self.left())),
        )
        async for execution in runs:
            found.append(execution)
        return found

    async def running(self) -> list[WorkflowExecution]:
        """The running runs the person reaches (at most `RUNNING_LIST_MAX` read)."""
        executions = await _bounded(
            self.listing(self.where("ExecutionStatus = 'Running'"), RUNNING_LIST_MAX), self.left()
        )
        return [e for e in executions if await self.reaches(e)]

    async def counts(self, running: list[WorkflowExecution]) -> tuple[dict[str, int | None], bool]:
        """Runs in flight per process: exact counts for a person who reaches everything, else
        the runs they reach among those read."""
        processes = (self.process,) if self.process else PROCESSES
        if not self.everything:
            seen = Counter(process_of(e) for e in running)
            return {p: seen.get(p, 0) for p in processes}, len(running) < RUNNING_LIST_MAX

        async def count(process: str) -> int | None:
            query = f"BusinessProcess = {_quoted(process)} AND ExecutionStatus = 'Running'"
            try:
                counted = await _bounded(
                    self.client.count_workflows(
                        query, rpc_timeout=timedelta(seconds=DESCRIBE_TIMEOUT_S)
                    ),
                    DESCRIBE_TIMEOUT_S + 0.5,
                )
            except TEMPORAL_ERRORS as exc:
                log.info("health: no count of %s: %s", process, exc)
                return None
            return counted.count

        answers = await asyncio.gather(*(count(p) for p in processes))
        return dict(zip(processes, answers, strict=True)), True

    async def retrying(self, execution: WorkflowExecution) -> list[RetryingActivity] | None:
        """The run's pending activities past their first attempt (None: no answer)."""
        async with self._gate:
            left = min(DESCRIBE_TIMEOUT_S, self.left())
            if left <= 0:
                return None
            handle = self.client.get_workflow_handle(execution.id, run_id=execution.run_id)
            try:
                desc = await _bounded(
                    handle.describe(rpc_timeout=timedelta(seconds=left)), left + 0.25
                )
            except TEMPORAL_ERRORS as exc:
                log.info("health: no description of %s: %s", execution.id, exc)
                return None
            found = []
            for pending in desc.raw_description.pending_activities:
                if pending.attempt <= 1:
                    continue
                message = ""
                if pending.HasField("last_failure"):
                    message = await self.failure_text(pending.last_failure)
                found.append(
                    RetryingActivity(
                        activity_type=pending.activity_type.name,
                        attempt=pending.attempt,
                        maximum_attempts=pending.maximum_attempts,
                        last_failure=message,
                        next_attempt=_when(pending.next_attempt_schedule_time)
                        if pending.HasField("next_attempt_schedule_time")
                        else None,
                    )
                )
            return found

    async def failure_text(self, failure: Failure) -> str:
        """The failure's message and its causes', decrypted when the payloads are."""
        try:
            error: BaseException | None = await self.client.data_converter.decode_failure(failure)
        except Exception as exc:  # an undecodable failure still has a (maybe encoded) message
            log.info("health: failure not decoded: %s", exc)
            return _clip(failure.message or "(no message)")
        parts: list[str] = []
        while error is not None and len(parts) < 4:
            text = str(getattr(error, "message", "") or error)
            if text and text not in parts:
                parts.append(text)
            error = error.__cause__
        return _clip(": ".join(parts) or "(no message)")

    async def close_cause(self, execution: WorkflowExecution) -> str:
        """Why a closed run ended, from its close event (its status when that is not cheap)."""
        fallback = _STATUS_WORDS.get(execution.status or WorkflowExecutionStatus.FAILED, "ended")
        async with self._gate:
            left = min(DESCRIBE_TIMEOUT_S, self.left())
            if left <= 0:
                return fallback
            handle = self.client.get_workflow_handle(execution.id, run_id=execution.run_id)
            try:
                events = handle.fetch_history_events(
                    page_size=1,
                    event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT,
                    rpc_timeout=timedelta(seconds=left),
                )
                event = await _bounded(anext(aiter(events), None), left + 0.25)
            except (*TEMPORAL_ERRORS, StopAsyncIteration) as exc:
                log.info("health: no close event of %s: %s", execution.id, exc)
                return fallback
        if event is None:
            return fallback
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            return await self.failure_text(event.workflow_execution_failed_event_attributes.failure)
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
            reason = event.workflow_execution_terminated_event_attributes.reason
            return _clip(f"terminated ({reason})" if reason else "terminated")
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
            return "timed out (its run or execution timeout passed)"
        return fallback

    async def failures(self, now: datetime) -> list[FailedRun]:
        since = (now - RECENT).strftime("%Y-%m-%dT%H:%M:%SZ")
        statuses = ", ".join(_quoted(s) for s in FAILED_STATUSES)
        query = self.where(f"ExecutionStatus IN ({statuses}) AND CloseTime > '{since}'")
        limit = FAILURES_MAX if self.everything else FAILURES_LIST_MAX
        executions = await _bounded(self.listing(query, limit), self.left())
        shown = [e for e in executions if await self.reaches(e)][:FAILURES_MAX]
        causes = await asyncio.gather(*(self.close_cause(e) for e in shown))
        return [
            FailedRun(
                workflow_id=e.id,
                process=process_of(e),
                status=_STATUS_WORDS.get(e.status or WorkflowExecutionStatus.FAILED, "ended"),
                closed=e.close_time,
                cause=cause,
            )
            for e, cause in zip(shown, causes, strict=True)
        ]


async def read_runs(reader: RunReader, health: Health, now: datetime) -> dict[str, StuckRun]:
    """Fill the in-flight counts and recent failures; the retrying runs, by workflow id."""
    stuck: dict[str, StuckRun] = {}
    try:
        running = await reader.running()
        health.running_read = len(running)
        health.in_flight, health.in_flight_exact = await reader.counts(running)
    except (*TEMPORAL_ERRORS, *STORE_ERRORS) as exc:
        log.info("health: Temporal did not list the running runs: %s", exc)
        health.notices["temporal"] = "Temporal is unavailable: the runs in flight cannot be read."
        return stuck
    oldest = sorted(running, key=lambda e: e.start_time or now)[:DESCRIBE_MAX]
    answers = await asyncio.gather(*(reader.retrying(e) for e in oldest))
    health.described = sum(1 for a in answers if a is not None)
    if health.described < len(oldest):
        health.notices["describe"] = (
            f"{len(oldest) - health.described} of the {len(oldest)} oldest runs did not answer "
            "in time; their retrying activities are not shown."
        )
    for execution, retrying in zip(oldest, answers, strict=True):
        if retrying:
            stuck[execution.id] = StuckRun(
                execution.id, process_of(execution), execution.start_time, retrying=retrying
            )
    try:
        health.failures = await reader.failures(now)
    except (*TEMPORAL_ERRORS, *STORE_ERRORS) as exc:
        log.info("health: Temporal did not list the failed runs: %s", exc)
        health.notices["failures"] = "Temporal is unavailable: recent failures cannot be read."
    return stuck
