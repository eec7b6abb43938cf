"""`SalesforceCrm` against Salesforce's published payloads (tests/fixtures/vendors/salesforce,
sources in its MANIFEST.md), served over `httpx.MockTransport`: the public methods give the
canonical result, unknown or missing optional fields do not break a read, a malformed record is
an `UnmappableRecord`, and the documented error bodies are classified by their code."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.crm import KEY_FIELD, NewOpportunity, NewOpportunityLine, SalesforceCrm
from contracts.errors import (
    AuthError,
    BusinessRuleViolation,
    NotFoundError,
    PssyncError,
    RateLimitedError,
    UnmappableRecord,
)
from contracts.money import Money
from contracts.settings import SystemSettings
from contracts.systems import System
from contracts.v1 import LineType
from tests._shapes import FIXTURES, load_fixture

DATA = "/services/data/v61.0"
OPP = "0065g00000keQIVAA2"
ACC = "0015g00000N1pVqAAJ"
NEXT_LINES = "/services/data/v61.0/query/01gD0000002HU6KIAW-2"


def published(name: str) -> bytes:
    """A fixture's bytes as stored (sent verbatim)."""
    return (FIXTURES / "salesforce" / name).read_bytes()


def fixture(name: str) -> Any:
    return load_fixture("salesforce", name)


Answer = tuple[int, bytes]
Route = Callable[[httpx.Request], Answer | None]


@dataclass
class Vendor:
    """A scripted Salesforce org: the first route that answers a request wins."""

    routes: list[Route] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def on(self, method: str, path: str, answer: Answer | Callable[[], Answer]) -> None:
        def route(request: httpx.Request) -> Answer | None:
            if request.method != method or request.url.path != path:
                return None
            return answer() if callable(answer) else answer

        self.routes.append(route)

    def query(self, sobject: str, answer: Answer) -> None:
        """Answer SOQL queries `FROM sobject`."""

        def route(request: httpx.Request) -> Answer | None:
            soql = request.url.params.get("q", "")
            if request.url.path == f"{DATA}/query" and f"FROM {sobject} " in f"{soql} ":
                return answer
            return None

        self.routes.append(route)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for route in self.routes:
            found = route(request)
            if found is not None:
                status, body = found
                return httpx.Response(
                    status, content=body, headers={"content-type": "application/json"}
                )
        return httpx.Response(404, content=published("error_not_found_resource_404.json"))

    def sent(self, method: str, prefix: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path.startswith(prefix)]


def dumps(body: Any) -> bytes:
    return json.dumps(body).encode()


@pytest.fixture
def vendor() -> Vendor:
    return Vendor()


@pytest.fixture
async def crm(vendor: Vendor) -> AsyncIterator[SalesforceCrm]:
    settings = SystemSettings(
        base_url="https://acme.my.salesforce.com",
        tenant="acme",
        auth="bearer",
        token=SecretStr("00D-session"),
        retry_budget_s=0.2,
    )
    async with SalesforceCrm(
        settings,
        transport=httpx.MockTransport(vendor),
        backoff_base_s=0.001,
        backoff_cap_s=0.01,
    ) as client:
        yield client


def serve_opportunity(vendor: Vendor, header: bytes, page1: bytes, page2: bytes) -> None:
    vendor.on("GET", f"{DATA}/sobjects/Opportunity/{OPP}", (200, header))
    vendor.query("OpportunityLineItem", (200, page1))
    vendor.on("GET", NEXT_LINES, (200, page2))


# --------------------------------------------------------------------------- reads


