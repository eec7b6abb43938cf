"""`NetSuiteErp`'s budgets and labor forecasts over `httpx.MockTransport`: kept in the custom
record types of pssync's tenant setup (`customrecord_pssync_budget`,
`customrecord_pssync_labor_forecast`), read by external ID and upserted by `PUT .../eid:X`
(fixtures in tests/fixtures/vendors/netsuite, built from the record-service shape: see its
MANIFEST.md). NetSuite has no conditional write, so the port's versioning is read, compare,
then write: a stale or finance-held record is refused before anything is sent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from connectors.erp import NetSuiteErp
from contracts.errors import (
    BusinessRuleViolation,
    NotFoundError,
    StaleVersionError,
    UnmappableRecord,
)
from contracts.money import Money
from contracts.systems import System
from contracts.v1.models import Forecast, ForecastStatus
from tests.connectors.test_erp_published import (
    BASE,
    RECORD,
    Vendor,
    connect,
    fixture,
    ok,
    with_currency,
)

BUDGET = f"{RECORD}/customrecord_pssync_budget/eid:pssync-budget-2041"
FORECAST = f"{RECORD}/customrecord_pssync_labor_forecast/eid:pssync-forecast-2041-2024-01"
JOB = f"{RECORD}/job/2041"
ENTERPRISE_ID = "01J0000000000000000000PRJ1"


@pytest.fixture
def vendor() -> Vendor:
    vendor = Vendor()
    with_currency(vendor)
    return vendor


@pytest.fixture
async def erp(vendor: Vendor) -> AsyncIterator[NetSuiteErp]:
    async with connect(vendor) as connector:
        yield connector


def budget(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = fixture("record_customrecord_pssync_budget_get_built.json")
    return body | {f"custrecord_pssync_budget_{k}": v for k, v in fields.items()}


def forecast_record(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = fixture("record_customrecord_pssync_labor_forecast_get_built.json")
    return body | {f"custrecord_pssync_lf_{k}": v for k, v in fields.items()}


def missing() -> Any:
    """NetSuite's published 404 NONEXISTENT_ID."""
    return ok(fixture("error_nonexistent_id_404.json"), 404)


def upserted(path: str, ident: str) -> Any:
    """What an upsert answers: 204 and the record's Location."""
    record_type = path.split("/")[-2]
    return ok(None, 204, Location=f"{BASE}{RECORD}/{record_type}/{ident}")


def sent(vendor: Vendor, method: str = "PUT") -> list[httpx.Request]:
    return [r for r in vendor.requests if r.method == method]


def draft(**changes: Any) -> Forecast:
    forecast = Forecast(
        source_system=System.PSSYNC,
        project_id="2041",
        period="2024-01",
        hours=Decimal("172.5"),
        labor_cost=Money("21648.75", "USD"),
        version=4,
    )
    return forecast.model_copy(update=changes)


# --------------------------------------------------------------------------- budget


async def test_get_budget_reads_the_budget_record(erp: NetSuiteErp, vendor: Vendor) -> None:
    vendor.on("GET", BUDGET, ok(budget()))
    found = await erp.get_budget("2041")
    assert (found.project_erp_id, found.amount, found.version) == (
        "2041",
        Money("120000", "USD"),
        1,
    )
    # The custom record by external ID, its currency by its record; nothing under `job/`.
    assert vendor.paths() == [BUDGET, f"{RECORD}/currency/1"]


async def test_a_project_named_by_enterprise_id_is_resolved_first(
    erp: NetSuiteErp, vendor: Vendor
) -> None:
    vendor.on("GET", f"{RECORD}/job/eid:{ENTERPRISE_ID}", ok(fixture("record_job_get_built.json")))
    vendor.on("GET", BUDGET, ok(budget()))
    assert (await erp.get_budget(f"eid:{ENTERPRISE_ID}")).version == 1
    assert (await erp.get_budget(ENTERPRISE_ID)).version == 1
    # The job is looked up once; its budget record is named by the job's internal id.
    assert vendor.paths().count(f"{RECORD}/job/eid:{ENTERPRISE_ID}") == 1
    assert vendor.paths().count(BUDGET) == 2


async def test_a_project_without_a_budget_record_has_none_yet(
    erp: NetSuiteErp, vendor: Vendor
) -> None:
    vendor.on("GET", BUDGET, missing())
    vendor.on("GET", JOB, ok(fixture("record_job_get_built.json")))
    found = await erp.get_budget("2041")
    assert (found.amount, found.version) == (Money("0", "USD"), 0)


