"""`NetSuiteErp`'s reads fed NetSuite's own payloads (tests/fixtures/vendors/netsuite, sources
in its MANIFEST.md) over `httpx.MockTransport`: SuiteQL dates in the account's format,
references `{"id", "refName", "links"}` and bare ids, currencies as internal ids, sublists
as links unless expanded, the async service's shapes and the published error bodies. A
malformed record raises `UnmappableRecord`, never a bare exception."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from connectors.erp import SUITEQL, CostCenterStatus, NetSuiteErp
from contracts.errors import (
    AuthError,
    BusinessRuleViolation,
    NotFoundError,
    UnmappableRecord,
)
from contracts.money import Money
from contracts.settings import SystemSettings
from contracts.systems import System
from contracts.v1.models import (
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    PostingKind,
    ProjectStatus,
)
from tests._shapes import load_fixture

BASE = "https://demo123.suitetalk.api.netsuite.com"
RECORD = "/services/rest/record/v1"
ASYNC_JOB = "/services/rest/async/v1/job/1"


def fixture(name: str) -> Any:
    """A NetSuite fixture, a fresh copy each time (tests change them)."""
    return copy.deepcopy(load_fixture("netsuite", name))


Answer = tuple[int, Any, dict[str, str]]
Route = Callable[[httpx.Request], Answer]


def ok(body: Any, status: int = 200, **headers: str) -> Route:
    return lambda _request: (status, body, headers)


@dataclass
class Vendor:
    """A scripted NetSuite: answers by method and path (SuiteQL by a fragment of the query),
    a list of answers in turn (the last one repeats); every request is kept."""

    routes: dict[tuple[str, str], list[Route]] = field(default_factory=dict)
    queries: dict[str, list[Route]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def on(self, method: str, path: str, *answers: Route) -> None:
        self.routes[(method, path)] = list(answers)

    def query(self, fragment: str, *answers: Route) -> None:
        self.queries[fragment] = list(answers)

    def paths(self, method: str = "GET") -> list[str]:
        return [r.url.path for r in self.requests if r.method == method]

    def suiteql(self) -> list[str]:
        return [json.loads(r.content)["q"] for r in self.requests if r.url.path == SUITEQL]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answers: list[Route] | None
        if request.url.path == SUITEQL:
            q = json.loads(request.content)["q"]
            answers = next((a for f, a in self.queries.items() if f in q), None)
        else:
            answers = self.routes.get((request.method, request.url.path))
        if not answers:
            body = fixture("error_nonexistent_id_404.json")
            return httpx.Response(404, json=body)
        route = answers.pop(0) if len(answers) > 1 else answers[0]
        status, body, headers = route(request)
        if body is None:
            return httpx.Response(status, headers=headers)
        return httpx.Response(status, json=body, headers=headers)


@pytest.fixture
def vendor() -> Vendor:
    return Vendor()


def settings(**overrides: Any) -> SystemSettings:
    values: dict[str, Any] = {
        "base_url": BASE,
        "auth": "bearer",
        "token": "t",
        "retry_budget_s": 3,
        "timeout_s": 5,
    }
    return SystemSettings.model_validate(values | overrides)


@pytest.fixture
async def erp(vendor: Vendor) -> AsyncIterator[NetSuiteErp]:
    async with connect(vendor, date_format="M/D/YYYY") as connector:
        yield connector


def connect(vendor: Vendor, **overrides: Any) -> NetSuiteErp:
    return NetSuiteErp(
        settings(**overrides),
        transport=httpx.MockTransport(vendor.handle),
        backoff_base_s=0.001,
        backoff_cap_s=0.01,
        poll_interval_s=0.001,
    )


def with_currency(vendor: Vendor) -> None:
    """Currency 1 (refName "USA") is USD by its record's `symbol`."""
    vendor.on("GET", f"{RECORD}/currency/1", ok(fixture("record_currency_get_built.json")))


BUDGET_2041 = f"{RECORD}/customrecord_pssync_budget/eid:pssync-budget-2041"


def with_budget(vendor: Vendor) -> None:
    """Project 2041's budget: its `customrecord_pssync_budget` entry, by external ID."""
    vendor.on("GET", BUDGET_2041, ok(fixture("record_customrecord_pssync_budget_get_built.json")))


