"""A project's story: one page per enterprise project joining what pssync knows of it across
the systems, and a way to find one.

- `GET /console/projects?q=&page=` — enter any system's id of a project (enterprise id, CRM
  opportunity, PSA workspace, ERP job): one match goes to its page; otherwise the projects the
  xref linked or synced most recently, `RECENT_PAGE` a page (those the person's scopes reach).
- `GET /console/projects/{project}` — `{project}` is the enterprise id or any system's id for it
  (resolved through the xref). The page shows the ids in each system with a link to the
  system's record; the project's runs in Temporal (visibility: `EnterpriseProjectId`, and the
  PSA project's time-to-invoice and assignment runs) with links to the Temporal UI; its change
  orders; the time-posting ledger per period (posted, reversed, net hours and amounts per
  currency) and the invoices its entries were billed on; its open exception items; and the
  latest reconciliation drifts and runs about it.

A project the person's scopes do not reach is a 404, exactly as one pssync does not know (the
scope rule of `GET /api/projects/{id}`). Every store read is bounded; the Temporal reads have
`TEMPORAL_BUDGET_S` in all, and a Temporal that does not answer is a notice on the page.

Must never: import workflows, activities or connectors.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response
from temporalio.client import Client, WorkflowExecution
from temporalio.service import RPCError

from contracts import scopes
from contracts.ids import InvalidId
from contracts.money import minor_units
from contracts.naming import assignment_sync_workflow_id, time_pipeline_workflow_id
from contracts.settings import Actor, Settings
from contracts.systems import System
from contracts.v1.change_orders import PROCESS_CHANGE_ORDER
from gateway.console import views
from gateway.console.pages import PREFIX, ConsoleRefusal, redirect, render, signed_in
from gateway.scoping import Scoper
from gateway.webhooks import in_thread
from store import DriftRow, ExceptionFilter, ExceptionItemRow, Store, TimePostingState, XrefRow
from store.repository.time_postings import InvoiceTotal, PeriodPostings

log = logging.getLogger("pssync.gateway.console")

router = APIRouter(prefix=PREFIX, include_in_schema=False)

PROJECTS = f"{PREFIX}/projects"
RECENT_PAGE = 25
"""Projects listed a page on `/console/projects`."""
RUNS_MAX = 50
"""Runs of a project read from visibility (the newest first)."""
CHANGE_ORDERS_MAX = 50
ITEMS_MAX = 50
"""Open exception items read per id of the project."""
DRIFTS_MAX = 20
RECONCILIATION_RUNS_MAX = 5
INVOICES_MAX = 50
TEMPORAL_BUDGET_S = 4.0
"""How long the page waits for Temporal's visibility in all; then it shows a notice."""
_MAX_ID = 200
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._:/@+\- ]{1,200}$")
"""Values put in a visibility query (anything else is not asked: no quoting games)."""

SYSTEM_NAMES = {
    System.CRM.value: "CRM",
    System.PSA.value: "PSA",
    System.ERP.value: "ERP",
}
OBJECT_NAMES = {
    "opportunity": "Opportunity",
    "account": "Customer account",
    "workspace": "Project (workspace)",
    "job": "Project (job)",
    "customer": "Customer",
}
STATUS_NAMES = {
    "RUNNING": "running",
    "COMPLETED": "completed",
    "FAILED": "failed",
    "CANCELED": "canceled",
    "TERMINATED": "terminated",
    "CONTINUED_AS_NEW": "continued as new",
    "TIMED_OUT": "timed out",
}


# --------------------------------------------------------------------------- links


def _base(url: str) -> str | None:
    """`url` without a trailing slash when it is an absolute http(s) URL, else None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url.rstrip("/")


def record_url(settings: Settings, system: str, object_type: str, external_id: str) -> str | None:
    """The system's own page of a record, shaped as the vendor shapes it (Salesforce
    Lightning, Kantata, NetSuite), from the system's `base_url`; None where there is none."""
    kind = object_type.lower()
    ident = quote(external_id, safe="")
    if system == System.CRM.value:
        base = _base(settings.crm.base_url)
        sobject = {"opportunity": "Opportunity", "account": "Account"}.get(kind)
        return f"{base}/lightning/r/{sobject}/{ident}/view" if base and sobject else None
    if system == System.PSA.value:
        base = _base(settings.psa.base_url)
        if base is None or kind != "workspace":
            return None
        return f"{base.replace('//api.mavenlink.com', '//app.mavenlink.com')}/workspaces/{ident}"
    if system == System.ERP.value:
        base = _base(settings.erp.base_url)
        page = {
            "job": "/app/accounting/project/project.nl",
            "customer": "/app/common/entity/custjob.nl",
        }.get(kind)
        if base is None or page is None:
            return None
        ui = base.replace(".suitetalk.api.netsuite.com", ".app.netsuite.com")
        return f"{ui}{page}?{urlencode({'id': external_id})}"
    return None