async def test_get_opportunity_reads_the_documented_fields(
    crm: SalesforceCrm, vendor: Vendor
) -> None:
    serve_opportunity(
        vendor,
        published("opportunity_get_built.json"),
        published("query_opportunity_lines_page1_built.json"),
        published("query_opportunity_lines_page2_built.json"),
    )
    opp = await crm.get_opportunity(OPP)
    assert (opp.external_id, opp.account_id, opp.source_system) == (OPP, ACC, System.CRM)
    assert opp.name == "Northwind - Data Platform Modernisation"
    assert (opp.stage, opp.is_won, opp.is_closed) == ("Closed Won", True, True)
    assert opp.close_date == date(2025, 6, 30)
    assert opp.amount == Money(Decimal("50200.00"), "USD")
    assert (opp.practice, opp.cost_center, opp.rate_card_id, opp.delivery_manager) == (
        "Data & Analytics",
        "CC-120",
        "RC-2025-STD",
        "E1042",
    )
    assert opp.enterprise_id is None
    # `+0000` (no colon in the offset) is Salesforce's datetime form.
    assert opp.updated_at == datetime(2025, 6, 30, 16, 42, 3, tzinfo=UTC)
    assert opp.source_version == "2025-06-30T16:42:03.000+0000"
    assert [line.line_id for line in opp.lines] == [
        "00k5g00000Lq7aBAAR",
        "00k5g00000Lq7aCAAR",
        "00k5g00000Lq7aDAAR",
    ]
    first, second, fixed = opp.lines
    assert (first.line_type, first.role, first.service_date) == (
        LineType.TIME_AND_MATERIALS,
        "Senior Consultant",
        date(2025, 7, 1),
    )
    # Numbers arrive as floats (`162.5`, `120.0`); they are read as exact decimals.
    assert isinstance(second.quantity, Decimal) and second.quantity == 80
    assert second.unit_price == Money(Decimal("162.50"), "USD")
    assert second.description == "Data Engineer"  # no Description: the product name
    assert (fixed.line_type, fixed.role, fixed.service_date) == (LineType.FIXED_FEE, None, None)
    assert opp.amount == sum((li.total_price for li in opp.lines), Money.zero("USD"))
    # Page 2 has no `nextRecordsUrl` key at all (`done: true`): paging stops there.
    assert [r.url.path for r in vendor.sent("GET", f"{DATA}/query")] == [
        f"{DATA}/query",
        NEXT_LINES,
    ]


async def test_query_follows_the_published_paging(crm: SalesforceCrm, vendor: Vendor) -> None:
    vendor.query("Whizbang", (200, published("query_page1_not_done.json")))
    vendor.on("GET", "/services/data/v26.0/query/01gD", (200, published("query_page2_done.json")))
    records = await crm.query("SELECT Text_Label FROM Whizbang")
    assert [r["Text_Label"] for r in records] == ["First Page", "Last Page"]
    assert [r.url.path for r in vendor.requests] == [
        f"{DATA}/query",
        "/services/data/v26.0/query/01gD",
    ]


@pytest.mark.parametrize(
    ("name", "count"), [("query_with_relationships.json", 1), ("query_account_docs.json", 2)]
)
async def test_query_reads_published_single_pages(
    crm: SalesforceCrm, vendor: Vendor, name: str, count: int
) -> None:
    vendor.query("Whizbang", (200, published(name)))
    records = await crm.query("SELECT Name FROM Whizbang")
    assert len(records) == count == len(fixture(name)["records"])
    assert len(vendor.requests) == 1
    if name == "query_with_relationships.json":
        # A child relationship is a nested query result; a parent one a record.
        assert records[0]["Whizbangs__r"]["records"][0]["Name"] == "Child Whizbang"
        assert records[0]["ParentWhizbang__r"]["attributes"]["type"] == "Whizbang"


async def test_get_account(crm: SalesforceCrm, vendor: Vendor) -> None:
    vendor.on("GET", f"{DATA}/sobjects/Account/{ACC}", (200, published("account_get_built.json")))
    customer = await crm.get_account(ACC)
    assert (customer.external_id, customer.name, customer.currency) == (
        ACC,
        "Northwind Traders",
        "USD",
    )
    assert customer.credit_hold is True and customer.billing_country == "United States"
    assert customer.updated_at == datetime(2025, 6, 1, 8, 15, 42, tzinfo=UTC)


async def test_opportunities_in_stage(crm: SalesforceCrm, vendor: Vendor) -> None:
    vendor.query("Opportunity", (200, published("query_opportunities_built.json")))
    [opp] = await crm.opportunities_in_stage("Closed Won")
    assert (opp.external_id, opp.amount, opp.lines) == (
        OPP,
        Money(Decimal("50200.00"), "USD"),
        [],
    )


async def test_unknown_and_missing_optional_fields_do_not_break_the_read(
    crm: SalesforceCrm, vendor: Vendor
) -> None:
    header = fixture("opportunity_get_built.json")
    for name in (
        "Practice__c",
        "Cost_Center__c",
        "Rate_Card__c",
        "Delivery_Manager__c",
        "Enterprise_Project_Id__c",
        "SystemModstamp",
        "IsWon",
        "Description",
    ):
        del header[name]
    header["Brand_New__c"] = {"nested": [1, 2.5, None]}
    header["Amount"] = None
    page = fixture("query_opportunity_lines_page2_built.json")
    for name in ("Role__c", "Billing_Type__c", "ServiceDate", "Description", "UnitPrice"):
        del page["records"][0][name]
    page["records"][0]["Discount"] = 12.5
    page["nextRecordsUrl"] = None  # some clients render the absent key as null
    serve_opportunity(vendor, dumps(header), dumps(page), b"{}")
    opp = await crm.get_opportunity(OPP)
    assert (opp.practice, opp.cost_center, opp.rate_card_id, opp.delivery_manager) == (
        None,
        None,
        None,
        None,
    )
    assert (opp.account_id, opp.is_won, opp.source_version) == (ACC, False, None)
    assert opp.amount == Money.zero("USD")
    [line] = opp.lines
    assert (line.line_type, line.role, line.service_date) == (
        LineType.TIME_AND_MATERIALS,
        None,
        None,
    )
    assert line.unit_price == Money.zero("USD")