def with_postings(vendor: Vendor) -> None:
    vendor.query("FROM timebill WHERE customer", ok(fixture("suiteql_timebill_rows_built.json")))
    vendor.query("FROM department", ok(fixture("suiteql_department_rows_built.json")))
    with_currency(vendor)


# --------------------------------------------------------------------------- projects


async def test_get_project_reads_references_and_currency_ids(
    erp: NetSuiteErp, vendor: Vendor
) -> None:
    vendor.on("GET", f"{RECORD}/job/2041", ok(fixture("record_job_get_built.json")))
    with_budget(vendor)
    vendor.on("GET", f"{RECORD}/department/3", ok(fixture("record_department_get_built.json")))
    with_currency(vendor)
    project = await erp.get_project("2041")
    assert project.erp_id == "2041"
    assert project.customer_erp_id == "107"
    assert project.status is ProjectStatus.ACTIVE
    assert project.cost_center == "CC-110"
    assert project.currency == "USD"
    assert project.budget == Money("120000", "USD") and project.budget_version == 1
    assert project.enterprise_id == "01J0000000000000000000PRJ1"
    # The currency record is read once, whoever names it.
    assert vendor.paths().count(f"{RECORD}/currency/1") == 1


async def test_a_project_is_closed_by_its_status_name_too(erp: NetSuiteErp, vendor: Vendor) -> None:
    job = fixture("record_job_get_built.json")
    job["entityStatus"] |= {"id": "17", "refName": "Closed"}  # an account's own status id
    vendor.on("GET", f"{RECORD}/job/2041", ok(job))
    with_budget(vendor)
    vendor.on("GET", f"{RECORD}/department/3", ok(fixture("record_department_get_built.json")))
    with_currency(vendor)
    assert (await erp.get_project("2041")).status is ProjectStatus.CLOSED


async def test_a_job_without_an_id_is_unmappable(erp: NetSuiteErp, vendor: Vendor) -> None:
    job = fixture("record_job_get_built.json")
    del job["id"], job["links"]
    vendor.on("GET", f"{RECORD}/job/2041", ok(job))
    with pytest.raises(UnmappableRecord) as caught:
        await erp.get_project("2041")
    assert caught.value.record == "job" and caught.value.field == "id"


async def test_an_unknown_currency_id_is_unmappable(erp: NetSuiteErp, vendor: Vendor) -> None:
    job = fixture("record_job_get_built.json")
    job["currency"] |= {"id": "99", "refName": "Narnian Crown"}
    vendor.on("GET", f"{RECORD}/job/2041", ok(job))
    with_budget(vendor)
    vendor.on("GET", f"{RECORD}/department/3", ok(fixture("record_department_get_built.json")))
    with_currency(vendor)  # currency/99 answers 404 NONEXISTENT_ID
    with pytest.raises(UnmappableRecord) as caught:
        await erp.get_project("2041")
    assert caught.value.record == "job" and "currency '99'" in str(caught.value)


# --------------------------------------------------------------------------- postings


async def test_list_postings_reads_account_format_dates_and_bare_ids(
    erp: NetSuiteErp, vendor: Vendor
) -> None:
    vendor.on("GET", f"{RECORD}/job/eid:PRJ-1", ok(fixture("record_job_get_built.json")))
    with_postings(vendor)
    time, reversal = sorted(await erp.list_postings("PRJ-1"), key=lambda p: p.posting_date)
    assert time.posting_date == date(2024, 1, 15) and time.period == "2024-01"
    assert time.cost_amount == Money("941.25", "USD")
    assert time.bill_amount == Money("1500", "USD")
    assert time.hours == Decimal("7.5")
    assert (time.idempotency_key, time.kind) == ("TB-KEY-1", PostingKind.TIME)
    assert (time.project_id, time.worker_id, time.cost_center) == ("2041", "7", "CC-110")
    assert time.source_system is System.ERP
    assert reversal.posting_date == date(2024, 2, 1) and reversal.period == "2024-02"
    assert (reversal.kind, reversal.reverses) == (PostingKind.REVERSAL, "TB-KEY-1")
    assert reversal.cost_amount == Money("-941.25", "USD")
    assert "customer = 2041" in vendor.suiteql()[0]
    totals = {t.period: t for t in await erp.posted_totals("PRJ-1")}
    assert set(totals) == {"2024-01", "2024-02"}


