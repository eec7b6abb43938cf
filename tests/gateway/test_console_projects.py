"""A project's story (`gateway.console.projects`) over real HTTP, a real SQLite store and the
real Temporal dev server: the ids in each system with links to their records, the runs found by
the search attributes with links to the Temporal UI, the change orders, the time-posting ledger
per period, the invoices, the open items and the reconciliation drifts, on one page that any
system's id of the project reaches, within the reader's scopes.
"""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RetryConfig

from contracts.naming import time_pipeline_workflow_id
from contracts.settings import Settings, load_settings
from gateway import create_app
from gateway.console.projects import period_lines
from store import NewExceptionItem, Store
from tests._servers import serve
from tests.gateway.test_console import DM, FINANCE, SCOPED, browser, signed_in
from tests.gateway.test_console import settings as settings  # with the scoped manager
from tests.gateway.test_gateway import CRM_TENANT, Gw, new_opp

__all__ = ["browser", "settings"]

BUSINESS_PROCESS = SearchAttributeKey.for_keyword("BusinessProcess")
CHANGE_ORDER_ID = SearchAttributeKey.for_keyword("ChangeOrderId")
ENTERPRISE_PROJECT_ID = SearchAttributeKey.for_keyword("EnterpriseProjectId")
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
PSA_TENANT = "acme-psa"
ERP_TENANT = "acme-erp"


@dataclass(frozen=True)
class Story:
    eid: str
    opp: str
    psa: str
    erp: str
    item_id: str


def _cell(page: str, row_attrs: str, column: str) -> str:
    """The text of a ledger cell: the row with `row_attrs` (data-* attributes), column `column`."""
    row = re.search(rf"<tr {re.escape(row_attrs)}>(.*?)</tr>", page, re.S)
    assert row, f"no row {row_attrs}"
    cell = re.search(rf'data-col="{column}">([^<]*)<', row.group(1))
    assert cell, f"no {column} in {row_attrs}"
    return html.unescape(cell.group(1))


def _posting(
    key: str, psa: str, period: str, state: str, hours: str, **more: Any
) -> dict[str, Any]:
    kind = more.pop("kind", "time")
    return {
        "entry_key": f"{kind}:{key}",
        "kind": kind,
        "entry_id": key,
        "psa_project_id": psa,
        "period": period,
        "work_date": date.fromisoformat(f"{period}-10"),
        "entry_version": "1",
        "state": state,
        "hours": Decimal(hours),
        "billable": True,
        **more,
    }


