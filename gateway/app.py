"""The gateway's app factory: signed webhooks in, exception resolutions in, status out.

    app = create_app(settings, store, client)   # the composition root builds all three
    uvicorn.run(app, host=settings.gateway_host, port=settings.gateway_port)

Routes (every error is `{"error": {"code", "message", "field"?}}`; bad input is never a 500):

- `POST /webhooks/crm`, `POST /webhooks/psa` — Standard Webhooks deliveries (see
  `gateway.webhooks` for verification and dedupe). 202 `accepted` (+ workflow_id, run_id),
  `queued` or `ignored`; 200 `duplicate` / `already_completed`; 401 unsigned, bad signature,
  stale/future timestamp; 400 not JSON; 422 bad fields. When Temporal is down the event is
  stored and answered 202 `queued`: the inbox relay (`gateway.relay`, run by the app's lifespan)
  starts or signals its run once Temporal is back. 503 + Retry-After only when the store is down
  (nothing was stored) or no relay runs.
- `GET /api/projects/{enterprise_id}` — the project's ids in every system (from xref) and, when
  the CRM opportunity is linked, its saga run (describe + `status` query). 404 if unknown.
- `GET /api/exceptions?status=&process=&workflow_id=`, `GET /api/exceptions/{item_id}`.
- `POST /api/exceptions/{item_id}/resolution` — `Authorization: Bearer <token>` (an actor of
  `settings.actors`), body `{"action", "corrections", "note"}`. 401 no/unknown token, 404 no
  item, 409 already resolved or workflow gone, 403 role not allowed for the item's process;
  otherwise the `resolve_exception` update goes to the owning workflow: 200 with its result, or
  the validator's refusal as 403/409/422. The workflow marks the item resolved, not the gateway.
- `POST /api/change-orders/{id}/decision` (bearer actor; `{"approve", "as_role", "note"}`) —
  the change-order run's `decide` update; refusals as 403/409/422.
- `POST /api/terminations/{worker_id}/{termination_date}/rescind` (bearer actor) — the
  termination run's `rescind_termination` update.
- `POST /api/projects/{psa_project_id}/billing` (bearer finance/ops),
  `GET /api/projects/{psa_project_id}/time-to-invoice` — a project pssync does not know (not
  linked in xref, no pipeline run) is 404 `project_not_found` and nothing is started; a
  malformed id in a path is 422 `invalid_id`.
- `GET /healthz` — store and Temporal reachable and the relay running: 200, else 503 with
  per-check details; `checks.relay` also reports its state (idle, draining, backing_off,
  stopped), `backlog` (pending inbox events), `oldest_age_s` and `failed`.
- `GET /api/inbox?state=pending|failed&limit=` — inbox events by state, oldest first (no
  bodies): the relay's backlog, or the events refused for good with the reason.
- `GET /metrics` — Prometheus text format (a registry per app).

Must never: import workflows, activities or connectors; write business state other than the
webhook inbox.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client

from contracts.ids import PsaId
from contracts.naming import TASK_QUEUE
from contracts.settings import Actor, Settings
from contracts.systems import System
from contracts.v1.change_orders import ChangeOrderDecision
from contracts.v1.processes import RESOLVER_ROLES, ExceptionResolution, ResolutionAction
from contracts.v1.time_to_invoice import BillingRequest, BillingTrigger
from contracts.v1.worker_termination import RescindRequest
from gateway.errors import GatewayError, install_error_handlers
from gateway.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from gateway.processes import Processes
from gateway.relay import InboxRelay
from gateway.webhooks import (
    EventRoute,
    OpportunityWon,
    PsaEvent,
    SignatureVerifier,
    WebhookReceiver,
    WebhookSource,
    in_thread,
)
from store import ExceptionItemRow, ExceptionStatus, InboxRow, InboxState, Store, XrefRow

log = logging.getLogger("pssync.gateway")

OPPORTUNITY_WON = "opportunity.won"
TIME_EVENT_TYPES = ("time_entry.approved", "time_entry.unapproved", "expense.approved")
"""PSA events that signal the project's time-to-invoice pipeline."""


class DecisionRequest(BaseModel):
    """An approver's decision on a change order (the actor comes from the bearer token)."""

    model_config = ConfigDict(extra="forbid")

    approve: bool
    as_role: str | None = None
    note: str = Field(default="", max_length=4000)


class RescindBody(BaseModel):
    """An operator's rescind of a termination (the actor comes from the bearer token)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=4000)


BILLING_ROLES = frozenset({"ops", "finance_controller"})


class BillingBody(BaseModel):
    """A request to bill a project now (the actor comes from the bearer token)."""

    model_config = ConfigDict(extra="forbid")

    period: str | None = Field(default=None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    milestone_id: PsaId | None = None


class ResolutionRequest(BaseModel):
    """A person's decision on an exception item (the actor comes from the bearer token)."""

    model_config = ConfigDict(extra="forbid")

    action: ResolutionAction
    corrections: dict[str, str] = Field(default_factory=dict)
    note: str = Field(default="", max_length=4000)


