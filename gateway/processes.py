"""What the gateway asks Temporal: start processes, route resolutions, read a run's status.

    processes = Processes(client, settings, task_queue=TASK_QUEUE)
    outcome = await processes.opportunity_won(event)            # webhook action
    result = await processes.resolve(item.workflow_id, resolution)
    view = await processes.opportunity_run(crm_tenant, opportunity_id)

Workflows are addressed by *name* (`contracts.v1.processes`) and business-key workflow ids
(`contracts.naming`), never by importing `workflows/`. The client must use pydantic's data
converter (`temporalio.contrib.pydantic.pydantic_data_converter`), as the worker does.
Temporal being unreachable becomes `GatewayError` 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from contracts.naming import (
    TASK_QUEUE,
    assignment_sync_workflow_id,
    change_order_workflow_id,
    opportunity_workflow_id,
    termination_workflow_id,
    time_pipeline_workflow_id,
)
from contracts.settings import Settings
from contracts.v1.assignment_sync import (
    ASSIGNMENT_CHANGED_SIGNAL,
    ASSIGNMENT_SYNC,
    PROCESS_ASSIGNMENT_SYNC,
    AssignmentChange,
    AssignmentSyncInput,
)
from contracts.v1.change_orders import (
    CHANGE_ORDER,
    DECIDE_UPDATE,
    PROCESS_CHANGE_ORDER,
    ApprovalPolicy,
    ChangeOrderDecision,
    ChangeOrderInput,
)
from contracts.v1.processes import (
    OPPORTUNITY_TO_PROJECT,
    PROCESS_OPPORTUNITY_TO_PROJECT,
    RESOLVE_EXCEPTION_UPDATE,
    STATUS_QUERY,
    ExceptionResolution,
    ProvisionProjectInput,
)
from contracts.v1.time_to_invoice import (
    BILLING_SIGNAL,
    ENTRIES_CHANGED_SIGNAL,
    PROCESS_TIME_TO_INVOICE,
    TIME_TO_INVOICE,
    BillingRequest,
    BillingTrigger,
    EntriesChanged,
    EntryKind,
    EntryRef,
    pipeline_input,
)
from contracts.v1.time_to_invoice import STATUS_QUERY as TIME_STATUS_QUERY
from contracts.v1.worker_termination import RESCIND_UPDATE, RescindRequest
from gateway.errors import GatewayError
from gateway.metrics import GatewayMetrics
from gateway.webhooks import OpportunityWon, Outcome, WebhookEvent

CRM_OPPORTUNITY_ID = SearchAttributeKey.for_keyword("CrmOpportunityId")
BUSINESS_PROCESS = SearchAttributeKey.for_keyword("BusinessProcess")
CHANGE_ORDER_ID = SearchAttributeKey.for_keyword("ChangeOrderId")

# ApplicationError types an update validator or handler raises, mapped to HTTP statuses; any
# other type is a 422. The error's type is passed through as the response's error code.
FORBIDDEN_UPDATE_ERRORS = frozenset({"NotAuthorized", "NotInScope", "Forbidden", "AuthError"})
CONFLICT_UPDATE_ERRORS = frozenset(
    {
        "AlreadyResolved",
        "UnknownExceptionItem",
        "NoOpenException",
        "NotWaiting",
        "AlreadyDecided",
        "NotRescindable",
        "ConflictError",
        "Conflict",
    }
)

_UNAVAILABLE = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.CANCELLED,
    }
)


def temporal_unavailable(exc: BaseException) -> bool:
    """Temporal cannot be reached now (the same call will work later)."""
    if isinstance(exc, RPCError):
        return exc.status in _UNAVAILABLE
    # A lazy client that cannot connect raises RuntimeError("Failed client connect: ...").
    return isinstance(exc, RuntimeError | TimeoutError | ConnectionError)


def unavailable(exc: BaseException) -> GatewayError:
    return GatewayError.unavailable(
        "temporal_unavailable", f"Temporal is unavailable: {exc}".strip()
    )


class Processes:
    def __init__(
        self,
        client: Client,
        settings: Settings,
        metrics: GatewayMetrics,
        *,
        task_queue: str = TASK_QUEUE,
        rpc_timeout_s: float = 10.0,
    ) -> None:
        self.client = client
        self.settings = settings
        self.metrics = metrics
        self.task_queue = task_queue
        self.rpc_timeout = timedelta(seconds=rpc_timeout_s)
        self._time_batcher = _SignalBatcher(self._send_entries)

    # -- webhook actions ----------------------------------------------------------------------

    async def opportunity_won(self, event: WebhookEvent) -> Outcome:
        """Start (or join) the opportunity-to-project saga for the won deal.

        USE_EXISTING: every copy of the webhook for one opportunity, whatever its event id,
        joins the running run. ALLOW_DUPLICATE_FAILED_ONLY: once a run has *completed* the
        opportunity is provisioned and a later webhook starts nothing (200 already_completed);
        after a failed, terminated or timed-out run a new webhook starts a fresh run.
        """
        data = event.data
        assert isinstance(data, OpportunityWon)
        return await self._start(
            OPPORTUNITY_TO_PROJECT,
            ProvisionProjectInput(
                crm_tenant=data.tenant,
                opportunity_id=data.id,
                event_id=event.event_id,
                escalation_after_s=self.settings.escalation_after_s,
            ),
            workflow_id=opportunity_workflow_id(data.tenant, data.id),
            attributes=[
                SearchAttributePair(CRM_OPPORTUNITY_ID, data.id),
                SearchAttributePair(BUSINESS_PROCESS, PROCESS_OPPORTUNITY_TO_PROJECT),
            ],
            summary=f"Provision project for opportunity {data.id}",
            details=f"CRM tenant {data.tenant}, opportunity {data.id}, webhook {event.event_id}",
        )

    async def change_order_submitted(self, event: WebhookEvent) -> Outcome:
        """Start (or join) the change-order saga for a submitted PSA change order."""
        data = event.data
        change_order_id = str(getattr(data, "change_order_id", "") or "")
        if not change_order_id:
            raise GatewayError(422, "invalid_payload", "data.change_order_id is required")
        tenant = self.settings.psa.tenant
        return await self._start(
            CHANGE_ORDER,
            ChangeOrderInput(
                psa_tenant=tenant,
                change_order_id=change_order_id,
                psa_project_id=getattr(data, "workspace_id", None),
                event_id=event.event_id,
                policy=ApprovalPolicy(
                    finance_threshold=self.settings.change_order_finance_threshold,
                    margin_floor=self.settings.change_order_margin_floor,
                ),
                escalation_after_s=self.settings.change_order_escalation_after_s,
                expires_after_s=self.settings.change_order_expires_after_s,
            ),
            workflow_id=change_order_workflow_id(tenant, change_order_id),
            attributes=[
                SearchAttributePair(CHANGE_ORDER_ID, change_order_id),
                SearchAttributePair(BUSINESS_PROCESS, PROCESS_CHANGE_ORDER),
            ],
            summary=f"Change order {change_order_id}: approvals, ERP and PSA budgets",
        )

    async def assignment_changed(self, event: WebhookEvent) -> Outcome:
        """Signal-with-start the project's assignment sync with the change's version (thin:
        the run re-reads the assignment; stale versions are dropped there)."""
        data = event.data
        assignment_id = str(getattr(data, "assignment_id", "") or "")
        version = getattr(data, "version", None)
        if not assignment_id or version is None:
            raise GatewayError(
                422, "invalid_payload", "data.assignment_id and data.version are required"
            )
        tenant = self.settings.psa.tenant
        workspace_id = str(data.workspace_id)  # type: ignore[attr-defined]
        workflow_id = assignment_sync_workflow_id(tenant, workspace_id)
        try:
            handle = await self.client.start_workflow(
                ASSIGNMENT_SYNC,
                AssignmentSyncInput(psa_tenant=tenant, psa_project_id=workspace_id),
                id=workflow_id,
                task_queue=self.task_queue,
                start_signal=ASSIGNMENT_CHANGED_SIGNAL,
                start_signal_args=[
                    AssignmentChange(
                        assignment_id=assignment_id,
                        version=int(version),
                        deleted=getattr(data, "action", None) == "deleted",
                    )
                ],
                search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(BUSINESS_PROCESS, PROCESS_ASSIGNMENT_SYNC)]
                ),
                static_summary=f"Staffing of PSA project {workspace_id} -> ERP labor forecast",
                rpc_timeout=self.rpc_timeout,
            )
        except (RPCError, RuntimeError, TimeoutError, ConnectionError) as exc:
            if temporal_unavailable(exc):
                raise unavailable(exc) from exc
            raise GatewayError(
                502, "temporal_error", f"Temporal refused the signal: {exc}"
            ) from exc
        return Outcome(
            status="accepted",
            result="signalled",
            workflow_id=workflow_id,
            run_id=handle.result_run_id,
        )

    async def time_changed(self, event: WebhookEvent) -> Outcome:
        """PSA `time_entry.approved|unapproved`, `expense.approved`: signal-with-start the
        project's time-to-invoice pipeline with the entry (thin: the batch re-reads it)."""
        data = event.data
        extra = data.model_extra or {}
        kind = EntryKind.EXPENSE if event.event_type.startswith("expense.") else EntryKind.TIME
        entry_id = str(extra.get("time_entry_id" if kind is EntryKind.TIME else "expense_id") or "")
        if not entry_id:
            raise GatewayError(
                422,
                "invalid_payload",
                f"data.{'time_entry_id' if kind is EntryKind.TIME else 'expense_id'} is required",
            )
        version = getattr(data, "version", None)
        ref = EntryRef(
            kind=kind,
            entry_id=entry_id,
            version=str(version) if version is not None else None,
            observed_at=datetime.now(UTC),
        )
        workspace_id = str(data.workspace_id)  # type: ignore[attr-defined]
        return await self._time_batcher.submit(workspace_id, ref)

    async def milestone_completed(self, event: WebhookEvent) -> Outcome:
        """PSA `billing_milestone.completed`: ask the project's pipeline to bill it."""
        data = event.data
        extra = data.model_extra or {}
        milestone_id = str(extra.get("billing_milestone_id") or "")
        if not milestone_id:
            raise GatewayError(422, "invalid_payload", "data.billing_milestone_id is required")
        workspace_id = str(data.workspace_id)  # type: ignore[attr-defined]
        return await self._signal_pipeline(
            workspace_id,
            BILLING_SIGNAL,
            BillingRequest(trigger=BillingTrigger.MILESTONE, milestone_id=milestone_id),
        )

    async def request_billing(self, psa_project_id: str, request: BillingRequest) -> Outcome:
        """A person asks to bill a project now (close a T&M period, bill a milestone)."""
        return await self._signal_pipeline(psa_project_id, BILLING_SIGNAL, request)

    async def time_pipeline_status(self, psa_project_id: str) -> dict[str, Any] | None:
        """The project's pipeline status (query), or None when it has no run."""
        workflow_id = time_pipeline_workflow_id(self.settings.psa.tenant, psa_project_id)
        handle = self.client.get_workflow_handle(workflow_id)
        try:
            status = await handle.query(TIME_STATUS_QUERY, rpc_timeout=self.rpc_timeout)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            if temporal_unavailable(exc):
                raise unavailable(exc) from exc
            raise GatewayError(502, "temporal_error", str(exc)) from exc
        except WorkflowQueryFailedError as exc:
            raise GatewayError(409, "query_failed", str(exc)) from exc
        return {"workflow_id": workflow_id, "status": status}

    async def _send_entries(self, psa_project_id: str, refs: list[EntryRef]) -> Outcome:
        return await self._signal_pipeline(
            psa_project_id, ENTRIES_CHANGED_SIGNAL, EntriesChanged(refs=refs, source="webhook")
        )

    async def _signal_pipeline(self, psa_project_id: str, signal: str, arg: Any) -> Outcome:
        workflow_id = time_pipeline_workflow_id(self.settings.psa.tenant, psa_project_id)
        try:
            handle = await self.client.start_workflow(
                TIME_TO_INVOICE,
                pipeline_input(self.settings, psa_project_id),
                id=workflow_id,
                task_queue=self.task_queue,
                start_signal=signal,
                start_signal_args=[arg],
                search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(BUSINESS_PROCESS, PROCESS_TIME_TO_INVOICE)]
                ),
                static_summary=(
                    f"Time and expense of PSA project {psa_project_id} -> ERP and invoices"
                ),
                rpc_timeout=self.rpc_timeout,
            )
        except (RPCError, RuntimeError, TimeoutError, ConnectionError) as exc:
            if temporal_unavailable(exc):
                raise unavailable(exc) from exc
            raise GatewayError(
                502, "temporal_error", f"Temporal refused the signal: {exc}"
            ) from exc
        return Outcome(
            status="accepted",
            result="signalled",
            workflow_id=workflow_id,
            run_id=handle.result_run_id,
        )

    async def _start(
        self,
        workflow: str,
        arg: Any,
        *,
        workflow_id: str,
        attributes: list[SearchAttributePair[str]],
        summary: str,
        details: str | None = None,
    ) -> Outcome:
        """Start a process, or join its running run (every copy of a webhook, whatever its
        event id, joins). Once a run has completed, a later event starts nothing (200
        already_completed); after a failed, terminated or timed-out run it starts afresh."""
        try:
            handle = await self.client.start_workflow(
                workflow,
                arg,
                id=workflow_id,
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                search_attributes=TypedSearchAttributes(attributes),
                static_summary=summary,
                static_details=details,
                rpc_timeout=self.rpc_timeout,
            )
        except WorkflowAlreadyStartedError as exc:
            return Outcome(
                status="already_completed",
                result="already_completed",
                http_status=200,
                workflow_id=workflow_id,
                run_id=exc.run_id,
            )
        except (RPCError, RuntimeError, TimeoutError, ConnectionError) as exc:
            if temporal_unavailable(exc):
                raise unavailable(exc) from exc
            raise GatewayError(502, "temporal_error", f"Temporal refused the start: {exc}") from exc
        response = getattr(handle, "_start_workflow_response", None)
        created = bool(getattr(response, "started", True))
        if created:
            self.metrics.workflows_started.labels(workflow=workflow).inc()
        return Outcome(
            status="accepted",
            result="started" if created else "joined",
            workflow_id=workflow_id,
            run_id=handle.result_run_id,
        )

    # -- resolutions --------------------------------------------------------------------------

    async def resolve(self, workflow_id: str, resolution: ExceptionResolution) -> Any:
        """Send the resolution update and wait for its result (JSON-decoded).

        Raises GatewayError: 403/409/422 when the workflow's validator or handler refuses it
        (code = the ApplicationError type), 409 when the workflow is not running, 503/504 when
        Temporal cannot be reached or the update does not complete in time.
        """
        return await self.update(workflow_id, RESOLVE_EXCEPTION_UPDATE, resolution)

    async def decide_change_order(self, change_order_id: str, decision: ChangeOrderDecision) -> Any:
        """An approver's decision on a change order (`decide` update, validated in the run)."""
        workflow_id = change_order_workflow_id(self.settings.psa.tenant, change_order_id)
        return await self.update(workflow_id, DECIDE_UPDATE, decision)

    async def rescind_termination(
        self, worker_id: str, termination_date: str, request: RescindRequest
    ) -> Any:
        """An operator's rescind of a worker's termination (`rescind_termination` update)."""
        workflow_id = termination_workflow_id(self.settings.hcm.tenant, worker_id, termination_date)
        return await self.update(workflow_id, RESCIND_UPDATE, request)

    async def update(self, workflow_id: str, name: str, arg: Any) -> Any:
        """Send a workflow update and wait for its result, mapping refusals to HTTP errors."""
        handle = self.client.get_workflow_handle(workflow_id)
        try:
            return await handle.execute_update(name, arg, rpc_timeout=self.rpc_timeout)
        except WorkflowUpdateFailedError as exc:
            raise update_refused(exc) from exc
        except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
            raise GatewayError(
                504,
                "update_timeout",
                "the workflow did not finish handling the request in time; it may still "
                "apply it — check its status before resending",
            ) from exc
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise GatewayError(
                    409,
                    "workflow_not_running",
                    f"workflow {workflow_id!r} is not running: {exc.message}",
                ) from exc
            if temporal_unavailable(exc):
                raise unavailable(exc) from exc
            raise GatewayError(502, "temporal_error", str(exc)) from exc
        except (RuntimeError, TimeoutError, ConnectionError) as exc:
            raise unavailable(exc) from exc

    # -- status -------------------------------------------------------------------------------

    async def opportunity_run(self, crm_tenant: str, opportunity_id: str) -> dict[str, Any] | None:
        """The saga's run for an opportunity and its `status` query, or None if there is none.

        A run that cannot be queried (no worker polling, or it failed) still reports its
        description, with `progress: null` and the reason in `progress_error`.
        """
        workflow_id = opportunity_workflow_id(crm_tenant, opportunity_id)
        handle = self.client.get_workflow_handle(workflow_id)
        try:
            desc = await handle.describe(rpc_timeout=self.rpc_timeout)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            if temporal_unavailable(exc):
                return {"workflow_id": workflow_id, "error": f"Temporal is unavailable: {exc}"}
            raise GatewayError(502, "temporal_error", str(exc)) from exc
        except (RuntimeError, TimeoutError, ConnectionError) as exc:
            return {"workflow_id": workflow_id, "error": f"Temporal is unavailable: {exc}"}
        view: dict[str, Any] = {
            "workflow_id": workflow_id,
            "run_id": desc.run_id,
            "workflow_type": desc.workflow_type,
            "status": desc.status.name if desc.status is not None else None,
            "start_time": desc.start_time.isoformat() if desc.start_time else None,
            "close_time": desc.close_time.isoformat() if desc.close_time else None,
            "progress": None,
        }
        try:
            view["progress"] = await asyncio.wait_for(
                handle.query(STATUS_QUERY, rpc_timeout=timedelta(seconds=3)), timeout=4
            )
        except (WorkflowQueryFailedError, RPCError, RuntimeError, TimeoutError) as exc:
            view["progress_error"] = f"{type(exc).__name__}: {exc}"
        return view

    # -- health -------------------------------------------------------------------------------

    async def check_health(self) -> dict[str, Any]:
        try:
            ok = await asyncio.wait_for(
                self.client.service_client.check_health(timeout=timedelta(seconds=2)), timeout=3
            )
        except Exception as exc:  # any failure to answer is "unreachable" for a health check
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": bool(ok)} if ok else {"ok": False, "error": "service not serving"}