def _without(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda record: record.pop(name)


def _setting(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda record: record.__setitem__(name, value)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_without("Name"), "Name"),
        (_without("StageName"), "StageName"),
        (_without("LastModifiedDate"), "LastModifiedDate"),
        (_without("AccountId"), "account_id"),  # a deal without an account is not one
        (_setting("CloseDate", "30/06/2025"), None),
        (_setting("LastModifiedDate", "2025-06-30T16:42:03.000"), None),  # no offset
        (_setting("LastModifiedDate", 1751301723), None),
        (_setting("Amount", "a lot"), None),
        (_setting("CurrencyIsoCode", "DOLLARS"), None),
        (_setting("Name", {"first": "Northwind"}), "name"),
    ],
)
async def test_a_malformed_opportunity_is_unmappable(
    crm: SalesforceCrm,
    vendor: Vendor,
    mutate: Callable[[dict[str, Any]], None],
    field: str | None,
) -> None:
    header = fixture("opportunity_get_built.json")
    mutate(header)
    serve_opportunity(
        vendor,
        dumps(header),
        published("query_opportunity_lines_page1_built.json"),
        published("query_opportunity_lines_page2_built.json"),
    )
    with pytest.raises(UnmappableRecord) as caught:
        await crm.get_opportunity(OPP)
    error = caught.value
    assert (error.record, error.record_id, error.system) == ("Opportunity", OPP, System.CRM)
    if field is not None:
        assert error.field == field


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_without("Id"), "Id"),
        (_without("Quantity"), "Quantity"),
        (_setting("Quantity", "many"), None),
        (_setting("ServiceDate", "July"), None),
    ],
)
async def test_a_malformed_line_item_is_unmappable(
    crm: SalesforceCrm,
    vendor: Vendor,
    mutate: Callable[[dict[str, Any]], None],
    field: str | None,
) -> None:
    page = fixture("query_opportunity_lines_page2_built.json")
    mutate(page["records"][0])
    serve_opportunity(
        vendor,
        published("opportunity_get_built.json"),
        published("query_opportunity_lines_page1_built.json"),
        dumps(page),
    )
    with pytest.raises(UnmappableRecord) as caught:
        await crm.get_opportunity(OPP)
    assert caught.value.record == "OpportunityLineItem"
    if field is not None:
        assert caught.value.field == field


@pytest.mark.parametrize(
    "body",
    [
        b'{"totalSize": 1, "done": true}',  # no records
        b'{"totalSize": 1, "done": true, "records": {"Id": "x"}}',
        b'[{"Id": "x"}]',
        b"<html><body>Service unavailable</body></html>",  # a proxy's page, answered 200
    ],
)
async def test_a_malformed_query_answer_is_unmappable(
    crm: SalesforceCrm, vendor: Vendor, body: bytes
) -> None:
    vendor.query("Opportunity", (200, body))
    with pytest.raises(UnmappableRecord):
        await crm.opportunities_in_stage("Closed Won")


async def test_a_malformed_record_body_is_unmappable(crm: SalesforceCrm, vendor: Vendor) -> None:
    vendor.on("GET", f"{DATA}/sobjects/Account/{ACC}", (200, b'["not", "a", "record"]'))
    with pytest.raises(UnmappableRecord) as caught:
        await crm.get_account(ACC)
    assert caught.value.record == "Account"


# --------------------------------------------------------------------------- writes


NEW = NewOpportunity(
    key="deal-7",
    name="Northwind - Phase 2",
    account_id=ACC,
    close_date=date(2025, 9, 30),
    currency="USD",
    lines=[
        NewOpportunityLine(product_code="SVC-DATA", quantity=Decimal(10), unit_price=Decimal(150)),
        NewOpportunityLine(product_code="SVC-PM", quantity=Decimal(5), unit_price=Decimal(180)),
    ],
)