async def test_the_budget_of_an_unknown_project_is_not_found(
    erp: NetSuiteErp, vendor: Vendor
) -> None:
    with pytest.raises(NotFoundError):
        await erp.get_budget("2041")  # neither the budget record nor the job exists
    with pytest.raises(NotFoundError):
        await erp.get_budget("PRJ-NONE")


async def test_revise_budget_compares_then_upserts_by_external_id(
    erp: NetSuiteErp, vendor: Vendor
) -> None:
    vendor.on("GET", JOB, ok(fixture("record_job_get_built.json")))
    revised = budget(amount=130000.5, version=2)
    vendor.on("GET", BUDGET, ok(budget()), ok(revised))
    vendor.on("PUT", BUDGET, upserted(BUDGET, "12"))
    result = await erp.revise_budget("2041", amount=Money("130000.50", "USD"), expected_version=1)
    assert (result.amount, result.version) == (Money("130000.50", "USD"), 2)
    [put] = sent(vendor)
    assert put.url.path == BUDGET and "if-match" not in put.headers
    assert b'"custrecord_pssync_budget_amount": 130000.50' in put.content  # exact, not a float
    body = json.loads(put.content)
    assert body["custrecord_pssync_budget_project"] == {"id": "2041"}
    assert body["custrecord_pssync_budget_currency"] == {"id": "USD"}
    assert body["custrecord_pssync_budget_version"] == 2
    assert body["name"]  # the record type's Name field is mandatory
    assert not sent(vendor, "PATCH")


async def test_a_stale_version_writes_nothing(erp: NetSuiteErp, vendor: Vendor) -> None:
    vendor.on("GET", JOB, ok(fixture("record_job_get_built.json")))
    vendor.on("GET", BUDGET, ok(budget(version=3)))
    with pytest.raises(StaleVersionError, match="version 3, not 1"):
        await erp.revise_budget("2041", amount=Money("1", "USD"), expected_version=1)
    assert not sent(vendor)


async def test_a_retried_revision_that_went_through_is_not_stale(
    erp: NetSuiteErp, vendor: Vendor
) -> None:
    vendor.on("GET", JOB, ok(fixture("record_job_get_built.json")))
    vendor.on("GET", BUDGET, ok(budget(amount=130000.0, version=2)))
    again = await erp.revise_budget("2041", amount=Money("130000", "USD"), expected_version=1)
    assert again.version == 2
    assert not sent(vendor)


async def test_the_first_budget_creates_the_record(erp: NetSuiteErp, vendor: Vendor) -> None:
    vendor.on("GET", JOB, ok(fixture("record_job_get_built.json")))
    vendor.on("GET", BUDGET, missing(), ok(budget(amount=80000.0)))
    vendor.on("PUT", BUDGET, upserted(BUDGET, "12"))
    result = await erp.revise_budget("2041", amount=Money("80000", "USD"), expected_version=0)
    assert (result.amount, result.version) == (Money("80000", "USD"), 1)
    assert json.loads(sent(vendor)[0].content)["custrecord_pssync_budget_version"] == 1


async def test_a_closed_project_refuses_a_revision(erp: NetSuiteErp, vendor: Vendor) -> None:
    job = fixture("record_job_get_built.json")
    job["entityStatus"] |= {"id": "1", "refName": "Closed"}
    vendor.on("GET", JOB, ok(job))
    vendor.on("GET", BUDGET, ok(budget()))
    with pytest.raises(BusinessRuleViolation) as refused:
        await erp.revise_budget("2041", amount=Money("1", "USD"), expected_version=1)
    assert (refused.value.code, refused.value.field) == ("PROJECT_CLOSED", "job")
    assert not sent(vendor)


async def test_a_save_netsuite_calls_changed_is_stale(erp: NetSuiteErp, vendor: Vendor) -> None:
    """NetSuite's optimistic locking of custom records refuses a colliding save."""
    changed = fixture("error_invalid_content_400.json")
    changed["o:errorDetails"][0] |= {
        "detail": "Record has been changed.",
        "o:errorCode": "RCRD_HAS_BEEN_CHANGED",
    }
    vendor.on("GET", JOB, ok(fixture("record_job_get_built.json")))
    vendor.on("GET", BUDGET, ok(budget()))
    vendor.on("PUT", BUDGET, ok(changed, 400))
    with pytest.raises(StaleVersionError, match="changed while it was written"):
        await erp.revise_budget("2041", amount=Money("2", "USD"), expected_version=1)


