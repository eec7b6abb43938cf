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
- `GET /api/audit?actor=&action=&subject_kind=&subject_id=&since=&until=&limit=&cursor=`
  (bearer ops/auditor) — people's decisions and their outcomes, newest first: every decision
  route above records one row (`gateway.audit`; 503 `audit_unavailable` and nothing sent when
  it cannot be recorded).
- `POST /api/reconciliations` (bearer ops), `GET /api/reconciliations`,
  `GET /api/reconciliations/{run_id}` — start a reconciliation run, list runs, read one with its
  drifts (paged) (`gateway.routes.reconciliations`).
- `GET /metrics` — Prometheus text format (a registry per app).
- `/console/...` — the operations console for people (`gateway.console`): sign-in with the
  same tokens or the OIDC provider, the exception inbox and an item's page, approvals, a
  project's story, runs and health; HTML forms, not in the OpenAPI document.

Every route is behind `gateway.limits` (`settings.limits`): 429 + Retry-After over a caller's
rate, 414 for an overlong path, 413 for a body over its limit (counted while it streams in),
400 `json_too_deep`, 422 `invalid_id` for an overlong path parameter.
- `POST /codec/decode`, `POST /codec/encode` (bearer `ops`, or its codec session cookie) —
  Temporal's codec server protocol over the client's payload keys, CORS for the Temporal UI
  (`gateway.routes.codec`); `POST|DELETE /codec/session`, `GET /codec/login`.

The routes live in `gateway.routes` (one module per resource); this module builds the parts
they share and keeps them on `app.state`.

Must never: import workflows, activities or connectors; write business state other than the
webhook inbox.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from temporalio.client import Client

from contracts.naming import TASK_QUEUE
from contracts.settings import Settings
from gateway.auth import Authenticator, current_actor
from gateway.console import install_console
from gateway.errors import install_error_handlers
from gateway.indicators import BusinessIndicators, thresholds_of
from gateway.limits import install_limits
from gateway.metrics import GatewayMetrics
from gateway.openapi import declare as declare_openapi
from gateway.processes import Processes
from gateway.relay import InboxRelay
from gateway.routes import ROUTERS
from gateway.routes import audit as audit_routes
from gateway.routes.billing import BILLING_ROLES, BillingBody
from gateway.routes.codec import install_codec_server
from gateway.routes.decisions import DecisionRequest, RescindBody
from gateway.routes.exceptions import ResolutionRequest
from gateway.routes.reconciliations import ReconciliationGauges
from gateway.webhooks import (
    EventRoute,
    OpportunityWon,
    PsaEvent,
    PsaRateCardEvent,
    SignatureVerifier,
    WebhookReceiver,
    WebhookSource,
)
from plumbing.telemetry import GATEWAY, Tracing, start_tracing
from store import Store

__all__ = [
    "BILLING_ROLES",
    "OPPORTUNITY_WON",
    "TIME_EVENT_TYPES",
    "BillingBody",
    "DecisionRequest",
    "RescindBody",
    "ResolutionRequest",
    "create_app",
    "current_actor",
    "webhook_routes",
]

OPPORTUNITY_WON = "opportunity.won"
TIME_EVENT_TYPES = ("time_entry.approved", "time_entry.unapproved", "expense.approved")
"""PSA events that signal the project's time-to-invoice pipeline."""


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
            "rate_card_version.published": EventRoute(
                PsaRateCardEvent, processes.rate_card_revised, starts_workflow=True
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
    authenticator: Authenticator | None = None,
    tracing: Tracing | None = None,
) -> FastAPI:
    """Build the gateway over the given store and Temporal client (pydantic data converter).

    The inbox relay (`gateway.relay`) runs during the app's lifespan: it looks for pending
    inbox events every `relay_interval_s` and backs off up to `relay_max_backoff_s` while
    Temporal is unavailable. `authenticator` (tests) replaces the one built from settings.
    With telemetry on (`settings.telemetry`, or `tracing` given) requests are traced and the
    workflows they start continue their trace (`plumbing.telemetry`)."""
    own_tracing = tracing is None  # made here, so ended here
    tracing = tracing or start_tracing(settings.telemetry, GATEWAY)
    if tracing is not None:
        client = tracing.traced_client(client)
    metrics = GatewayMetrics()
    metrics.registry.register(ReconciliationGauges(store))  # read from the store per scrape
    metrics.registry.register(
        BusinessIndicators(store, thresholds_of(settings.indicators, settings.escalation_after_s))
    )
    authenticator = authenticator or Authenticator(settings)
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
        max_body_bytes=settings.limits.webhook_max_body_bytes,
        max_json_depth=settings.limits.max_json_depth,
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
            await authenticator.aclose()
            if tracing is not None and own_tracing:
                tracing.shutdown()

    app = FastAPI(
        title="pssync gateway",
        description="Signed webhooks in, exception resolutions in, status out.",
        version="1",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_limits(app, settings.limits)  # before the routers: they get its path-param bound
    app.state.settings = settings
    app.state.authenticator = authenticator
    app.state.store = store
    app.state.client = client
    app.state.metrics = metrics
    app.state.processes = processes
    app.state.webhooks = receiver
    app.state.relay = relay
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(audit_routes.router)  # GET /api/audit (gateway.audit records decisions)
    install_codec_server(app, settings)  # /codec/decode, /codec/encode for the Temporal UI
    install_console(app, settings)  # /console: the people's pages (gateway.console)
    declare_openapi(app)  # every answer, the error model, the bearer scheme (last: all routes)
    if tracing is not None:
        tracing.instrument_app(app)  # server spans; the Temporal calls within are their children
    return app