@pytest.mark.parametrize(
    ("date_format", "written"),
    [
        ("M/D/YYYY", "1/15/2024"),
        ("MM/DD/YYYY", "01/15/2024"),
        ("D/M/YYYY", "15/1/2024"),
        ("DD.MM.YYYY", "15.01.2024"),
        ("D-Mon-YYYY", "15-Jan-2024"),
        ("YYYY/MM/DD", "2024/01/15"),
        ("ISO", "2024-01-15"),
        ("D/M/YYYY", "2024-01-15"),  # ISO is read whatever the setting
    ],
)
async def test_dates_parse_per_the_date_format_setting(
    vendor: Vendor, date_format: str, written: str
) -> None:
    rows = fixture("suiteql_timebill_rows_built.json")
    rows["items"] = rows["items"][:1]
    rows["items"][0]["trandate"] = written
    vendor.on("GET", f"{RECORD}/job/eid:PRJ-1", ok(fixture("record_job_get_built.json")))
    vendor.query("FROM timebill WHERE customer", ok(rows))
    vendor.query("FROM department", ok(fixture("suiteql_department_rows_built.json")))
    with_currency(vendor)
    async with connect(vendor, date_format=date_format) as erp:
        [posting] = await erp.list_postings("PRJ-1")
    assert posting.posting_date == date(2024, 1, 15)


@pytest.mark.parametrize("date_format", ["ISO", "D/M/YYYY"])
async def test_a_date_not_in_the_accounts_format_is_unmappable(
    vendor: Vendor, date_format: str
) -> None:
    vendor.on("GET", f"{RECORD}/job/eid:PRJ-1", ok(fixture("record_job_get_built.json")))
    with_postings(vendor)  # "1/15/2024": M/D/YYYY, neither ISO nor D/M/YYYY
    async with connect(vendor, date_format=date_format) as erp:
        with pytest.raises(UnmappableRecord) as caught:
            await erp.list_postings("PRJ-1")
    assert caught.value.record == "timebill" and caught.value.record_id == "5001"
    assert "1/15/2024" in str(caught.value)


def test_an_unknown_date_format_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="unknown date format"):
        NetSuiteErp(settings(date_format="Q/W/E"))


async def test_a_row_missing_a_column_is_unmappable(erp: NetSuiteErp, vendor: Vendor) -> None:
    rows = fixture("suiteql_timebill_rows_built.json")
    del rows["items"][0]["department"]
    vendor.on("GET", f"{RECORD}/job/eid:PRJ-1", ok(fixture("record_job_get_built.json")))
    with_postings(vendor)
    vendor.query("FROM timebill WHERE customer", ok(rows))
    with pytest.raises(UnmappableRecord) as caught:
        await erp.list_postings("PRJ-1")
    assert (caught.value.record, caught.value.field) == ("timebill", "department")


async def test_suiteql_pages_follow_has_more(erp: NetSuiteErp, vendor: Vendor) -> None:
    rows = fixture("suiteql_timebill_rows_built.json")["items"]
    first, second = (
        fixture("collection_customer_page1.json"),
        fixture("collection_customer_page2.json"),
    )
    first |= {"items": rows[:1], "count": 1}
    second |= {"items": rows[1:], "count": 1, "offset": 1}
    vendor.on("GET", f"{RECORD}/job/eid:PRJ-1", ok(fixture("record_job_get_built.json")))
    with_postings(vendor)
    vendor.query("FROM timebill WHERE customer", ok(first), ok(second))
    postings = await erp.list_postings("PRJ-1")
    assert len(postings) == 2
    offsets = [r.url.params["offset"] for r in vendor.requests if r.url.path == SUITEQL]
    assert offsets[:2] == ["0", "1"]
    assert all(r.headers["prefer"] == "transient" for r in vendor.requests if r.url.path == SUITEQL)


async def test_suiteql_answers_as_published_are_read(erp: NetSuiteErp, vendor: Vendor) -> None:
    """The published SuiteQL example (no `hasMore` in it) as the answer to a period query:
    rows of strings with `links: []`; no period among them, so none is open."""
    vendor.query("FROM accountingperiod", ok(fixture("suiteql_response.json")))
    assert await erp.period_open("2024-01") is False


# --------------------------------------------------------------------------- reference data