async def test_create_opportunity_reads_the_published_upsert_answers(
    crm: SalesforceCrm, vendor: Vendor
) -> None:
    vendor.query("Opportunity", (200, published("query_empty_built.json")))
    vendor.query("OpportunityLineItem", (200, published("query_empty_built.json")))
    vendor.on(
        "PATCH",
        f"{DATA}/sobjects/Opportunity/{KEY_FIELD}/deal-7",
        (201, published("upsert_created_201.json")),
    )
    # The older create answer (no `created` key) for the line items.
    for n in (1, 2):
        vendor.on(
            "PATCH",
            f"{DATA}/sobjects/OpportunityLineItem/{KEY_FIELD}/deal-7:{n}",
            (201, published("create_success_201.json")),
        )
    assert await crm.create_opportunity(NEW) == "00190000001pPvHAAU"
    assert len(vendor.sent("PATCH", f"{DATA}/sobjects/OpportunityLineItem/")) == 2


async def test_an_upsert_key_many_records_share_is_a_business_rule(
    crm: SalesforceCrm, vendor: Vendor
) -> None:
    vendor.query("Opportunity", (200, published("query_empty_built.json")))
    vendor.on(
        "PATCH",
        f"{DATA}/sobjects/Opportunity/{KEY_FIELD}/deal-7",
        (300, published("upsert_multiple_choices_300.json")),
    )
    with pytest.raises(BusinessRuleViolation) as caught:
        await crm.create_opportunity(NEW)
    error = caught.value
    assert not isinstance(error, UnmappableRecord)
    assert (error.code, error.field) == ("MULTIPLE_CHOICES", KEY_FIELD)
    assert "/services/data/v23.0/sobjects/Whizbang/foo" in str(error)
    assert "/services/data/v23.0/sobjects/Whizbang/bar" in str(error)
    assert len(vendor.sent("PATCH", f"{DATA}/sobjects/")) == 1  # never re-sent


@pytest.mark.parametrize(
    "name", ["upsert_bad_external_id_field_404.json", "error_not_found_external_id_404.json"]
)
async def test_an_upsert_by_a_missing_key_field_is_not_found(
    crm: SalesforceCrm, vendor: Vendor, name: str
) -> None:
    # The docs show this error as a bare object, the API sends the usual array: both parse.
    vendor.query("Opportunity", (200, published("query_empty_built.json")))
    vendor.on("PATCH", f"{DATA}/sobjects/Opportunity/{KEY_FIELD}/deal-7", (404, published(name)))
    with pytest.raises(NotFoundError):
        await crm.create_opportunity(NEW)


async def test_a_save_result_without_an_id_is_unmappable(
    crm: SalesforceCrm, vendor: Vendor
) -> None:
    vendor.query("Opportunity", (200, published("query_empty_built.json")))
    vendor.on(
        "PATCH",
        f"{DATA}/sobjects/Opportunity/{KEY_FIELD}/deal-7",
        (201, b'{"errors": [], "success": true}'),
    )
    with pytest.raises(UnmappableRecord) as caught:
        await crm.create_opportunity(NEW)
    assert (caught.value.record, caught.value.field) == ("save result", "id")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "name", "kind", "code"),
    [
        (403, "error_request_limit_exceeded_403.json", RateLimitedError, None),
        (401, "error_invalid_session_id_401.json", AuthError, None),
        (400, "error_malformed_id_400.json", BusinessRuleViolation, "MALFORMED_ID"),
        (400, "error_invalid_field_400.json", BusinessRuleViolation, "INVALID_FIELD"),
        (404, "error_not_found_resource_404.json", NotFoundError, None),
    ],
)
async def test_published_errors_are_classified_by_their_code(
    crm: SalesforceCrm,
    vendor: Vendor,
    status: int,
    name: str,
    kind: type[PssyncError],
    code: str | None,
) -> None:
    vendor.on("GET", f"{DATA}/sobjects/Opportunity/{OPP}", (status, published(name)))
    with pytest.raises(kind) as caught:
        await crm.get_opportunity(OPP)
    error = caught.value
    assert not isinstance(error, UnmappableRecord)
    if code is not None:
        assert isinstance(error, BusinessRuleViolation) and error.code == code
    if name == "error_malformed_id_400.json":
        assert isinstance(error, BusinessRuleViolation) and error.field == "Id"
    if kind is RateLimitedError:
        assert len(vendor.requests) > 1  # a quota: waited and asked again
    else:
        assert len(vendor.requests) == 1