class _SignalBatcher:
    """Coalesces the time events of one project that arrive within `window_s` into one
    signal-with-start. Each webhook request still waits for *its* signal to be accepted by
    Temporal before it is answered (202), so nothing is acknowledged that is not durable; a
    burst of approvals costs the pipeline one workflow task instead of one per entry (at 100
    approvals/s that is the difference between keeping up and falling behind)."""

    def __init__(
        self,
        send: Any,
        *,
        window_s: float = 0.05,
        max_refs: int = 500,
    ) -> None:
        self._send = send
        self.window_s = window_s
        self.max_refs = max_refs
        self._pending: dict[str, list[tuple[EntryRef, asyncio.Future[Outcome]]]] = {}
        self._flushers: dict[str, asyncio.Task[None]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, psa_project_id: str, ref: EntryRef) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        batch = self._pending.setdefault(psa_project_id, [])
        batch.append((ref, future))
        if len(batch) >= self.max_refs:
            self._flush_now(psa_project_id)
        elif psa_project_id not in self._flushers:
            self._flushers[psa_project_id] = asyncio.create_task(self._flush_later(psa_project_id))
        return await asyncio.shield(future)

    async def _flush_later(self, psa_project_id: str) -> None:
        await asyncio.sleep(self.window_s)
        self._flushers.pop(psa_project_id, None)
        await self._flush(psa_project_id)

    def _flush_now(self, psa_project_id: str) -> None:
        task = self._flushers.pop(psa_project_id, None)
        if task is not None:
            task.cancel()
        flush = asyncio.create_task(self._flush(psa_project_id))
        self._running.add(flush)  # the loop keeps only a weak reference
        flush.add_done_callback(self._running.discard)

    async def _flush(self, psa_project_id: str) -> None:
        batch = self._pending.pop(psa_project_id, [])
        if not batch:
            return
        try:
            outcome = await self._send(psa_project_id, [ref for ref, _ in batch])
        except BaseException as exc:  # every waiting request learns of the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for _, future in batch:
            if not future.done():
                future.set_result(outcome)


def update_refused(exc: WorkflowUpdateFailedError) -> GatewayError:
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        kind = cause.type or "UpdateRejected"
        message = cause.message or str(cause)
        if kind in FORBIDDEN_UPDATE_ERRORS:
            return GatewayError(403, kind, message)
        if kind in CONFLICT_UPDATE_ERRORS:
            return GatewayError(409, kind, message)
        return GatewayError(422, kind, message)
    return GatewayError(422, "update_rejected", str(cause) or "the workflow refused the update")