async def test_period_open_matches_netsuite_period_names(erp: NetSuiteErp, vendor: Vendor) -> None:
    vendor.query("FROM accountingperiod", ok(fixture("suiteql_accountingperiod_rows_built.json")))
    assert await erp.period_open("2024-01") is True
    assert "'Jan 2024'" in vendor.suiteql()[-1] and "'2024-01'" in vendor.suiteql()[-1]
    closed = fixture("suiteql_accountingperiod_rows_built.json")
    closed["items"][0]["closed"] = "T"
    vendor.query("FROM accountingperiod", ok(closed))
    assert await erp.period_open("2024-01") is False


async def test_cost_center_status_reads_the_department(erp: NetSuiteErp, vendor: Vendor) -> None:
    department = fixture("record_department_get_built.json")
    vendor.on("GET", f"{RECORD}/department/eid:CC-110", ok(department))
    assert await erp.cost_center_status("CC-110") is CostCenterStatus.ACTIVE
    vendor.on("GET", f"{RECORD}/department/eid:CC-110", ok(department | {"isInactive": True}))
    assert await erp.cost_center_status("CC-110") is CostCenterStatus.INACTIVE
    # Unknown: NetSuite's published 404 NONEXISTENT_ID.
    assert await erp.cost_center_status("CC-404") is CostCenterStatus.UNKNOWN


async def test_get_cost_rate_reads_the_employee(erp: NetSuiteErp, vendor: Vendor) -> None:
    employee = fixture("record_employee_get_built.json")
    vendor.on("GET", f"{RECORD}/employee/eid:E1001", ok(employee))
    assert await erp.get_cost_rate("E1001") == Money("125.5", "USD")
    vendor.on("GET", f"{RECORD}/employee/eid:E1001", ok(employee | {"currency": {"id": "1"}}))
    with_currency(vendor)
    assert await erp.get_cost_rate("E1001") == Money("125.5", "USD")
    assert await erp.get_cost_rate("E404") is None
    vendor.on("GET", f"{RECORD}/employee/eid:E1001", ok(employee | {"laborCost": "lots"}))
    with pytest.raises(UnmappableRecord) as caught:
        await erp.get_cost_rate("E1001")
    assert (caught.value.record, caught.value.record_id) == ("employee", "7")


# --------------------------------------------------------------------------- invoices


async def test_get_invoice_expands_its_lines(erp: NetSuiteErp, vendor: Vendor) -> None:
    vendor.on(
        "GET", f"{RECORD}/invoice/1215", ok(fixture("record_invoice_get_expanded_built.json"))
    )
    with_currency(vendor)
    invoice = await erp.get_invoice("1215")
    asked = next(r for r in vendor.requests if r.url.path == f"{RECORD}/invoice/1215")
    assert asked.url.params["expandSubResources"] == "true"
    assert invoice.total == Money("1000", "USD")
    assert invoice.status is InvoiceStatus.PAID
    assert invoice.invoice_date == date(2024, 1, 31) and invoice.period == "2024-01"
    assert (invoice.external_id, invoice.idempotency_key) == ("1215", "INV-KEY-1")
    assert (invoice.customer_id, invoice.project_id) == ("107", "2041")
    assert invoice.lines[0].quantity == Decimal("8") and invoice.milestone_code == "M1"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"id": "A", "refName": "Open"}, InvoiceStatus.OPEN),
        ({"id": "B", "refName": "Paid In Full"}, InvoiceStatus.PAID),
        ({"id": "V", "refName": "Voided"}, InvoiceStatus.VOID),
        ({"id": "CustInvc:B"}, InvoiceStatus.PAID),
        ({"refName": "Invoice : Open"}, InvoiceStatus.OPEN),
        ("Voided", InvoiceStatus.VOID),
        ({"id": "E", "refName": "Pending Approval"}, InvoiceStatus.DRAFT),
    ],
)
async def test_invoice_status_as_reference_id_or_name(
    erp: NetSuiteErp, vendor: Vendor, status: Any, expected: InvoiceStatus
) -> None:
    body = fixture("record_invoice_get_expanded_built.json") | {"status": status}
    vendor.on("GET", f"{RECORD}/invoice/1215", ok(body))
    with_currency(vendor)
    assert (await erp.get_invoice("1215")).status is expected


async def test_an_invoice_whose_lines_came_as_links_is_unmappable(
    erp: NetSuiteErp, vendor: Vendor
) -> None:
    """A server that ignores `expandSubResources` answers the `item` sublist as links."""
    vendor.on("GET", f"{RECORD}/invoice/1215", ok(fixture("record_invoice_get_built.json")))
    with_currency(vendor)
    with pytest.raises(UnmappableRecord) as caught:
        await erp.get_invoice("1215")
    assert (caught.value.record, caught.value.record_id) == ("invoice", "1215")
    assert "item" in str(caught.value)


