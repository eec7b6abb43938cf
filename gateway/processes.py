"""What the gateway asks Temporal: start processes, route resolutions, read a run's status.

    processes = Processes(client, settings, task_queue=TASK_QUEUE)
    outcome = await processes.opportunity_won(event)            # webhook action
    result = await processes.resolve(item.workflow_id, resolution)
    view = await processes.opportunity_run(crm_tenant, opportunity_id)

Workflows are addressed by *name* (`contracts.v1.processes`) and business-key workflow ids
(`contracts.naming`), never by importing `workflows/`; starting, joining and signalling go
through `plumbing.temporal`. The client must use pydantic's data converter
(`temporalio.contrib.pydantic.pydantic_data_converter`), as the worker does. Temporal being
unreachable becomes `GatewayError` 503 with Retry-After.

Identity is canonical here, at the edge: webhook payloads carry canonical tenants and ids (the
`contracts.ids` types in `gateway.webhooks`), a CRM tenant must be one of the configured ones
(`SystemSettings.known_tenants`, 422 `unknown_tenant` otherwise), ids in API paths are checked
the same way (422 `invalid_id`), and a PSA project pssync does not know is a 404 that starts
nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import SearchAttributePair
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from contracts.ids import (
    InvalidId,
    canonical_date_key,
    canonical_hcm_id,
    canonical_psa_id,
)
from contracts.naming import (
    TASK_QUEUE,
    assignment_sync_workflow_id,
    change_order_workflow_id,
    opportunity_workflow_id,
    termination_workflow_id,
    time_pipeline_workflow_id,
)
from contracts.settings import Settings
from contracts.systems import System
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
from contracts.v1.rate_cards import (
    PROCESS_RATE_CARD_SYNC,
    RATE_CARD_SYNC,
    REVISION_SIGNAL,
    RateCardSyncInput,
    RevisionSeen,
    rate_card_sync_workflow_id,
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
from gateway.signal_batcher import SignalBatcher
from gateway.webhooks import (
    OpportunityWon,
    Outcome,
    PsaEvent,
    PsaRateCardEvent,
    WebhookEvent,
    in_thread,
)
from plumbing.temporal import (
    BUSINESS_PROCESS,
    CHANGE_ORDER_ID,
    CRM_OPPORTUNITY_ID,
    signal_or_start,
    signal_with_start,
    start_or_join,
)
from store import Store

PSA_PROJECT_OBJECT = "workspace"
"""The xref object type of a PSA project (Kantata workspace), as the saga links it."""

OPENING_GRACE_S = 10.0
"""How long a resolution waits for a run to take in an item the store already shows."""

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


def canonical_or_422(canonical: Callable[[str], str], value: str, field: str) -> str:
    """`canonical(value)`, or a 422 `invalid_id` naming `field` (an id in a path or body)."""
    try:
        return canonical(value)
    except InvalidId as exc:
        raise GatewayError(422, "invalid_id", str(exc), field=field) from None


def not_running(workflow_id: str) -> GatewayError:
    """No such run, or none the caller may see (the same answer: no existence leaks)."""
    return GatewayError(409, "workflow_not_running", f"workflow {workflow_id!r} is not running")


def project_not_found(psa_project_id: str) -> GatewayError:
    return GatewayError(
        404, "project_not_found", f"pssync does not know PSA project {psa_project_id!r}"
    )


class Processes:
    def __init__(
        self,
        client: Client,
        settings: Settings,
        metrics: GatewayMetrics,
        *,
        store: Store | None = None,
        task_queue: str = TASK_QUEUE,
        rpc_timeout_s: float = 10.0,
    ) -> None:
        self.client = client
        self.settings = settings
        self.metrics = metrics
        self.store = store
        """Where the gateway learns which PSA projects pssync knows (xref); without one, a
        project is known only by its running pipeline."""
        self.task_queue = task_queue
        self.rpc_timeout = timedelta(seconds=rpc_timeout_s)
        self._time_batcher = SignalBatcher(self._send_entries)

    # -- identity ------------------------------------------------------------------------------

    def crm_tenant(self, tenant: str) -> str:
        """The canonical form of a CRM tenant pssync serves, or 422 `unknown_tenant`."""
        known = self.settings.crm.known_tenant(tenant)
        if known is None:
            raise GatewayError(
                422,
                "unknown_tenant",
                f"CRM tenant {tenant!r} is not one pssync serves "
                "(PSSYNC_CRM__TENANT, PSSYNC_CRM__TENANTS)",
                field="data.tenant",
            )
        return known

    def check_crm_event(self, data: BaseModel) -> None:
        """Refuse a parsed CRM delivery before the inbox: its tenant must be a known one."""
        tenant = getattr(data, "tenant", None)
        if isinstance(tenant, str):
            self.crm_tenant(tenant)

    async def psa_project_linked(self, psa_project_id: str) -> bool:
        """Whether the store links the PSA project (workspace) to an enterprise id."""
        if self.store is None:
            return False
        tenants = dict.fromkeys((self.settings.psa.tenant, *self.settings.psa.known_tenants))
        for tenant in tenants:  # the saga links with the configured spelling of the tenant
            eid = await in_thread(
                self.store.find_enterprise_id,
                System.PSA.value,
                tenant,
                PSA_PROJECT_OBJECT,
                psa_project_id,
            )
            if eid is not None:
                return True
        return False

    # -- webhook actions ----------------------------------------------------------------------

    async def opportunity_won(self, event: WebhookEvent) -> Outcome:
        """Start (or join) the opportunity-to-project saga for the won deal.

        The tenant and opportunity id are canonical (the payload model made them so; the
        tenant is checked against the configured ones again here), so `DEFAULT`/`default` or
        a 15-/18-character id name one run. Every copy of the webhook for one opportunity,
        whatever its event id, joins the running run. ALLOW_DUPLICATE_FAILED_ONLY: once a run
        has *completed* the opportunity is provisioned and a later webhook starts nothing (200
        already_completed); after a failed, terminated or timed-out run a new webhook starts a
        fresh run.
        """
        data = event.data
        assert isinstance(data, OpportunityWon)
        tenant = self.crm_tenant(data.tenant)
        return await self._start(
            OPPORTUNITY_TO_PROJECT,
            ProvisionProjectInput(
                crm_tenant=tenant,
                opportunity_id=data.id,
                event_id=event.event_id,
                escalation_after_s=self.settings.escalation_after_s,
            ),
            workflow_id=opportunity_workflow_id(tenant, data.id),
            attributes=[
                SearchAttributePair(CRM_OPPORTUNITY_ID, data.id),
                SearchAttributePair(BUSINESS_PROCESS, PROCESS_OPPORTUNITY_TO_PROJECT),
            ],
            summary=f"Provision project for opportunity {data.id}",
            details=f"CRM tenant {tenant}, opportunity {data.id}, webhook {event.event_id}",
        )

    async def change_order_submitted(self, event: WebhookEvent) -> Outcome:
        """Start (or join) the change-order saga for a submitted PSA change order."""
        data = event.data
        assert isinstance(data, PsaEvent)
        change_order_id = data.change_order_id
        if not change_order_id:
            raise GatewayError(
                422,
                "invalid_payload",
                "data.change_order_id is required",
                field="data.change_order_id",
            )
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
        assert isinstance(data, PsaEvent)
        assignment_id = data.assignment_id
        version = data.version
        if not assignment_id or version is None:
            raise GatewayError(
                422, "invalid_payload", "data.assignment_id and data.version are required"
            )
        tenant = self.settings.psa.tenant
        workspace_id = data.workspace_id
        workflow_id = assignment_sync_workflow_id(tenant, workspace_id)
        return await self._signal_with_start(
            ASSIGNMENT_SYNC,
            AssignmentSyncInput(psa_tenant=tenant, psa_project_id=workspace_id),
            workflow_id=workflow_id,
            signal=ASSIGNMENT_CHANGED_SIGNAL,
            signal_arg=AssignmentChange(
                assignment_id=assignment_id,
                version=int(version),
                deleted=(data.model_extra or {}).get("action") == "deleted",
            ),
            process=PROCESS_ASSIGNMENT_SYNC,
            summary=f"Staffing of PSA project {workspace_id} -> ERP labor forecast",
        )

    async def rate_card_revised(self, event: WebhookEvent) -> Outcome:
        """PSA `rate_card_version.published`: signal-with-start the card's rate card sync with
        the revision (a revision already synced is dropped there)."""
        data = event.data
        assert isinstance(data, PsaRateCardEvent)
        tenant = self.settings.psa.tenant
        return await self._signal_with_start(
            RATE_CARD_SYNC,
            RateCardSyncInput(psa_tenant=tenant, rate_card_id=data.rate_card_id),
            workflow_id=rate_card_sync_workflow_id(tenant, data.rate_card_id),
            signal=REVISION_SIGNAL,
            signal_arg=RevisionSeen(revision_id=data.rate_card_version_id),
            process=PROCESS_RATE_CARD_SYNC,
            summary=f"PSA rate card {data.rate_card_id} revisions -> ERP",
        )

    async def time_changed(self, event: WebhookEvent) -> Outcome:
        """PSA `time_entry.approved|unapproved`, `expense.approved`: signal-with-start the
        project's time-to-invoice pipeline with the entry (thin: the batch re-reads it)."""
        data = event.data
        assert isinstance(data, PsaEvent)
        kind = EntryKind.EXPENSE if event.event_type.startswith("expense.") else EntryKind.TIME
        entry_id = data.time_entry_id if kind is EntryKind.TIME else data.expense_id
        if not entry_id:
            raise GatewayError(
                422,
                "invalid_payload",
                f"data.{'time_entry_id' if kind is EntryKind.TIME else 'expense_id'} is required",
            )
        version = data.version
        ref = EntryRef(
            kind=kind,
            entry_id=entry_id,
            version=str(version) if version is not None else None,
            observed_at=datetime.now(UTC),
        )
        return await self._time_batcher.submit(data.workspace_id, ref)

    async def milestone_completed(self, event: WebhookEvent) -> Outcome:
        """PSA `billing_milestone.completed`: ask the project's pipeline to bill it."""
        data = event.data
        assert isinstance(data, PsaEvent)
        milestone_id = data.billing_milestone_id
        if not milestone_id:
            raise GatewayError(
                422,
                "invalid_payload",
                "data.billing_milestone_id is required",
                field="data.billing_milestone_id",
            )
        return await self._signal_pipeline(
            data.workspace_id,
            BILLING_SIGNAL,
            BillingRequest(trigger=BillingTrigger.MILESTONE, milestone_id=milestone_id),
        )

    async def request_billing(self, psa_project_id: str, request: BillingRequest) -> Outcome:
        """A person asks to bill a project now (close a T&M period, bill a milestone).

        Only a project pssync knows: one the store links (the saga provisioned it) gets its
        pipeline signalled-with-start; one that only has a running pipeline (its time came
        through the PSA's webhooks) is signalled; any other is 404 `project_not_found` and
        nothing is started — an id typed wrong must not leave a run behind.
        """
        psa_project_id = canonical_or_422(canonical_psa_id, psa_project_id, "psa_project_id")
        if await self.psa_project_linked(psa_project_id):
            return await self._signal_pipeline(psa_project_id, BILLING_SIGNAL, request)
        workflow_id = time_pipeline_workflow_id(self.settings.psa.tenant, psa_project_id)
        handle = self.client.get_workflow_handle(workflow_id)
        try:
            await handle.signal(BILLING_SIGNAL, request, rpc_timeout=self.rpc_timeout)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise project_not_found(psa_project_id) from exc
            if temporal_unavailable(exc):
                raise unavailable(exc) from exc
            raise GatewayError(502, "temporal_error", str(exc)) from exc
        except (RuntimeError, TimeoutError, ConnectionError) as exc:
            raise unavailable(exc) from exc
        return Outcome(status="accepted", result="signalled", workflow_id=workflow_id)

    async def time_pipeline_status(self, psa_project_id: str) -> dict[str, Any] | None:
        """The project's pipeline status (query), or None when it has no run."""
        psa_project_id = canonical_or_422(canonical_psa_id, psa_project_id, "psa_project_id")
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
        """Signal the project's pipeline, starting it if it is not running. Pipelines run for
        an hour past their last entry, so a plain signal nearly always finds one (the
        response then has no `run_id`)."""
        return await self._signal_with_start(
            TIME_TO_INVOICE,
            pipeline_input(self.settings, psa_project_id),
            workflow_id=time_pipeline_workflow_id(self.settings.psa.tenant, psa_project_id),
            signal=signal,
            signal_arg=arg,
            process=PROCESS_TIME_TO_INVOICE,
            summary=f"Time and expense of PSA project {psa_project_id} -> ERP and invoices",
            running_first=True,
        )

    async def _signal_with_start(
        self,
        workflow: str,
        arg: Any,
        *,
        workflow_id: str,
        signal: str,
        signal_arg: Any,
        process: str,
        summary: str,
        running_first: bool = False,
    ) -> Outcome:
        """Signal the entity run of `workflow_id`, starting it with `arg` if it is not running
        (`running_first`: try a plain signal first, `plumbing.temporal.signal_or_start`)."""
        options: dict[str, Any] = {
            "id": workflow_id,
            "signal": signal,
            "signal_arg": signal_arg,
            "task_queue": self.task_queue,
            "search_attributes": [SearchAttributePair(BUSINESS_PROCESS, process)],
            "static_summary": summary,
            "rpc_timeout": self.rpc_timeout,
        }
        try:
            if running_first:
                run_id = await signal_or_start(self.client, workflow, arg, **options)
            else:
                handle = await signal_with_start(self.client, workflow, arg, **options)
                run_id = handle.result_run_id
        except (RPCError, RuntimeError, TimeoutError, ConnectionError) as exc:
            if temporal_unavailable(exc):
                raise unavailable(exc) from exc
            raise GatewayError(
                502, "temporal_error", f"Temporal refused the signal: {exc}"
            ) from exc
        return Outcome(
            status="accepted", result="signalled", workflow_id=workflow_id, run_id=run_id
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
        already_completed); after a failed, terminated or timed-out run it starts afresh.
        Started or joined is told apart by `plumbing.temporal.start_or_join` (a FAIL-on-
        conflict start, then a describe), so only a real start counts in the metric."""
        try:
            result = await start_or_join(
                self.client,
                workflow,
                arg,
                id=workflow_id,
                task_queue=self.task_queue,
                search_attributes=attributes,
                static_summary=summary,
                static_details=details,
                rpc_timeout=self.rpc_timeout,
            )
        except WorkflowAlreadyStartedError as exc:
            # Runs under the id kept ending between our start and our look (start_or_join
            # gave up after a few rounds): the same request will settle later.
            raise GatewayError.unavailable(
                "start_contended", f"workflow {workflow_id!r} kept changing while starting"
            ) from exc
        except (RPCError, RuntimeError, TimeoutError, ConnectionError) as exc:
            if temporal_unavailable(exc):
                raise unavailable(exc) from exc
            raise GatewayError(502, "temporal_error", f"Temporal refused the start: {exc}") from exc
        if result.outcome == "already_completed":
            return Outcome(
                status="already_completed",
                result="already_completed",
                http_status=200,
                workflow_id=workflow_id,
                run_id=result.run_id,
            )
        if result.started:
            self.metrics.workflows_started.labels(workflow=workflow).inc()
        return Outcome(
            status="accepted",
            result=result.outcome,
            workflow_id=workflow_id,
            run_id=result.run_id,
        )

    # -- resolutions --------------------------------------------------------------------------

    async def resolve(self, workflow_id: str, resolution: ExceptionResolution) -> Any:
        """Send the resolution update and wait for its result (JSON-decoded).

        Raises GatewayError: 403/409/422 when the workflow's validator or handler refuses it
        (code = the ApplicationError type), 409 when the workflow is not running, 503/504 when
        Temporal cannot be reached or the update does not complete in time.

        The store shows an item as soon as it is written, a moment before the owning run has
        taken it in (its opening activity's result is still on its way). A `NoOpenException`
        in that moment is asked again, for up to `OPENING_GRACE_S`, instead of telling a
        person that the item they see is not open.
        """
        deadline = asyncio.get_running_loop().time() + OPENING_GRACE_S
        delay = 0.1
        while True:
            try:
                return await self.update(workflow_id, RESOLVE_EXCEPTION_UPDATE, resolution)
            except GatewayError as exc:
                if exc.code != "NoOpenException" or (
                    asyncio.get_running_loop().time() + delay > deadline
                ):
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def decide_change_order(self, change_order_id: str, decision: ChangeOrderDecision) -> Any:
        """An approver's decision on a change order (`decide` update, validated in the run)."""
        return await self.update(self.change_order_run(change_order_id), DECIDE_UPDATE, decision)

    def change_order_run(self, change_order_id: str) -> str:
        change_order_id = canonical_or_422(canonical_psa_id, change_order_id, "change_order_id")
        return change_order_workflow_id(self.settings.psa.tenant, change_order_id)

    def termination_run(self, worker_id: str, termination_date: str) -> str:
        worker_id = canonical_or_422(canonical_hcm_id, worker_id, "worker_id")
        termination_date = canonical_or_422(
            canonical_date_key, termination_date, "termination_date"
        )
        return termination_workflow_id(self.settings.hcm.tenant, worker_id, termination_date)

    async def rescind_termination(
        self, worker_id: str, termination_date: str, request: RescindRequest
    ) -> Any:
        """An operator's rescind of a worker's termination (`rescind_termination` update)."""
        workflow_id = self.termination_run(worker_id, termination_date)
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
                raise not_running(workflow_id) from exc
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
        try:
            workflow_id = opportunity_workflow_id(crm_tenant, opportunity_id)
        except InvalidId:  # a link recorded before keys were canonical: it names no run
            return None
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