def build_story(store: Store, *, detail: str = "no bill rate for Architect") -> Story:
    """A project linked in three systems, with a ledger over two periods and two currencies,
    an invoice, an open item and a drift (and a finished reconciliation run)."""
    uniq = uuid.uuid4().hex[:8].upper()
    story = Story(
        eid=f"01JSTORY{uniq}",
        opp=new_opp(),
        psa=f"W{uniq}",
        erp=f"JOB-{uniq}",
        item_id=f"item-{uniq}",
    )
    for system, tenant, object_type, external_id in (
        ("CRM", CRM_TENANT, "Opportunity", story.opp),
        ("PSA", PSA_TENANT, "workspace", story.psa),
        ("ERP", ERP_TENANT, "job", story.erp),
    ):
        store.link_xref(story.eid, "project", system, tenant, object_type, external_id)
    eur = {"currency": "EUR"}
    store.record_time_postings(
        [
            _posting("a", story.psa, "2026-10", "posted", "8", bill_amount=Decimal("960.00"),
                     cost_amount=Decimal("480.00"), **eur),
            _posting("b", story.psa, "2026-10", "posted", "7.5", bill_amount=Decimal("900.00"),
                     cost_amount=Decimal("450.00"), **eur),
            _posting("c", story.psa, "2026-10", "reversed", "2.25", bill_amount=Decimal("270.00"),
                     cost_amount=Decimal("135.00"), **eur),
            _posting("d", story.psa, "2026-11", "posted", "3.5", bill_amount=Decimal("420.00"),
                     cost_amount=Decimal("210.00"), **eur),
            _posting("e", story.psa, "2026-11", "exception", "1", cause="MissingRateCard",
                     item_id=story.item_id),
            _posting("f", story.psa, "2026-11", "posted", "0", kind="expense",
                     bill_amount=Decimal("45.50"), cost_amount=Decimal("45.50"), currency="USD"),
        ]
    )  # fmt: skip
    assert store.mark_time_billed(["time:a", "time:b"], "INV-2026-10-1") == 2
    store.open_exception(
        NewExceptionItem(
            id=story.item_id,
            workflow_id=time_pipeline_workflow_id(PSA_TENANT, story.psa),
            process="time_to_invoice",
            cause_code="MissingRateCard",
            field="bill_rate",
            detail=detail,
            owner="delivery_manager",
            context={"psa_project_id": story.psa, "entry_key": "time:e"},
        )
    )
    run_id = f"reconcile/labor_actuals/{PSA_TENANT}/{story.psa}/1"
    store.start_reconciliation_run(
        run_id, domain="labor_actuals", tenant=PSA_TENANT, started_at=T0, project=story.psa
    )
    store.record_drifts(
        [
            {
                "fingerprint": f"fp-{uniq}",
                "domain": "labor_actuals",
                "kind": "hours_differ",
                "tenant": PSA_TENANT,
                "project": story.psa,
                "period": "2026-10",
                "keys": {"entry": "time:b"},
                "values": {"psa": "7.500000", "erp": "7.000000"},
                "owner": "ERP",
                "disposition": "escalate",
                "detail": "the ERP holds 7 h of a 7.5 h entry",
                "state": "escalated",
                "first_seen": T0,
                "last_seen": T0,
                "first_run": run_id,
                "last_run": run_id,
            }
        ]
    )
    return story


async def start_run(
    client: Client, workflow_id: str, process: str, eid: str, **more: str
) -> WorkflowHandle[Any, Any]:
    """A run no worker serves (it stays running) carrying the search attributes the real
    process upserts."""
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(BUSINESS_PROCESS, process),
        SearchAttributePair(ENTERPRISE_PROJECT_ID, eid),
    ]
    if "change_order" in more:
        pairs.append(SearchAttributePair(CHANGE_ORDER_ID, more["change_order"]))
    return await client.start_workflow(
        "StoryProbe",
        id=workflow_id,
        task_queue=f"nobody-{uuid.uuid4().hex}",
        search_attributes=TypedSearchAttributes(pairs),
    )