def temporal_ui(settings: Settings) -> str | None:
    """The Temporal UI's root: `temporal.ui_url` when set, else the dev server's on this host,
    else the frontend's host, at `temporal.ui_port` (0: no UI, no links)."""
    if settings.temporal.ui_url:
        return settings.temporal.ui_url.rstrip("/")
    port = settings.temporal.ui_port
    if not port:
        return None
    host = "127.0.0.1"
    if not settings.temporal.embedded:
        host = settings.temporal.address.rsplit(":", 1)[0] or host
    return f"http://{host}:{port}"


def run_url(ui: str | None, namespace: str, workflow_id: str, run_id: str | None) -> str | None:
    if ui is None:
        return None
    path = f"{ui}/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"
    return f"{path}/{quote(run_id, safe='')}/history" if run_id else path


def list_url(ui: str | None, namespace: str, query: str) -> str | None:
    if ui is None or not query:
        return None
    return f"{ui}/namespaces/{quote(namespace, safe='')}/workflows?{urlencode({'query': query})}"


def _literal(value: str) -> str | None:
    return f"'{value}'" if _SAFE_VALUE.match(value) and "'" not in value else None


# --------------------------------------------------------------------------- the project


@dataclass
class Project:
    """A project as the xref knows it: its enterprise id and every system's id."""

    enterprise_id: str
    links: list[XrefRow]

    def ids(self, system: str, object_type: str) -> list[str]:
        return [
            r.external_id
            for r in self.links
            if r.system == system and r.object_type.lower() == object_type
        ]

    def psa_projects(self) -> list[tuple[str, str]]:
        """(tenant, workspace id) of the project's PSA projects."""
        return [
            (r.tenant, r.external_id)
            for r in self.links
            if r.system == System.PSA.value and r.object_type.lower() == "workspace"
        ]


async def find_projects(store: Store, given: str) -> list[str]:
    """The enterprise ids `given` stands for: itself when the xref links it, else the
    projects some system knows by that id (usually one)."""
    links = await in_thread(store.xrefs_for, given)
    if any(r.entity_type == "project" for r in links):
        return [given]
    found: list[str] = await in_thread(partial(store.projects_known_as, given, limit=10))
    return found


async def reaches(scoper: Scoper, actor: Actor, enterprise_id: str) -> bool:
    if scopes.EVERYTHING in actor.scopes:
        return True
    return scopes.covers(actor.scopes, await scoper.project_keys(enterprise_id))


def _scoper(request: Request) -> Scoper:
    state = request.app.state
    return Scoper(state.store, state.client, state.settings)


def _not_found(given: str) -> ConsoleRefusal:
    return ConsoleRefusal(
        404, "No such project", f"pssync knows no project {given!r} that you may see."
    )


# --------------------------------------------------------------------------- Temporal