def webhook_routes(processes: Processes) -> dict[str, dict[str, EventRoute]]:
    """Event type -> route, per source. Later processes add their handlers here."""
    return {
        "crm": {
            OPPORTUNITY_WON: EventRoute(
                OpportunityWon,
                processes.opportunity_won,
                starts_workflow=True,
                check=processes.check_crm_event,  # an unknown tenant: 422, before the inbox
            ),
        },
        "psa": {
            **{
                event_type: EventRoute(PsaEvent, processes.time_changed, starts_workflow=True)
                for event_type in TIME_EVENT_TYPES
            },
            "billing_milestone.completed": EventRoute(
                PsaEvent, processes.milestone_completed, starts_workflow=True
            ),
            "change_order.submitted": EventRoute(
                PsaEvent, processes.change_order_submitted, starts_workflow=True
            ),
            "assignment.changed": EventRoute(
                PsaEvent, processes.assignment_changed, starts_workflow=True
            ),
        },
    }


def create_app(
    settings: Settings,
    store: Store,
    client: Client,
    *,
    task_queue: str = TASK_QUEUE,
    rpc_timeout_s: float = 10.0,
    relay_interval_s: float = 2.0,
    relay_max_backoff_s: float = 30.0,
) -> FastAPI:
    """Build the gateway over the given store and Temporal client (pydantic data converter).

    The inbox relay (`gateway.relay`) runs during the app's lifespan: it looks for pending
    inbox events every `relay_interval_s` and backs off up to `relay_max_backoff_s` while
    Temporal is unavailable."""
    metrics = GatewayMetrics()
    processes = Processes(
        client,
        settings,
        metrics,
        store=store,
        task_queue=task_queue,
        rpc_timeout_s=rpc_timeout_s,
    )
    routes = webhook_routes(processes)
    tolerance = settings.webhook_tolerance_s
    receiver = WebhookReceiver(
        store,
        metrics,
        {
            "crm": WebhookSource(
                SignatureVerifier(settings.webhook_secret_crm.get_secret_value(), tolerance),
                routes["crm"],
            ),
            "psa": WebhookSource(
                SignatureVerifier(settings.webhook_secret_psa.get_secret_value(), tolerance),
                routes["psa"],
            ),
        },
    )

    relay = InboxRelay(
        store,
        receiver,
        metrics,
        interval_s=relay_interval_s,
        max_backoff_s=max(relay_max_backoff_s, relay_interval_s),
    )
    receiver.relay = relay

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await relay.start()
        try:
            yield
        finally:
            await relay.stop()

    app = FastAPI(
        title="pssync gateway",
        description="Signed webhooks in, exception resolutions in, status out.",
        version="1",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.state.settings = settings
    app.state.store = store
    app.state.client = client
    app.state.metrics = metrics
    app.state.processes = processes
    app.state.webhooks = receiver
    app.state.relay = relay

    # -- webhooks -----------------------------------------------------------------------------

    @app.post("/webhooks/crm", tags=["webhooks"], status_code=202)
    async def crm_webhook(request: Request) -> JSONResponse:
        """A CRM event (Standard Webhooks signed). `opportunity.won` starts the saga."""
        return await receiver.receive("crm", request)

    @app.post("/webhooks/psa", tags=["webhooks"], status_code=202)
    async def psa_webhook(request: Request) -> JSONResponse:
        """A PSA event (Standard Webhooks signed); recorded in the inbox for now."""
        return await receiver.receive("psa", request)

    # -- status -------------------------------------------------------------------------------

    @app.get("/api/projects/{enterprise_id}", tags=["status"])
    async def project_status(enterprise_id: str) -> dict[str, Any]:
        rows = await in_thread(store.xrefs_for, enterprise_id)
        if not rows:
            raise GatewayError(
                404, "project_not_found", f"no system is linked to {enterprise_id!r}"
            )
        ids: dict[str, dict[str, str]] = {}
        for row in rows:
            ids.setdefault(row.system, {})[row.object_type] = row.external_id
        crm = _crm_opportunity(rows)
        workflow = None
        if crm is not None:
            workflow = await processes.opportunity_run(crm.tenant, crm.external_id)
        return {
            "enterprise_id": enterprise_id,
            "ids": ids,
            "links": [_xref_view(row) for row in rows],
            "workflow": workflow,
        }

    # -- exceptions ---------------------------------------------------------------------------

    @app.get("/api/exceptions", tags=["exceptions"])
    async def list_exceptions(
        status: Annotated[ExceptionStatus | None, Query()] = None,
        process: Annotated[str | None, Query(max_length=200)] = None,
        workflow_id: Annotated[str | None, Query(max_length=1000)] = None,
    ) -> dict[str, Any]:
        rows = await in_thread(
            store.list_exceptions, status.value if status else None, process, workflow_id
        )
        now = datetime.now(UTC)
        return {"items": [_exception_view(row, now) for row in rows], "count": len(rows)}

    @app.get("/api/exceptions/{item_id}", tags=["exceptions"])
    async def get_exception(item_id: str) -> dict[str, Any]:
        row = await _exception_or_404(store, item_id)
        return _exception_view(row, datetime.now(UTC))

    @app.post("/api/exceptions/{item_id}/resolution", tags=["exceptions"])
    async def resolve_exception(
        item_id: str,
        body: ResolutionRequest,
        actor: Annotated[Actor, Depends(current_actor)],
    ) -> dict[str, Any]:
        action = body.action.value
        try:
            row = await _exception_or_404(store, item_id)
            if row.status == ExceptionStatus.RESOLVED.value:
                raise GatewayError(
                    409, "already_resolved", f"exception item {item_id!r} is already resolved"
                )
            allowed = RESOLVER_ROLES.get(row.process, frozenset())
            if not allowed.intersection(actor.roles):
                raise GatewayError(
                    403,
                    "forbidden",
                    f"{actor.name} may not resolve {row.process} items "
                    f"(needs one of: {', '.join(sorted(allowed)) or 'no role is allowed'})",
                )
            resolution = ExceptionResolution(
                item_id=item_id,
                action=body.action,
                actor=actor.name,
                actor_roles=list(actor.roles),
                actor_scopes=list(actor.scopes),
                corrections=body.corrections,
                note=body.note,
            )
            result = await processes.resolve(row.workflow_id, resolution)
        except GatewayError as exc:
            metrics.resolutions.labels(action=action, outcome=_outcome(exc)).inc()
            raise
        metrics.resolutions.labels(action=action, outcome="accepted").inc()
        log.info("resolution %s of %s by %s accepted", action, item_id, actor.name)
        return {
            "status": "accepted",
            "item_id": item_id,
            "workflow_id": row.workflow_id,
            "result": result,
        }

    # -- change orders and terminations -------------------------------------------------------

    @app.post("/api/change-orders/{change_order_id}/decision", tags=["change orders"])
    async def decide_change_order(
        change_order_id: str,
        body: DecisionRequest,
        actor: Annotated[Actor, Depends(current_actor)],
    ) -> dict[str, Any]:
        """Approve or reject; the run's validator checks role, scope and what is still needed."""
        decision = ChangeOrderDecision(
            actor=actor.name,
            roles=list(actor.roles),
            scopes=list(actor.scopes),
            approve=body.approve,
            as_role=body.as_role,
            note=body.note,
        )
        result = await processes.decide_change_order(change_order_id, decision)
        log.info("change order %s: %s by %s", change_order_id, body.approve, actor.name)
        return {"status": "accepted", "change_order_id": change_order_id, "result": result}

    @app.post("/api/terminations/{worker_id}/{termination_date}/rescind", tags=["terminations"])
    async def rescind_termination(
        worker_id: str,
        termination_date: str,
        body: RescindBody,
        actor: Annotated[Actor, Depends(current_actor)],
    ) -> dict[str, Any]:
        """Undo a worker's termination: the run reverses its completed steps."""
        request = RescindRequest(
            actor=actor.name, actor_roles=list(actor.roles), reason=body.reason
        )
        result = await processes.rescind_termination(worker_id, termination_date, request)
        return {"status": "accepted", "worker_id": worker_id, "result": result}

    # -- time to invoice ----------------------------------------------------------------------

    @app.post("/api/projects/{psa_project_id}/billing", tags=["time to invoice"])
    async def request_billing(
        psa_project_id: str,
        body: BillingBody,
        actor: Annotated[Actor, Depends(current_actor)],
    ) -> JSONResponse:
        """Bill a project now: close a T&M period (`period`) or bill a milestone."""
        if not BILLING_ROLES.intersection(actor.roles):
            raise GatewayError(
                403,
                "forbidden",
                f"{actor.name} may not request billing (needs one of: "
                f"{', '.join(sorted(BILLING_ROLES))})",
            )
        if (body.period is None) == (body.milestone_id is None):
            raise GatewayError(
                422, "invalid_payload", "give exactly one of period and milestone_id"
            )
        request = BillingRequest(
            trigger=BillingTrigger.PERIOD_CLOSE if body.period else BillingTrigger.MILESTONE,
            period=body.period,
            milestone_id=body.milestone_id,
            requested_by=actor.name,
        )
        outcome = await processes.request_billing(psa_project_id, request)
        return JSONResponse(
            {"status": "accepted", "workflow_id": outcome.workflow_id, "billing": request.key},
            status_code=202,
        )

    @app.get("/api/projects/{psa_project_id}/time-to-invoice", tags=["time to invoice"])
    async def time_pipeline_status(psa_project_id: str) -> dict[str, Any]:
        """The project's pipeline: pending entries, outcomes, open items, invoices."""
        view = await processes.time_pipeline_status(psa_project_id)
        if view is None:
            raise GatewayError(
                404,
                "project_not_found",
                f"PSA project {psa_project_id!r} has no time-to-invoice run",
            )
        return view

    # -- operations ---------------------------------------------------------------------------

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> JSONResponse:
        checks: dict[str, Any] = {}
        try:
            await in_thread(store.inbox_get, "healthz", "probe")
            checks["store"] = {"ok": True}
        except GatewayError as exc:
            checks["store"] = {"ok": False, "error": exc.message}
        checks["temporal"] = await processes.check_health()
        checks["relay"] = await relay.status()
        ok = all(check["ok"] for check in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/api/inbox", tags=["operations"])
    async def list_inbox(
        state: Annotated[InboxState, Query()] = InboxState.PENDING,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Webhook events in the inbox by state, oldest first: `pending` (the relay's backlog)
        or `failed` (refused for good, with the reason; a sender's retry may still process
        them). Bodies are not shown."""
        rows = await in_thread(
            functools.partial(store.inbox_list, sources=tuple(receiver.sources)), state, limit
        )
        now = datetime.now(UTC)
        return {"items": [_inbox_view(row, now) for row in rows], "count": len(rows)}

    @app.get("/metrics", tags=["operations"])
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


# --------------------------------------------------------------------------- helpers


async def current_actor(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Actor:
    """The actor named by the bearer token (401 otherwise); runs before the body is read."""
    actor = _actor_for(request.app.state.settings, authorization)
    if actor is None:
        metrics: GatewayMetrics = request.app.state.metrics
        metrics.resolutions.labels(action="unknown", outcome="unauthorized").inc()
        raise GatewayError(
            401,
            "unauthorized",
            "a valid 'Authorization: Bearer <token>' header is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return actor


def _actor_for(settings: Settings, authorization: str | None) -> Actor | None:
    """The actor whose token the bearer header carries; tokens compared in constant time."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    found: Actor | None = None
    for known, actor in settings.actors.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            found = actor
    return found


async def _exception_or_404(store: Store, item_id: str) -> ExceptionItemRow:
    row = await in_thread(store.get_exception, item_id)
    if row is None:
        raise GatewayError(404, "exception_not_found", f"no exception item {item_id!r}")
    return row


def _outcome(exc: GatewayError) -> str:
    return {
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        409: "conflict",
        422: "rejected",
        503: "unavailable",
    }.get(exc.status, "error")


def _crm_opportunity(rows: list[XrefRow]) -> XrefRow | None:
    for row in rows:
        if row.system == System.CRM.value and row.object_type.lower() == "opportunity":
            return row
    return None


def _xref_view(row: XrefRow) -> dict[str, Any]:
    return {
        "system": row.system,
        "tenant": row.tenant,
        "object_type": row.object_type,
        "external_id": row.external_id,
        "entity_type": row.entity_type,
        "status": row.status,
        "remote_version": row.remote_version,
        "last_synced_at": row.last_synced_at.isoformat(),
    }


def _inbox_view(row: InboxRow, now: datetime) -> dict[str, Any]:
    return {
        "source": row.source,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "state": row.state,
        "received_at": row.received_at.isoformat(),
        "age_s": round((now - row.received_at).total_seconds(), 3),
        "attempts": row.attempts,
        "last_error": row.last_error,
        "workflow_id": row.workflow_id,
    }


def _exception_view(row: ExceptionItemRow, now: datetime) -> dict[str, Any]:
    """`age_s`: seconds the item has been open (until its resolution, once resolved)."""
    end = row.resolved_at or now
    return {
        "id": row.id,
        "workflow_id": row.workflow_id,
        "run_id": row.run_id,
        "process": row.process,
        "cause_code": row.cause_code,
        "field": row.field,
        "detail": row.detail,
        "status": row.status,
        "owner": row.owner,
        "created": row.created_at.isoformat(),
        "age_s": round((end - row.created_at).total_seconds(), 3),
        "resolved_at": row.resolved_at.isoformat() if row.resolved_at else None,
        "resolution": row.resolution,
        "context": row.context,
    }
