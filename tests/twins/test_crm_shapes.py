"""The Salesforce twin answers in the shape of Salesforce's published examples
(tests/fixtures/vendors/salesforce): the same keys and JSON types, values aside.

Published examples are of other objects (restforce's `Whizbang`), so for records only the
envelope and `attributes` are compared with them; Opportunity, OpportunityLineItem and Account
records are compared with the examples built from Salesforce's field reference (`_built`): a
GET of all fields sends no field Salesforce does not have, and a query's records have exactly
the selected fields."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import pytest

from connectors.crm.mapping import _LINE_FIELDS, _OPPORTUNITY_FIELDS
from sandbox import crm
from sandbox.seed import Firm, build_firm
from tests._servers import serve
from tests._shapes import assert_same_shape, load_fixture
from tests._twins import TwinApp

TODAY = date(2025, 6, 15)
API = "/services/data/v61.0"
AUTH = {"Authorization": "Bearer dev-static-token"}


def fixture(name: str) -> Any:
    return load_fixture("salesforce", name)


@dataclass
class Twin(TwinApp):
    client: httpx.AsyncClient
    firm: Firm


@pytest.fixture(scope="module")
async def twin() -> AsyncIterator[Twin]:
    firm = build_firm(11, workers=30, today=TODAY)
    app = crm.create_app(None, tenant="acme")
    crm.load_firm(app, firm)
    async with serve(app) as base, httpx.AsyncClient(base_url=base, headers=AUTH) as client:
        yield Twin(app, client, firm)
        state = app.state.twin
        if state.webhooks is not None:
            await state.webhooks.aclose()


def envelope(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "records": []}


async def query(twin: Twin, soql: str, batch: int | None = None) -> dict[str, Any]:
    headers = {"Sforce-Query-Options": f"batchSize={batch}"} if batch else {}
    response = await twin.client.get(f"{API}/query", params={"q": soql}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --------------------------------------------------------------------------- query


async def test_query_pages_have_the_published_envelopes(twin: Twin) -> None:
    first = await query(twin, "SELECT Id, Name FROM Account", batch=2)
    assert first["done"] is False
    assert_same_shape(envelope(first), envelope(fixture("query_page1_not_done.json")))
    published = fixture("query_page1_not_done.json")["records"][0]["attributes"]
    for record in first["records"]:
        assert_same_shape(record["attributes"], published)
    body = first
    while not body["done"]:
        response = await twin.client.get(body["nextRecordsUrl"])
        body = response.json()
    # The last page has no `nextRecordsUrl` key (not a null one).
    assert_same_shape(envelope(body), envelope(fixture("query_page2_done.json")))


async def test_query_records_have_the_selected_fields(twin: Twin) -> None:
    opp = max(twin.firm.opportunities, key=lambda o: len(o.lines))
    lines = await query(
        twin, f"SELECT {_LINE_FIELDS} FROM OpportunityLineItem WHERE OpportunityId = '{opp.id}'"
    )
    built = fixture("query_opportunity_lines_page2_built.json")
    assert_same_shape(lines, built, nullable=True)
    opps = await query(twin, f"SELECT {_OPPORTUNITY_FIELDS} FROM Opportunity")
    assert_same_shape(opps, fixture("query_opportunities_built.json"), nullable=True)


# --------------------------------------------------------------------------- records


@pytest.mark.parametrize(
    ("sobject", "name"),
    [("Opportunity", "opportunity_get_built.json"), ("Account", "account_get_built.json")],
)
async def test_a_record_get_sends_only_fields_salesforce_has(
    twin: Twin, sobject: str, name: str
) -> None:
    record_id = twin.firm.opportunities[0].id if sobject == "Opportunity" else None
    record_id = record_id or twin.firm.customers[0].id
    response = await twin.client.get(f"{API}/sobjects/{sobject}/{record_id}")
    body = response.json()
    built = fixture(name)
    # Salesforce has more fields than the twin keeps: those may be missing, nothing else.
    assert_same_shape(body, built, missing=set(built) - set(body), nullable=True)
    assert_same_shape(body["attributes"], fixture("sobject_get_record.json")["attributes"])
    assert list(body)[:2] == ["attributes", "Id"]


async def test_create_and_upsert_answers_have_the_published_shape(twin: Twin) -> None:
    account = twin.firm.customers[0].id
    created = await twin.client.post(
        f"{API}/sobjects/Account", json={"Name": "Shape Test Ltd", "CurrencyIsoCode": "USD"}
    )
    assert created.status_code == 201
    assert_same_shape(created.json(), fixture("create_success_201.json"))
    upserted = await twin.client.patch(
        f"{API}/sobjects/Opportunity/Pssync_Key__c/shape-test-1",
        json={"Name": "Shape test", "AccountId": account, "CloseDate": "2025-09-30"}
        | {"StageName": "Prospecting"},
    )
    assert upserted.status_code == 201
    assert_same_shape(upserted.json(), fixture("upsert_created_201.json"))


# --------------------------------------------------------------------------- errors


async def test_error_bodies_have_the_published_shape(twin: Twin) -> None:
    # Salesforce sends `fields` with some errors and not with others; the twin always does.
    fields = {"fields"}
    missing = await twin.client.get(f"{API}/sobjects/Opportunity/006000000000000AAA")
    assert missing.status_code == 404
    assert_same_shape(missing.json(), fixture("error_not_found_resource_404.json"), extra=fields)
    malformed = await twin.client.patch(
        f"{API}/sobjects/Opportunity/{twin.firm.opportunities[0].id}",
        json={"AccountId": "not-an-id"},
    )
    assert malformed.status_code == 400
    assert_same_shape(malformed.json(), fixture("error_malformed_id_400.json"))
    unknown = await twin.client.patch(
        f"{API}/sobjects/Opportunity/{twin.firm.opportunities[0].id}", json={"foo": 1}
    )
    assert unknown.status_code == 400
    assert_same_shape(unknown.json(), fixture("error_invalid_field_400.json"), extra=fields)
    no_key = await twin.client.patch(f"{API}/sobjects/Opportunity/Namez/x", json={})
    assert no_key.status_code == 404
    assert_same_shape(no_key.json(), fixture("error_not_found_external_id_404.json"), extra=fields)
    expired = await twin.client.get(
        f"{API}/sobjects/Account/{twin.firm.customers[0].id}",
        headers={"Authorization": "Bearer expired"},
    )
    assert expired.status_code == 401
    assert_same_shape(expired.json(), fixture("error_invalid_session_id_401.json"), extra=fields)