@dataclass
class Runs:
    """What visibility said of the project (or why it said nothing)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    change_orders: list[dict[str, Any]] = field(default_factory=list)
    customer: str | None = None
    query: str = ""
    change_order_query: str = ""
    more: bool = False
    unavailable: str | None = None


def _attribute(execution: WorkflowExecution, name: str) -> Any:
    for pair in execution.typed_search_attributes or ():
        if pair.key.name == name:
            return pair.value
    return None


def _process(execution: WorkflowExecution) -> str:
    process = _attribute(execution, "BusinessProcess")
    if isinstance(process, str) and process:
        return process
    return views.words(execution.workflow_type or "") or execution.id.split("/", 1)[0]


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if at is not None else "—"


def visibility_queries(project: Project) -> tuple[str, str]:
    """The visibility queries of the project's runs, and of its change orders ("" when the
    ids cannot be put in a query)."""
    terms: list[str] = []
    eid = _literal(project.enterprise_id)
    if eid:
        terms.append(f"EnterpriseProjectId = {eid}")
    for tenant, workspace in project.psa_projects():
        for make in (time_pipeline_workflow_id, assignment_sync_workflow_id):
            try:
                wid = _literal(make(tenant, workspace))
            except (InvalidId, ValueError):
                wid = None
            if wid:
                terms.append(f"WorkflowId = {wid}")
    runs = " OR ".join(terms)
    change_orders = (
        f"BusinessProcess = '{PROCESS_CHANGE_ORDER}' AND EnterpriseProjectId = {eid}" if eid else ""
    )
    return runs, change_orders


async def _first_page(
    client: Client, query: str, size: int
) -> tuple[list[WorkflowExecution], bool]:
    listing = client.list_workflows(
        query, page_size=size, rpc_timeout=timedelta(seconds=TEMPORAL_BUDGET_S)
    )
    await listing.fetch_next_page(page_size=size)
    executions = list(listing.current_page or [])
    return executions[:size], bool(listing.next_page_token) or len(executions) > size


async def project_runs(
    client: Client | None, settings: Settings, project: Project, ui: str | None
) -> Runs:
    """The project's runs and change orders from visibility, within `TEMPORAL_BUDGET_S`."""
    namespace = settings.temporal.namespace
    query, co_query = visibility_queries(project)
    found = Runs(query=query, change_order_query=co_query)
    if client is None or not query:
        found.unavailable = None if query else "the project's ids cannot be looked up in Temporal"
        return found
    try:
        async with asyncio.timeout(TEMPORAL_BUDGET_S):
            runs, more = await _first_page(client, query, RUNS_MAX)
            orders = (await _first_page(client, co_query, CHANGE_ORDERS_MAX))[0] if co_query else []
    except (RPCError, RuntimeError, TimeoutError, ConnectionError) as exc:
        log.info("project %s: visibility did not answer: %s", project.enterprise_id, exc)
        found.unavailable = (
            "Temporal did not answer in time"
            if isinstance(exc, TimeoutError)
            else "Temporal is unavailable"
        )
        return found
    found.more = more
    for execution in runs:
        status = execution.status.name if execution.status is not None else ""
        found.rows.append(
            {
                "workflow_id": execution.id,
                "process": views.process_name(_process(execution)),
                "status": STATUS_NAMES.get(status, status.lower() or "unknown"),
                "started": _when(execution.start_time),
                "closed": _when(execution.close_time) if execution.close_time else "",
                "url": run_url(ui, namespace, execution.id, execution.run_id),
            }
        )
        customer = _attribute(execution, "CustomerName")
        if found.customer is None and isinstance(customer, str) and customer:
            found.customer = customer
    for execution in orders:
        status = execution.status.name if execution.status is not None else ""
        change_order = _attribute(execution, "ChangeOrderId")
        found.change_orders.append(
            {
                "id": change_order if isinstance(change_order, str) and change_order else "",
                "workflow_id": execution.id,
                "status": STATUS_NAMES.get(status, status.lower() or "unknown"),
                "running": status == "RUNNING",
                "started": _when(execution.start_time),
                "closed": _when(execution.close_time) if execution.close_time else "",
                "url": run_url(ui, namespace, execution.id, execution.run_id),
            }
        )
    return found


# --------------------------------------------------------------------------- the ledger


def hours_text(hours: Decimal) -> str:
    return f"{hours.quantize(Decimal('0.01')):,}"


def amount_text(amount: Decimal, currency: str | None) -> str:
    if currency is None:
        return f"{amount:,}" if amount else "—"
    try:
        digits = minor_units(currency)
    except (KeyError, ValueError):
        digits = 2
    return f"{amount.quantize(Decimal(1).scaleb(-digits)):,} {currency}"


@dataclass
class PeriodLine:
    """One period, kind and currency of the ledger: what was posted, reversed and is live."""

    period: str
    kind: str
    currency: str | None
    posted_hours: Decimal = Decimal("0")
    reversed_hours: Decimal = Decimal("0")
    posted_amount: Decimal = Decimal("0")
    reversed_amount: Decimal = Decimal("0")
    net_cost: Decimal = Decimal("0")
    posted_entries: int = 0
    reversed_entries: int = 0

    @property
    def net_hours(self) -> Decimal:
        return self.posted_hours - self.reversed_hours

    @property
    def net_amount(self) -> Decimal:
        return self.posted_amount - self.reversed_amount


_POSTED = TimePostingState.POSTED.value
_REVERSED = TimePostingState.REVERSED.value