async def test_published_error_bodies_on_reads(erp: NetSuiteErp, vendor: Vendor) -> None:
    with pytest.raises(NotFoundError):
        await erp.get_invoice("404")  # unrouted: the published 404 NONEXISTENT_ID
    vendor.on("GET", f"{RECORD}/invoice/401", ok(fixture("error_invalid_login_401.json"), 401))
    with pytest.raises(AuthError):
        await erp.get_invoice("401")
    vendor.query("FROM accountingperiod", ok(fixture("error_invalid_request_400.json"), 400))
    with pytest.raises(BusinessRuleViolation) as refused:
        await erp.period_open("2024-01")
    assert refused.value.code == "INVALID_REQUEST"


async def test_concurrency_limit_and_unexpected_errors_are_retried(
    erp: NetSuiteErp, vendor: Vendor
) -> None:
    busy = ok(fixture("error_concurrency_limit_exceeded_429.json"), 429)
    broken = ok(fixture("error_unexpected_error_500.json"), 500)
    periods = ok(fixture("suiteql_accountingperiod_rows_built.json"))
    vendor.query("FROM accountingperiod", busy, broken, periods)
    assert await erp.period_open("2024-01") is True
    assert erp.retries == 2


# --------------------------------------------------------------------------- async jobs


def invoice() -> Invoice:
    return Invoice(
        source_system=System.PSSYNC,
        idempotency_key="INV-KEY-1",
        project_id="01J0000000000000000000PRJ1",
        customer_id="001ACME0000000000A",
        period="2024-01",
        invoice_date=date(2024, 1, 31),
        lines=[
            InvoiceLine(description="Consulting", quantity=Decimal(8), amount=Money("1000", "USD"))
        ],
    )


@pytest.mark.parametrize("listed", ["ids", "task-status"])
async def test_create_invoice_through_the_published_async_shapes(
    erp: NetSuiteErp, vendor: Vendor, listed: str
) -> None:
    """Customer by external id answered like the published `?fields=` GET (its id only in the
    self link); the 202's relative Location; the published job status, pending then done;
    the tasks listed as ids or as the published task status; the task's result what a
    synchronous create answers (204 and the new record's Location)."""
    customer = fixture("record_customer_get_fields.json")
    vendor.on("GET", f"{RECORD}/customer/eid:001ACME0000000000A", ok(customer))
    job = fixture("record_job_get_built.json")
    vendor.on("GET", f"{RECORD}/job/eid:01J0000000000000000000PRJ1", ok(job))
    vendor.on("POST", f"{RECORD}/invoice", ok(None, 202, Location=ASYNC_JOB))
    pending = fixture("async_job_status.json")
    done = pending | {"completed": True, "progress": "succeeded"}
    vendor.on("GET", ASYNC_JOB, ok(pending), ok(done))
    tasks = fixture("collection_customer_page2.json")
    task = fixture("async_task_status.json")
    item = task if listed == "task-status" else {"links": task["links"][1:], "id": "1"}
    tasks |= {"items": [item], "count": 1, "offset": 0, "totalResults": 1}
    vendor.on("GET", f"{ASYNC_JOB}/task", ok(tasks))
    created = ok(None, 204, Location=f"{BASE}{RECORD}/invoice/1215")
    vendor.on("GET", f"{ASYNC_JOB}/task/1/result", created)
    assert await erp.create_invoice(invoice()) == "1215"
    posted = json.loads(next(r for r in vendor.requests if r.method == "POST").content)
    assert posted["items"][0]["entity"] == {"id": "107"}
    assert posted["items"][0]["job"] == {"id": "2041"}
    assert vendor.paths().count(ASYNC_JOB) == 2


def test_fixtures_name_their_sources() -> None:
    """Every fixture file is in the manifest (and every built one says so)."""
    from tests._shapes import FIXTURES

    folder = FIXTURES / "netsuite"
    manifest = (folder / "MANIFEST.md").read_text()
    for path in folder.iterdir():
        if path.name != "MANIFEST.md":
            assert f"| {path.name} |" in manifest, path.name
    for line in manifest.splitlines():
        if line.startswith("|") and "_built.json" in line:
            assert "**built**" in line, line
