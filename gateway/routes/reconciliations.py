"""Reconciliation: start a run, list runs, read one with its drifts (paged); and the gauges
`/metrics` renders from the store at scrape time.

- `POST /api/reconciliations` (bearer `ops`; audited) — body `{"domain", "project"?, "since"?,
  "dry_run"?}`: starts a `Reconciliation` run, 202 with its `run_id`.
- `GET /api/reconciliations?domain=&project=&limit=&offset=` — runs, newest first.
- `GET /api/reconciliations/{run_id}?state=&kind=&offset=&limit=` — the run's report and the
  drifts it found (or found gone), paged.

Readers see the runs of the tenants and projects their scopes reach.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import BaseModel, ConfigDict
from temporalio.common import SearchAttributePair
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from contracts import scopes
from contracts.ids import PsaId
from contracts.settings import Actor
from contracts.v1.reconciliation import (
    PROCESS_RECONCILIATION,
    RECONCILE_ROLES,
    RECONCILIATION,
    Domain,
    reconciliation_input,
    reconciliation_workflow_id,
)
from gateway.audit import AuditSpec, audited
from gateway.auth import READ_ROLES, require_roles
from gateway.errors import GatewayError
from gateway.processes import (
    Processes,
    temporal_unavailable,
    unavailable,
)
from gateway.routes._deps import ActorDep, ProcessesDep, ScoperDep, StoreDep
from gateway.scoping import Scoper
from gateway.webhooks import in_thread
from plumbing.temporal import BUSINESS_PROCESS, start_or_join
from store import DriftRow, ReconciliationRunRow, Store

log = logging.getLogger("pssync.gateway")

router = APIRouter(tags=["reconciliation"])


class ReconcileBody(BaseModel):
    """A run to start (the actor comes from the bearer token)."""

    model_config = ConfigDict(extra="forbid")

    domain: Domain = Domain.LABOR_ACTUALS
    project: PsaId | None = None
    """One PSA project; absent: every project of the tenant."""
    since: date | None = None
    """Periods from this date's month on; absent: every period."""
    dry_run: bool = False
    """Report only: nothing is repaired or escalated."""


RECONCILE = AuditSpec(
    subject_kind="reconciliation",
    subject_id=lambda a: f"{a['body'].domain.value}/{a['body'].project or 'all'}",
    action=lambda a: "reconciliation.dry_run" if a["body"].dry_run else "reconciliation.start",
    tenant=lambda s: s.psa.tenant,
)


