"""The ERP twin's responses against NetSuite's published payloads (tests/fixtures/vendors/
netsuite, sources in its MANIFEST.md), by shape: the same keys and JSON types, so the twin
cannot drift from the vendor again. Where the twin still differs, a strict xfail says how."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from connectors.erp import NetSuiteErp
from connectors.erp.values import DateFormat
from contracts.money import Money
from contracts.settings import SystemSettings
from contracts.systems import System
from contracts.v1.models import Forecast
from sandbox import erp
from tests._servers import serve
from tests._shapes import assert_same_shape, load_fixture, shape_problems
from tests.connectors.test_erp import invoice, posting, provision
from tests.twins._erp_fixtures import AUTH, RECORD, ErpTwin, erp_twin, small_firm

SUITEQL = "/services/rest/query/v1/suiteql"
ASYNC = {"Prefer": "respond-async"}


def fixture(name: str) -> Any:
    return load_fixture("netsuite", name)


@pytest.fixture
async def twin() -> AsyncIterator[ErpTwin]:
    async with erp_twin() as t:
        yield t


@contextlib.asynccontextmanager
async def account_twin(date_format: str) -> AsyncIterator[ErpTwin]:
    """The twin of an account whose date format preference is `date_format`."""
    app = erp.create_app(date_format=date_format)
    erp.load_firm(app, small_firm())
    async with serve(app) as base_url:
        async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=10) as client:
            yield ErpTwin(app=app, base_url=base_url, client=client)


def connector(twin: ErpTwin, **overrides: Any) -> NetSuiteErp:
    values: dict[str, Any] = {"base_url": twin.base_url, "retry_budget_s": 5, "timeout_s": 5}
    return NetSuiteErp(SystemSettings.model_validate(values | overrides), poll_interval_s=0.01)


async def suiteql(twin: ErpTwin, q: str) -> dict[str, Any]:
    response = await twin.client.post(SUITEQL, json={"q": q}, headers={"Prefer": "transient"})
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def job_with_postings(twin: ErpTwin, **settings: Any) -> str:
    async with connector(twin, **settings) as netsuite:
        job = await provision(netsuite)
        results = await netsuite.post_time([posting("S-1"), posting("S-2")])
        assert all(r.ok for r in results)
        return job


# --------------------------------------------------------------------------- envelopes


async def test_collection_pages_match_netsuites(twin: ErpTwin) -> None:
    for name in ("Research", "Delivery"):
        await twin.client.post(f"{RECORD}/department", json={"name": name})
    first = (await twin.client.get(f"{RECORD}/department", params={"limit": 2})).json()
    assert_same_shape(first, fixture("collection_customer_page1.json"))
    params = {"limit": 2, "offset": 2}
    second = (await twin.client.get(f"{RECORD}/department", params=params)).json()
    assert_same_shape(second, fixture("collection_customer_page2.json"))
    assert {link["rel"] for link in second["links"]} >= {"prev", "first", "self"}


async def test_suiteql_answers_like_netsuite(twin: ErpTwin) -> None:
    published = fixture("suiteql_response.json")
    body = await suiteql(twin, "SELECT id, email, companyname FROM customer")
    # The published example is shortened: it has no `hasMore` (real answers do).
    envelope = {k: v for k, v in published.items() if k != "items"}
    assert_same_shape({k: v for k, v in body.items() if k != "items"}, envelope, extra={"hasMore"})
    assert body["items"]
    for row in body["items"]:
        # Every column is text, as in the published rows, and each row has `links: []`.
        template: dict[str, Any] = {"links": []} | {c: "" for c in row if c != "links"}
        assert_same_shape(row, template)
        assert row["links"] == []


async def test_suiteql_timebill_rows_have_netsuites_columns(twin: ErpTwin) -> None:
    job = await job_with_postings(twin)
    body = await suiteql(twin, f"SELECT * FROM timebill WHERE customer = {job}")
    built = fixture("suiteql_timebill_rows_built.json")
    assert_same_shape(body, built, extra={"memo"}, missing={"reverses", "billamount"})


async def test_suiteql_dates_follow_the_accounts_format() -> None:
    """An account whose date format is M/D/YYYY: SuiteQL answers `6/10/2025`, and the
    connector set to that format reads the postings back on the right day."""
    async with account_twin("M/D/YYYY") as twin:
        job = await job_with_postings(twin, date_format="M/D/YYYY")
        rows = (await suiteql(twin, f"SELECT id, trandate FROM timebill WHERE customer = {job}"))[
            "items"
        ]
        assert {row["trandate"] for row in rows} == {"6/10/2025"}
        built = fixture("suiteql_timebill_rows_built.json")["items"][0]["trandate"]
        assert DateFormat("M/D/YYYY").parse(built) == date(2024, 1, 15)
        async with connector(twin, date_format="M/D/YYYY") as netsuite:
            postings = await netsuite.list_postings(job)
        assert {p.posting_date for p in postings} == {date(2025, 6, 10)}
        assert {p.period for p in postings} == {"2025-06"}


def test_an_unknown_account_date_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown date format"):
        erp.create_app(date_format="Q/W/E")


# --------------------------------------------------------------------------- errors


async def test_error_bodies_match_netsuites(twin: ErpTwin) -> None:
    missing = await twin.client.get(f"{RECORD}/job/999")
    assert missing.status_code == 404
    # The twin names the field (`o:errorPath`) where NetSuite's example does not.
    published = fixture("error_nonexistent_id_404.json")
    assert_same_shape(missing.json(), published, extra={"o:errorPath"})
    refused = await twin.client.get(f"{RECORD}/department", params={"limit": 1001})
    assert refused.status_code == 400
    assert_same_shape(refused.json(), fixture("error_invalid_content_400.json"))


def test_the_concurrency_limit_error_matches_netsuites() -> None:
    """What the twin's fault layer answers when the account's concurrency is exhausted."""
    body = erp.error_body(429, "CONCURRENCY_LIMIT_EXCEEDED", "Concurrent request limit exceeded.")
    published = fixture("error_concurrency_limit_exceeded_429.json")
    assert_same_shape(body, published)
    assert (body["title"], body["o:errorCode"]) == (published["title"], "USER_ERROR")


# --------------------------------------------------------------------------- async service


async def test_async_job_and_task_status_match_netsuites(twin: ErpTwin) -> None:
    customer = (await twin.client.get(f"{RECORD}/customer/eid:001ACME0000000000A")).json()["id"]
    body = {"companyName": "Async", "customer": {"id": customer}}
    response = await twin.client.put(f"{RECORD}/job/eid:PRJ-S", json=body, headers=ASYNC)
    assert response.status_code == 202
    location = response.headers["location"]
    pending = (await twin.client.get(location)).json()
    # The twin also says when the job started (and ended): fields NetSuite's task has.
    assert_same_shape(pending, fixture("async_job_status.json"), extra={"startTime"})
    done = (await twin.client.get(location)).json()
    assert_same_shape(done, fixture("async_job_status.json"), extra={"startTime", "endTime"})
    tasks = (await twin.client.get(f"{location}/task")).json()
    assert_same_shape(tasks, fixture("collection_customer_page2.json"))
    task = (await twin.client.get(tasks["items"][0]["links"][0]["href"])).json()
    assert_same_shape(task, fixture("async_task_status.json"))


# --------------------------------------------------------------------------- records


async def invoice_id(twin: ErpTwin) -> str:
    async with connector(twin) as netsuite:
        await provision(netsuite)
        return await netsuite.create_invoice(invoice())


async def test_sublists_are_links_unless_expanded(twin: ErpTwin) -> None:
    ident = await invoice_id(twin)
    plain = (await twin.client.get(f"{RECORD}/invoice/{ident}")).json()
    # As the published customer GET answers its `addressbook` sublist.
    addressbook = fixture("record_customer_get_excerpt.json")["addressbook"]
    assert_same_shape(plain["item"], addressbook)
    assert plain["item"]["links"][0]["href"].endswith(f"/invoice/{ident}/item")
    params = {"expandSubResources": "true"}
    expanded = (await twin.client.get(f"{RECORD}/invoice/{ident}", params=params)).json()
    built = fixture("record_invoice_get_expanded_built.json")["item"]
    # The twin's lines carry no service item (`item`) and no rate when none was sent.
    assert_same_shape(expanded["item"], built, missing={"item", "rate"})
    sublist = (await twin.client.get(plain["item"]["links"][0]["href"])).json()
    assert sublist == expanded["item"]


async def test_record_gets_match_netsuites_fields(twin: ErpTwin) -> None:
    """Job and time bill GETs have NetSuite's fields and types; references are compared
    without `links` and `refName` (see the xfail below)."""
    job = await job_with_postings(twin)
    record = (await twin.client.get(f"{RECORD}/job/{job}")).json()
    built = fixture("record_job_get_built.json")
    loose = {"links", "refName"}
    assert_same_shape(record, built, missing=loose | {"isInactive"}, extra={"comments"})
    assert record["links"] == [{"rel": "self", "href": f"{twin.base_url}{RECORD}/job/{job}"}]
    rows = await suiteql(twin, f"SELECT id FROM timebill WHERE customer = {job}")
    timebill = (await twin.client.get(f"{RECORD}/timebill/{rows['items'][0]['id']}")).json()
    built = fixture("record_timebill_get_built.json")
    # The twin writes a timebill's employee as the external id it was given; no memo here.
    assert_same_shape(timebill, built, missing=loose | {"id", "memo"}, extra={"externalId"})
    assert isinstance(timebill["id"], str) and timebill["id"].isdigit()


@pytest.mark.xfail(
    strict=True,
    reason="the twin's references are {id[, refName]} without `links`; adding them breaks "
    "the exact-equality asserts in tests/twins/test_erp.py (not this helper's to edit)",
)
async def test_references_carry_links_and_ref_names(twin: ErpTwin) -> None:
    job = await job_with_postings(twin)
    record = (await twin.client.get(f"{RECORD}/job/{job}")).json()
    reference = fixture("record_job_get_built.json")["department"]
    assert not shape_problems(record["department"], reference)


def test_ids_are_strings_in_every_fixture_reference() -> None:
    """What the twin's references must keep: string ids (the published examples')."""
    for name in ("record_customer_get_excerpt.json", "record_invoice_get_excerpt.json"):
        body = fixture(name)
        refs = [v for v in body.values() if isinstance(v, dict) and "id" in v]
        assert refs and all(isinstance(r["id"], str) for r in refs)
        assert all(re.fullmatch(r"\d+", r["id"]) for r in refs)


# --------------------------------------------------------------------------- custom records


def forecast(job: str) -> Forecast:
    return Forecast(
        source_system=System.PSSYNC,
        project_id=job,
        period="2025-06",
        hours=Decimal("160"),
        labor_cost=Money("20080", "USD"),
        version=1,
    )


@pytest.mark.parametrize(
    ("record_type", "external_id", "built"),
    [
        (
            "customrecord_pssync_budget",
            "pssync-budget-{job}",
            "record_customrecord_pssync_budget_get_built.json",
        ),
        (
            "customrecord_pssync_labor_forecast",
            "pssync-forecast-{job}-2025-06",
            "record_customrecord_pssync_labor_forecast_get_built.json",
        ),
    ],
)
async def test_custom_record_gets_match_the_record_service_shape(
    twin: ErpTwin, record_type: str, external_id: str, built: str
) -> None:
    """The budget and forecast records the connector writes, read back from the twin by
    external ID and by internal id, against the record service's shape. References are
    compared without `links` and `refName` (see the xfail above); the twin's last-modified
    stamp is extra: its REST name on a custom record is not verified, so the fixture has none."""
    async with connector(twin) as netsuite:
        job = await provision(netsuite)
        await netsuite.put_forecast(forecast(job))
    by_eid = await twin.client.get(f"{RECORD}/{record_type}/eid:{external_id.format(job=job)}")
    assert by_eid.status_code == 200
    record = by_eid.json()
    loose = {"links", "refName"}
    assert_same_shape(record, fixture(built), missing=loose, extra={"lastModifiedDate"})
    self_link = f"{twin.base_url}{RECORD}/{record_type}/{record['id']}"
    assert record["links"] == [{"rel": "self", "href": self_link}]
    assert (await twin.client.get(self_link)).json() == record
    missing = await twin.client.get(f"{RECORD}/{record_type}/eid:pssync-none")
    assert missing.status_code == 404
    assert_same_shape(
        missing.json(), fixture("error_nonexistent_id_404.json"), extra={"o:errorPath"}
    )