async def page_once_listed(http: httpx.AsyncClient, url: str, *marks: str) -> httpx.Response:
    """The page, once visibility lists every run `marks` names (it indexes a start shortly
    after it), within 10 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        page = await http.get(url)
        if all(html.escape(m) in page.text for m in marks) or loop.time() > deadline:
            return page
        await asyncio.sleep(0.2)


@pytest.fixture
async def runs(gw: Gw) -> AsyncIterator[list[WorkflowHandle[Any, Any]]]:
    started: list[WorkflowHandle[Any, Any]] = []
    yield started
    for handle in started:
        try:
            await handle.terminate("test over")
        except Exception:  # already closed
            pass


# --------------------------------------------------------------------------- the store


def test_postings_per_period_sum_per_state_kind_and_currency(store: Store) -> None:
    story = build_story(store)
    groups = store.postings_by_period(story.psa)
    assert [(g.period, g.state, g.kind, g.currency) for g in groups] == [
        ("2026-11", "exception", "time", None),
        ("2026-11", "posted", "expense", "USD"),
        ("2026-11", "posted", "time", "EUR"),
        ("2026-10", "posted", "time", "EUR"),
        ("2026-10", "reversed", "time", "EUR"),
    ]
    posted_oct = groups[3]
    assert (posted_oct.hours, posted_oct.bill_amount, posted_oct.cost_amount) == (
        Decimal("15.5"),
        Decimal("1860.00"),
        Decimal("930.00"),
    )
    assert posted_oct.entries == 2
    lines, counts = period_lines(groups)
    october = next(x for x in lines if x.period == "2026-10")
    assert (october.posted_hours, october.reversed_hours, october.net_hours) == (
        Decimal("17.75"),
        Decimal("2.25"),
        Decimal("15.5"),
    )
    assert (october.posted_amount, october.reversed_amount, october.net_amount) == (
        Decimal("2130.00"),
        Decimal("270.00"),
        Decimal("1860.00"),
    )
    november = {dict(c["counts"])["exception"] for c in counts if c["period"] == "2026-11"}
    assert november == {1}
    [invoice] = store.invoices_of(story.psa)
    assert (invoice.invoice_ref, invoice.entries, invoice.hours, invoice.bill_amount) == (
        "INV-2026-10-1",
        2,
        Decimal("15.5"),
        Decimal("1860.00"),
    )
    assert store.postings_by_period("nobody") == [] and store.invoices_of("nobody") == []


def test_projects_known_by_any_systems_id_and_recent_ones(store: Store) -> None:
    first = build_story(store)
    second = build_story(store)
    assert store.projects_known_as(first.psa) == [first.eid]
    assert store.projects_known_as(first.erp) == [first.eid]
    assert store.projects_known_as(first.opp) == [first.eid]
    assert store.projects_known_as("nothing") == []
    recent = store.recent_projects(limit=10)
    assert set(recent) == {first.eid, second.eid}
    assert store.recent_projects(limit=1, offset=1) == recent[1:]
    links = store.xrefs_of([first.eid, "nothing"])
    assert set(links) == {first.eid} and len(links[first.eid]) == 3
    [found] = store.project_drifts([first.psa])
    assert (found.kind, found.state) == ("hours_differ", "escalated")


# --------------------------------------------------------------------------- the page


async def test_a_projects_story_joins_every_system(
    gw: Gw, browser: Any, runs: list[WorkflowHandle[Any, Any]]
) -> None:
    story = await asyncio.to_thread(build_story, gw.store)
    saga_id = f"opp-to-project/story/{story.opp}"
    pipeline_id = time_pipeline_workflow_id(PSA_TENANT, story.psa)
    change_order_id = f"change-order/story/CO-{story.psa}"
    runs.append(await start_run(gw.client, saga_id, "opportunity_to_project", story.eid))
    runs.append(  # the pipeline carries no enterprise id: found by its workflow id
        await gw.client.start_workflow(
            "StoryProbe", id=pipeline_id, task_queue=f"nobody-{uuid.uuid4().hex}"
        )
    )
    runs.append(
        await start_run(
            gw.client, change_order_id, "change_order", story.eid, change_order=f"CO-{story.psa}"
        )
    )
    http = browser()
    await signed_in(http, FINANCE)
    url = f"/console/projects/{story.eid}"
    page = await page_once_listed(http, url, saga_id, pipeline_id, change_order_id)
    assert page.status_code == 200, page.text[:500]
    text = page.text

    # The ids, each linked to its record in the system (vendor-shaped URLs from base_url).
    crm, psa, erp = (gw.settings.crm.base_url, gw.settings.psa.base_url, gw.settings.erp.base_url)
    assert f'href="{crm}/lightning/r/Opportunity/{story.opp}/view"' in text
    assert f'href="{psa}/workspaces/{story.psa}"' in text
    assert f'href="{erp}/app/accounting/project/project.nl?id={story.erp}"' in text

    # The runs, with the Temporal UI's run page and its list filtered by the search attribute.
    ui = f"http://127.0.0.1:{gw.settings.temporal.ui_port}/namespaces/default/workflows"
    assert f'href="{ui}/{quote(saga_id, safe="")}/' in text
    assert f'href="{ui}/{quote(pipeline_id, safe="")}/' in text
    listing = re.search(r'id="runs-in-ui"', text) and re.search(
        rf'href="{re.escape(ui)}\?query=([^"]+)" id="runs-in-ui"', text
    )
    assert listing, text
    query = unquote(html.unescape(listing.group(1)).replace("+", " "))
    assert f"EnterpriseProjectId = '{story.eid}'" in query
    assert f"WorkflowId = '{pipeline_id}'" in query
    # The change order, running: linked to its approval page.
    assert f'href="/console/approvals/CO-{story.psa}"' in text

    # The ledger per period: posted (live or reversed since), reversed, net; per currency.
    oct_eur = 'data-period="2026-10" data-kind="time" data-currency="EUR"'
    assert _cell(text, oct_eur, "posted_hours") == "17.75"
    assert _cell(text, oct_eur, "reversed_hours") == "2.25"
    assert _cell(text, oct_eur, "net_hours") == "15.50"
    assert _cell(text, oct_eur, "posted_amount") == "2,130.00 EUR"
    assert _cell(text, oct_eur, "reversed_amount") == "270.00 EUR"
    assert _cell(text, oct_eur, "net_amount") == "1,860.00 EUR"
    assert _cell(text, oct_eur, "net_cost") == "930.00 EUR"
    assert _cell(text, oct_eur, "entries") == "3 / 1"
    nov_eur = 'data-period="2026-11" data-kind="time" data-currency="EUR"'
    assert _cell(text, nov_eur, "net_amount") == "420.00 EUR"
    nov_usd = 'data-period="2026-11" data-kind="expense" data-currency="USD"'
    assert _cell(text, nov_usd, "net_amount") == "45.50 USD"  # never added to the euros
    november = re.search(r'<tr data-period="2026-11"><th scope="row">2026-11</th>(.*?)</tr>', text)
    assert november and 'data-state="exception">1<' in november.group(1)
    assert 'data-state="posted">2<' in november.group(1)
    # The invoice its entries were billed on.
    assert "INV-2026-10-1" in text and "1,860.00 EUR" in text

    # The open item, linked; the drift with its state; the reconciliation run.
    assert f'href="/console/exceptions/{story.item_id}"' in text
    drift = re.search(r'<tr data-state="escalated">(.*?)</tr>', text, re.S)
    assert drift and "Hours differ" in drift.group(1) and "erp: 7.000000" in drift.group(1)
    assert f"reconcile/labor_actuals/{PSA_TENANT}/{story.psa}/1" in text
    assert 'href="/console/projects" aria-current="page"' in text  # the nav's Projects


async def test_any_systems_id_reaches_the_same_page(gw: Gw, browser: Any) -> None:
    story = await asyncio.to_thread(build_story, gw.store)
    http = browser()
    await signed_in(http, DM)
    by_eid = await http.get(f"/console/projects/{story.eid}")
    assert by_eid.status_code == 200
    for other in (story.psa, story.erp, story.opp):
        page = await http.get(f"/console/projects/{other}")
        assert page.status_code == 200, other
        assert f"<h1>Project {story.eid}" in page.text
        assert f"(found by {other})" in page.text
    # The search box: one match goes to the project's page.
    found = await http.get("/console/projects", params={"q": story.erp})
    assert found.status_code == 303
    assert found.headers["location"] == f"/console/projects/{story.eid}"
    listed = await http.get("/console/projects")
    assert listed.status_code == 200
    assert f'href="/console/projects/{story.eid}"' in listed.text
    # The item's page links to the project's story.
    item = await http.get(f"/console/exceptions/{story.item_id}")
    assert f'href="/console/projects/{story.psa}" id="project-story"' in item.text


async def test_out_of_scope_or_unknown_is_not_found(gw: Gw, browser: Any) -> None:
    story = await asyncio.to_thread(build_story, gw.store)
    scoped = browser()
    await signed_in(scoped, SCOPED)  # reaches project P-1 only
    for ident in (story.eid, story.psa, story.erp):
        hidden = await scoped.get(f"/console/projects/{ident}")
        assert hidden.status_code == 404
        assert "No such project" in hidden.text  # as for an id pssync does not know
        assert ident == story.eid or story.eid not in hidden.text
    searched = await scoped.get("/console/projects", params={"q": story.psa})
    assert searched.status_code == 404 and story.eid not in searched.text
    assert story.eid not in (await scoped.get("/console/projects")).text

    dm = browser()
    await signed_in(dm, DM)
    unknown = await dm.get("/console/projects/01JNOSUCHPROJECT")
    assert unknown.status_code == 404
    assert "No such project" in unknown.text
    nothing = await dm.get("/console/projects", params={"q": "01JNOSUCHPROJECT"})
    assert nothing.status_code == 404 and 'id="not-found"' in nothing.text

    # In scope of P-1: the scoped manager sees a project the xref links to P-1.
    await asyncio.to_thread(
        gw.store.link_xref, "01JSCOPEDP1", "project", "PSA", PSA_TENANT, "workspace", "P-1"
    )
    assert (await scoped.get("/console/projects/P-1")).status_code == 200


async def test_hostile_values_are_escaped(gw: Gw, browser: Any) -> None:
    story = await asyncio.to_thread(build_story, gw.store, detail=HOSTILE)
    await asyncio.to_thread(
        gw.store.link_xref, story.eid, "project", "ERP", ERP_TENANT, "customer", HOSTILE
    )
    http = browser()
    await signed_in(http, DM)
    page = await http.get(f"/console/projects/{story.eid}")
    assert page.status_code == 200
    assert HOSTILE not in page.text
    assert "&lt;script&gt;" in page.text
    assert "id=%3Cscript%3E" in page.text  # in the record's URL too
    searched = await http.get("/console/projects", params={"q": HOSTILE})
    assert searched.status_code == 303  # the id it is linked under finds it
    assert searched.headers["location"] == f"/console/projects/{story.eid}"
    unknown = await http.get("/console/projects", params={"q": HOSTILE + "?"})
    assert unknown.status_code == 404
    assert HOSTILE not in unknown.text and "&lt;script&gt;" in unknown.text


async def test_temporal_down_still_shows_the_store_with_a_notice(
    gw: Gw, browser: Any, settings: Settings
) -> None:
    story = await asyncio.to_thread(build_story, gw.store)
    down = await Client.connect(
        "127.0.0.1:1",
        lazy=True,
        data_converter=pydantic_data_converter,
        retry_config=RetryConfig(max_retries=0),
    )
    app = create_app(settings, gw.store, down, task_queue=gw.task_queue)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        await signed_in(http, DM)
        loop = asyncio.get_running_loop()
        started = loop.time()
        page = await http.get(f"/console/projects/{story.psa}")
        assert loop.time() - started < 8
    assert page.status_code == 200
    assert 'id="temporal-notice"' in page.text
    assert "Temporal is unavailable" in page.text or "did not answer" in page.text
    oct_eur = 'data-period="2026-10" data-kind="time" data-currency="EUR"'
    assert _cell(page.text, oct_eur, "net_hours") == "15.50"
    assert f'href="/console/exceptions/{story.item_id}"' in page.text


def test_runs_link_to_the_configured_temporal_ui(tmp_path: Path) -> None:
    from gateway.console.projects import run_url, temporal_ui

    settings = load_settings(home=tmp_path / ".pssync")
    assert temporal_ui(settings) == f"http://127.0.0.1:{settings.temporal.ui_port}"
    settings.temporal.ui_url = "https://temporal.example.com/"
    ui = temporal_ui(settings)
    assert ui == "https://temporal.example.com"
    assert run_url(ui, "default", "time-to-invoice/acme/42", None) == (
        "https://temporal.example.com/namespaces/default/workflows/time-to-invoice%2Facme%2F42"
    )
    settings.temporal.ui_url, settings.temporal.ui_port = None, 0
    assert temporal_ui(settings) is None