@router.post("/api/reconciliations", status_code=202)
@audited(RECONCILE)
async def start_reconciliation(
    body: ReconcileBody, actor: ActorDep, processes: ProcessesDep
) -> JSONResponse:
    """Start a reconciliation run now (operators)."""
    require_roles(actor, RECONCILE_ROLES, "start a reconciliation")
    project = body.project
    settings = processes.settings
    request = reconciliation_input(
        settings,
        body.domain,
        project=project,
        since=body.since,
        dry_run=body.dry_run,
        requested_by=f"api:{actor.name}",
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    workflow_id = reconciliation_workflow_id(body.domain, request.tenant, project, stamp)
    try:
        started = await start_or_join(
            processes.client,
            RECONCILIATION,
            request,
            id=workflow_id,
            task_queue=processes.task_queue,
            search_attributes=[SearchAttributePair(BUSINESS_PROCESS, PROCESS_RECONCILIATION)],
            static_summary=f"Reconcile {body.domain.value} of {request.tenant}"
            + (f", project {project}" if project else ""),
            rpc_timeout=processes.rpc_timeout,
        )
    except (RPCError, RuntimeError, TimeoutError, ConnectionError) as exc:
        if temporal_unavailable(exc):
            raise unavailable(exc) from exc
        raise GatewayError(502, "temporal_error", f"Temporal refused the start: {exc}") from exc
    except WorkflowAlreadyStartedError as exc:
        raise GatewayError.unavailable("start_contended", str(exc)) from exc
    log.info("reconciliation %s started by %s", workflow_id, actor.name)
    return JSONResponse(
        {"status": "started", "run_id": workflow_id, "workflow_id": workflow_id,
         "temporal_run_id": started.run_id},
        status_code=202,
    )  # fmt: skip


@router.get("/api/reconciliations")
async def list_reconciliations(
    actor: ActorDep,
    store: StoreDep,
    scoper: ScoperDep,
    domain: Annotated[Domain | None, Query()] = None,
    project: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    require_roles(actor, READ_ROLES, "read reconciliation runs")
    rows = await in_thread(
        lambda: store.list_reconciliation_runs(
            domain=domain.value if domain else None, project=project, limit=limit, offset=offset
        )
    )
    visible = [row for row in rows if await _reaches(scoper, actor, row)]
    return {"runs": [run_view(row) for row in visible], "count": len(visible)}


@router.get("/api/reconciliations/{run_id:path}")
async def get_reconciliation(
    run_id: str,
    actor: ActorDep,
    store: StoreDep,
    scoper: ScoperDep,
    processes: ProcessesDep,
    state: Annotated[str | None, Query(max_length=32)] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """A run and its drifts, paged (`next_offset` while more remain)."""
    require_roles(actor, READ_ROLES, "read reconciliation runs")
    row = await in_thread(store.get_reconciliation_run, run_id)
    if row is None and scopes.EVERYTHING in actor.scopes and await _starting(processes, run_id):
        # Started a moment ago: the run records itself in its first step.
        return {"run": {"run_id": run_id, "state": "starting"}, "drifts": [], "total": 0,
                "offset": offset, "next_offset": None}  # fmt: skip
    if row is None or not await _reaches(scoper, actor, row):
        raise GatewayError(404, "reconciliation_not_found", f"no reconciliation run {run_id!r}")
    drifts, total = await in_thread(
        lambda: store.run_drifts(run_id, offset=offset, limit=limit, state=state, kind=kind)
    )
    more = offset + len(drifts) < total
    return {
        "run": run_view(row),
        "drifts": [drift_view(d) for d in drifts],
        "total": total,
        "offset": offset,
        "next_offset": offset + len(drifts) if more else None,
    }


async def _starting(processes: Processes, run_id: str) -> bool:
    """Whether `run_id` names a reconciliation run Temporal holds (running or not)."""
    if not run_id.startswith("reconcile/"):
        return False
    try:
        await processes.client.get_workflow_handle(run_id).describe(
            rpc_timeout=processes.rpc_timeout
        )
    except (RPCError, RuntimeError, TimeoutError, ConnectionError):
        return False
    return True


async def _reaches(scoper: Scoper, actor: Actor, row: ReconciliationRunRow) -> bool:
    if scopes.EVERYTHING in actor.scopes:
        return True
    keys = {scopes.key("tenant", row.tenant)}
    if row.project:
        keys |= await scoper.project_keys(row.project)
    return scopes.covers(actor.scopes, keys)


def run_view(row: ReconciliationRunRow) -> dict[str, Any]:
    return {
        "run_id": row.id,
        "domain": row.domain,
        "tenant": row.tenant,
        "project": row.project,
        "since": row.since.isoformat() if row.since else None,
        "dry_run": row.dry_run,
        "requested_by": row.requested_by,
        "state": row.state,
        "started_at": row.started_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "seconds": row.seconds,
        "by_kind": row.by_kind,
        **{name: getattr(row, name) for name in _RUN_NUMBERS},
    }


_RUN_NUMBERS = (
    "found", "new", "repaired", "escalated", "reported", "kept", "gone", "unrepaired",
    "records", "projects", "vendor_calls",
)  # fmt: skip


def drift_view(row: DriftRow) -> dict[str, Any]:
    return {
        "fingerprint": row.fingerprint,
        "domain": row.domain,
        "kind": row.kind,
        "state": row.state,
        "disposition": row.disposition,
        "owner": row.owner,
        "keys": row.keys,
        "values": row.values,
        "detail": row.detail,
        "item_id": row.item_id,
        "resolved_by": row.resolved_by,
        "repairs": row.repairs,
        "first_seen": row.first_seen.isoformat(),
        "last_seen": row.last_seen.isoformat(),
        "first_run": row.first_run,
        "last_run": row.last_run,
        "closed_run": row.closed_run,
    }


class ReconciliationGauges:
    """A Prometheus collector: reconciliation's state read from the store at scrape time.

        pssync_reconciliation_drift_open{domain, kind, state}      drifts still standing
        pssync_reconciliation_drift_oldest_seconds{domain}          age of the oldest of them
        pssync_reconciliation_last_success_timestamp_seconds{domain}

    A store that cannot answer leaves the gauges out of that scrape (logged), never fails it."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        try:
            gauges = self.store.drift_gauges()
        except Exception as exc:  # the store is down: the rest of /metrics still answers
            log.warning("reconciliation gauges unavailable: %s", type(exc).__name__)
            return
        now = datetime.now(UTC)
        open_ = GaugeMetricFamily(
            "pssync_reconciliation_drift_open",
            "Drifts between the systems still standing (open, repaired and not yet verified, "
            "escalated), by domain, kind and state.",
            labels=["domain", "kind", "state"],
        )
        for (domain, kind, state), n in sorted(gauges.open.items()):
            open_.add_metric([domain, kind, state], n)
        yield open_
        oldest = GaugeMetricFamily(
            "pssync_reconciliation_drift_oldest_seconds",
            "Age of the oldest standing drift, by domain.",
            labels=["domain"],
        )
        for domain, first_seen in sorted(gauges.oldest.items()):
            oldest.add_metric([domain], max(0.0, (now - first_seen).total_seconds()))
        yield oldest
        last = GaugeMetricFamily(
            "pssync_reconciliation_last_success_timestamp_seconds",
            "When the domain's last reconciliation run finished (Unix time).",
            labels=["domain"],
        )
        for domain, finished in sorted(gauges.last_success.items()):
            last.add_metric([domain], finished.timestamp())
        yield last