@pytest.mark.parametrize("broken", [{"amount": "lots"}, {"version": True}])
async def test_a_malformed_budget_record_is_unmappable(
    erp: NetSuiteErp, vendor: Vendor, broken: dict[str, Any]
) -> None:
    vendor.on("GET", BUDGET, ok(budget(**broken)))
    with pytest.raises(UnmappableRecord) as caught:
        await erp.get_budget("2041")
    assert (caught.value.record, caught.value.record_id) == ("customrecord_pssync_budget", "12")


# --------------------------------------------------------------------------- labor forecast


async def test_get_forecast_reads_the_forecast_record(erp: NetSuiteErp, vendor: Vendor) -> None:
    vendor.on("GET", FORECAST, ok(forecast_record()))
    found = await erp.get_forecast("2041", "2024-01")
    assert found is not None
    assert (found.project_id, found.period, found.hours, found.labor_cost) == (
        "2041",
        "2024-01",
        Decimal("160"),
        Money("20080", "USD"),
    )
    assert (found.version, found.status, found.source_system) == (
        3,
        ForecastStatus.DRAFT,
        System.ERP,
    )


async def test_no_forecast_record_is_none_but_an_unknown_project_is_not_found(
    erp: NetSuiteErp, vendor: Vendor
) -> None:
    with pytest.raises(NotFoundError):
        await erp.get_forecast("2041", "2024-01")  # no job 2041 either
    vendor.on("GET", JOB, ok(fixture("record_job_get_built.json")))
    assert await erp.get_forecast("2041", "2024-01") is None


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("approved", ForecastStatus.APPROVED),
        ("Locked", ForecastStatus.LOCKED),  # as finance may type it
        ({"id": "2", "refName": "Approved"}, ForecastStatus.APPROVED),  # a custom list
        (None, ForecastStatus.DRAFT),  # an empty field is left out
    ],
)
async def test_forecast_status_as_text_or_list(
    erp: NetSuiteErp, vendor: Vendor, status: Any, expected: ForecastStatus
) -> None:
    record = forecast_record(status=status)
    if status is None:
        del record["custrecord_pssync_lf_status"]
    vendor.on("GET", FORECAST, ok(record))
    found = await erp.get_forecast("2041", "2024-01")
    assert found is not None and found.status is expected


async def test_an_unknown_forecast_status_is_unmappable(erp: NetSuiteErp, vendor: Vendor) -> None:
    vendor.on("GET", FORECAST, ok(forecast_record(status="pending review")))
    with pytest.raises(UnmappableRecord) as caught:
        await erp.get_forecast("2041", "2024-01")
    assert caught.value.record == "customrecord_pssync_labor_forecast"
    assert caught.value.record_id == "31"


async def test_put_forecast_upserts_the_period_record(erp: NetSuiteErp, vendor: Vendor) -> None:
    vendor.on("GET", JOB, ok(fixture("record_job_get_built.json")))
    written = forecast_record(hours=172.5, labor_cost=21648.75, version=4)
    vendor.on("GET", FORECAST, missing(), ok(written))
    vendor.on("PUT", FORECAST, upserted(FORECAST, "31"))
    result = await erp.put_forecast(draft())
    assert (result.hours, result.labor_cost, result.version) == (
        Decimal("172.5"),
        Money("21648.75", "USD"),
        4,
    )
    [put] = sent(vendor)
    assert put.url.path == FORECAST
    body = json.loads(put.content, parse_float=Decimal)
    assert body["custrecord_pssync_lf_project"] == {"id": "2041"}
    assert (body["custrecord_pssync_lf_period"], body["custrecord_pssync_lf_status"]) == (
        "2024-01",
        "draft",
    )
    assert body["custrecord_pssync_lf_hours"] == Decimal("172.5")
    assert body["custrecord_pssync_lf_labor_cost"] == Decimal("21648.75")
    assert body["custrecord_pssync_lf_currency"] == {"id": "USD"}
    assert body["custrecord_pssync_lf_version"] == 4


@pytest.mark.parametrize(
    ("record", "error", "code"),
    [
        ({"status": "approved"}, BusinessRuleViolation, "FORECAST_APPROVED"),
        ({"status": "locked"}, BusinessRuleViolation, "FORECAST_LOCKED"),
        ({"version": 5}, StaleVersionError, None),
    ],
)
async def test_put_forecast_refuses_before_writing(
    erp: NetSuiteErp,
    vendor: Vendor,
    record: dict[str, Any],
    error: type[Exception],
    code: str | None,
) -> None:
    vendor.on("GET", FORECAST, ok(forecast_record(**record)))
    with pytest.raises(error) as refused:
        await erp.put_forecast(draft())
    if code is not None:
        assert isinstance(refused.value, BusinessRuleViolation)
        assert (refused.value.code, refused.value.field) == (code, "status")
    assert not sent(vendor)