def period_lines(groups: list[PeriodPostings]) -> tuple[list[PeriodLine], list[dict[str, Any]]]:
    """The ledger's money lines per period, kind and currency — *posted* counts every entry
    that reached the ERP (live now or reversed since), *reversed* those unapproved after
    posting, *net* what is live — and the entries per period and state."""
    lines: dict[tuple[str, str, str | None], PeriodLine] = {}
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for g in groups:
        period = g.period or "no period"
        counts[period][g.state] += g.entries
        if g.state not in (_POSTED, _REVERSED):
            continue
        line = lines.setdefault(
            (period, g.kind, g.currency), PeriodLine(period, g.kind, g.currency)
        )
        line.posted_hours += g.hours
        line.posted_amount += g.bill_amount
        line.posted_entries += g.entries
        if g.state == _REVERSED:
            line.reversed_hours += g.hours
            line.reversed_amount += g.bill_amount
            line.reversed_entries += g.entries
        else:
            line.net_cost += g.cost_amount
    states = [s.value for s in TimePostingState]
    per_period = [
        {"period": period, "counts": [(s, by_state.get(s, 0)) for s in states]}
        for period, by_state in counts.items()
    ]
    return list(lines.values()), per_period


def _line_view(line: PeriodLine) -> dict[str, Any]:
    return {
        "period": line.period,
        "kind": line.kind,
        "currency": line.currency or "—",
        "posted_hours": hours_text(line.posted_hours),
        "reversed_hours": hours_text(line.reversed_hours),
        "net_hours": hours_text(line.net_hours),
        "posted_amount": amount_text(line.posted_amount, line.currency),
        "reversed_amount": amount_text(line.reversed_amount, line.currency),
        "net_amount": amount_text(line.net_amount, line.currency),
        "net_cost": amount_text(line.net_cost, line.currency),
        "entries": f"{line.posted_entries} / {line.reversed_entries}",
    }


def _invoice_view(invoice: InvoiceTotal, psa_project: str) -> dict[str, Any]:
    periods = sorted({invoice.first_period or "", invoice.last_period or ""} - {""})
    return {
        "ref": invoice.invoice_ref,
        "psa_project": psa_project,
        "periods": " to ".join(periods),
        "entries": invoice.entries,
        "hours": hours_text(invoice.hours),
        "amount": amount_text(invoice.bill_amount, invoice.currency),
    }


# --------------------------------------------------------------------------- items, drifts


async def open_items(
    store: Store, scoper: Scoper, actor: Actor, ids: list[str]
) -> list[ExceptionItemRow]:
    """The unresolved items naming any of the project's ids, oldest first (bounded)."""
    found: dict[str, ExceptionItemRow] = {}
    for ident in ids[:10]:
        page = await in_thread(
            partial(store.unresolved_exception_page, limit=ITEMS_MAX),
            ExceptionFilter(project=ident),
        )
        for row in page.rows:
            found.setdefault(row.id, row)
    rows = sorted(found.values(), key=lambda r: (r.created_at, r.id))[:ITEMS_MAX]
    return await scoper.visible_items(actor, rows)


def _drift_view(row: DriftRow) -> dict[str, Any]:
    return {
        "kind": views.words(row.kind),
        "domain": row.domain,
        "period": row.period or "",
        "state": row.state,
        "detail": row.detail,
        "owner": row.owner,
        "last_seen": _when(row.last_seen),
        "item_id": row.item_id or "",
        "figures": ", ".join(f"{k}: {v}" for k, v in sorted((row.values or {}).items()))[:500],
    }


def _link_view(settings: Settings, row: XrefRow) -> dict[str, Any]:
    return {
        "system": SYSTEM_NAMES.get(row.system, row.system),
        "object": OBJECT_NAMES.get(row.object_type.lower(), views.words(row.object_type)),
        "tenant": row.tenant,
        "id": row.external_id,
        "status": row.status,
        "synced": _when(row.last_synced_at),
        "url": record_url(settings, row.system, row.object_type, row.external_id),
    }


# --------------------------------------------------------------------------- pages


def _summary(rows: list[XrefRow]) -> dict[str, str]:
    def first(system: str, object_type: str) -> str:
        return next(
            (
                r.external_id
                for r in rows
                if r.system == system and r.object_type.lower() == object_type
            ),
            "",
        )

    return {
        "crm": first(System.CRM.value, "opportunity"),
        "psa": first(System.PSA.value, "workspace"),
        "erp": first(System.ERP.value, "job"),
        "synced": _when(max((r.last_synced_at for r in rows), default=None)),
    }


@router.get("/projects")
async def projects(request: Request) -> Response:
    visitor = await signed_in(request)
    state = request.app.state
    store: Store = state.store
    scoper = _scoper(request)
    given = str(request.query_params.get("q", "")).strip()[:_MAX_ID]
    try:
        page = max(1, min(int(request.query_params.get("page", "1")), 10_000))
    except ValueError:
        page = 1
    status = 200
    matches: list[str] = []
    if given:
        found = [
            eid
            for eid in await find_projects(store, given)
            if await reaches(scoper, visitor.actor, eid)
        ]
        if len(found) == 1:
            return redirect(f"{PROJECTS}/{quote(found[0], safe='')}")
        matches = found
        status = 200 if found else 404
    eids = matches or await in_thread(
        partial(store.recent_projects, limit=RECENT_PAGE + 1, offset=(page - 1) * RECENT_PAGE)
    )
    more = not matches and len(eids) > RECENT_PAGE
    eids = eids[:RECENT_PAGE]
    links = await in_thread(store.xrefs_of, eids)
    rows = []
    for eid in eids:
        if eid not in links or not await reaches(scoper, visitor.actor, eid):
            continue
        rows.append({"eid": eid, **_summary(links[eid])})
    return render(
        request,
        "projects.html",
        {
            "given": given,
            "matches": bool(matches),
            "not_found": bool(given) and not matches,
            "rows": rows,
            "page": page,
            "more": more,
            "projects_url": PROJECTS,
        },
        session=visitor.session,
        actor=visitor.actor,
        status=status,
    )


@router.get("/projects/{project}")
async def project_page(request: Request, project: str) -> Response:
    visitor = await signed_in(request)
    state = request.app.state
    store: Store = state.store
    settings: Settings = state.settings
    scoper = _scoper(request)
    given = project.strip()[:_MAX_ID]
    found = [
        eid
        for eid in await find_projects(store, given)
        if await reaches(scoper, visitor.actor, eid)
    ]
    if not found:
        raise _not_found(given)
    if len(found) > 1:  # one id of several projects (two systems reuse a number): choose
        return redirect(f"{PROJECTS}?{urlencode({'q': given})}")
    eid = found[0]
    links = await in_thread(store.xrefs_for, eid)
    if not links:
        raise _not_found(given)
    the = Project(eid, links)
    ui = temporal_ui(settings)
    runs_task = asyncio.create_task(project_runs(state.client, settings, the, ui))

    psa_ids = [workspace for _, workspace in the.psa_projects()]
    ledger: list[dict[str, Any]] = []
    per_period: list[dict[str, Any]] = []
    invoices: list[dict[str, Any]] = []
    for psa_id in psa_ids[:5]:
        groups = await in_thread(store.postings_by_period, psa_id)
        lines, counts = period_lines(groups)
        ledger += [{**_line_view(line), "psa_project": psa_id} for line in lines]
        per_period += [{**c, "psa_project": psa_id} for c in counts]
        billed = await in_thread(partial(store.invoices_of, psa_id, limit=INVOICES_MAX))
        invoices += [_invoice_view(i, psa_id) for i in billed]
    erp_ids = the.ids(System.ERP.value, "job")
    ids = list(dict.fromkeys([eid, *psa_ids, *erp_ids]))
    items = await open_items(store, scoper, visitor.actor, ids)
    now = datetime.now(UTC)
    drifts = await in_thread(partial(store.project_drifts, psa_ids + erp_ids, limit=DRIFTS_MAX))
    checks = []
    for psa_id in psa_ids[:5]:
        checks += await in_thread(
            partial(store.list_reconciliation_runs, project=psa_id, limit=RECONCILIATION_RUNS_MAX)
        )
    runs = await runs_task
    namespace = settings.temporal.namespace
    context = {
        "eid": eid,
        "given": given,
        "summary": _summary(links),
        "links": [_link_view(settings, row) for row in links],
        "customer": runs.customer,
        "runs": runs,
        "runs_url": list_url(ui, namespace, runs.query),
        "change_orders_url": list_url(ui, namespace, runs.change_order_query),
        "approvals": f"{PREFIX}/approvals",
        "ledger": ledger,
        "per_period": per_period,
        "states": [s.value for s in TimePostingState],
        "invoices": invoices,
        "psa_ids": psa_ids,
        "items": [
            {
                "id": row.id,
                "process": views.process_name(row.process),
                "cause": row.cause_code,
                "cause_words": views.cause_words(row.cause_code),
                "detail": row.detail,
                "status": row.status,
                "owner": row.owner,
                "age": views.age_text(row.created_at, now),
            }
            for row in items
        ],
        "drifts": [_drift_view(d) for d in drifts],
        "checks": [
            {
                "id": run.id,
                "domain": run.domain,
                "state": run.state,
                "started": _when(run.started_at),
                "found": run.found,
                "repaired": run.repaired,
                "escalated": run.escalated,
            }
            for run in checks
        ],
    }
    return render(request, "project.html", context, session=visitor.session, actor=visitor.actor)


__all__ = ["PROJECTS", "find_projects", "period_lines", "record_url", "router"]
