"""The Salesforce twin over real HTTP: shapes, paging, refusals, signed won-deal events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from standardwebhooks import Webhook

from contracts.settings import DEV_WEBHOOK_SECRET
from sandbox import crm
from sandbox._ids import is_salesforce_id, salesforce_id
from sandbox._twin import TwinState
from sandbox.seed import Firm, build_firm
from tests._servers import serve
from tests._twins import CLIENT_CREDENTIALS, TwinApp

TODAY = date(2025, 6, 15)
API = "/services/data/v61.0"
AUTH = {"Authorization": "Bearer dev-static-token"}


@pytest.fixture(scope="module")
def firm() -> Firm:
    return build_firm(11, workers=30, today=TODAY)


@dataclass
class Twin(TwinApp):
    client: httpx.AsyncClient


@pytest.fixture(scope="module")
async def twin(firm: Firm) -> AsyncIterator[Twin]:
    """One twin for the module: each test works on its own opportunities."""
    app = crm.create_app(None, tenant="acme")
    crm.load_firm(app, firm)
    state: TwinState = app.state.twin
    assert state.webhooks is not None
    state.webhooks.base_delay_s = 0.01
    async with serve(app) as base, httpx.AsyncClient(base_url=base, headers=AUTH) as client:
        yield Twin(app, client)
        await state.webhooks.aclose()


@pytest.fixture(autouse=True)
def _fresh_webhooks(twin: Twin) -> None:
    assert twin.state.webhooks is not None
    twin.state.webhooks.configure(None, DEV_WEBHOOK_SECRET)
    twin.state.webhooks.deliveries.clear()


@dataclass
class Receiver:
    """A webhook endpoint that verifies Standard Webhooks signatures."""

    secret: str
    fail_first: int = 0
    calls: int = 0
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hooks/crm")
        async def hook(request: Request) -> Response:
            self.calls += 1
            if self.calls <= self.fail_first:
                return Response(status_code=503)
            body = await request.body()
            payload = Webhook(self.secret).verify(body, dict(request.headers))
            self.events.append((request.headers["webhook-id"], payload))
            return Response(status_code=204)

        return app


def errors(response: httpx.Response) -> list[dict[str, Any]]:
    body = response.json()
    assert isinstance(body, list), body
    assert {"message", "errorCode", "fields"} <= body[0].keys()
    return body


# --------------------------------------------------------------------------- reads


async def test_opportunity_is_salesforce_shaped(twin: Twin, firm: Firm) -> None:
    opp = firm.opportunities[0]
    response = await twin.client.get(f"{API}/sobjects/Opportunity/{opp.id}")
    assert response.status_code == 200
    body = json.loads(response.text, parse_float=Decimal)
    assert body["attributes"] == {
        "type": "Opportunity",
        "url": f"{API}/sobjects/Opportunity/{opp.id}",
    }
    assert body["Id"] == opp.id and len(body["Id"]) == 18 and body["Id"].startswith("006")
    assert body["AccountId"].startswith("001") and is_salesforce_id(body["AccountId"])
    assert body["Amount"] == opp.amount
    assert body["CurrencyIsoCode"] == opp.currency
    assert body["IsWon"] is False and body["IsClosed"] is False
    assert body["HasOpportunityLineItem"] is True
    assert body["Practice__c"] == opp.practice
    assert body["Rate_Card__c"] == opp.rate_card_id
    assert body["Delivery_Manager__c"] == opp.delivery_manager
    assert body["Enterprise_Project_Id__c"] is None
    assert body["SystemModstamp"].endswith("+0000")


async def test_fifteen_character_id_is_accepted(twin: Twin, firm: Firm) -> None:
    opp = firm.opportunities[1]
    response = await twin.client.get(f"{API}/sobjects/Opportunity/{opp.id[:15]}")
    assert response.status_code == 200
    assert response.json()["Id"] == opp.id


async def test_fields_parameter_selects_fields(twin: Twin, firm: Firm) -> None:
    opp = firm.opportunities[1]
    response = await twin.client.get(
        f"{API}/sobjects/Opportunity/{opp.id}", params={"fields": "Name,StageName"}
    )
    assert set(response.json()) == {"attributes", "Name", "StageName"}


async def test_line_items_query_sums_to_amount(twin: Twin, firm: Firm) -> None:
    for opp in firm.opportunities[:5]:
        q = (
            "SELECT Id, Quantity, UnitPrice, TotalPrice, Billing_Type__c FROM OpportunityLineItem "
            f"WHERE OpportunityId = '{opp.id}' ORDER BY SortOrder"
        )
        response = await twin.client.get(f"{API}/query", params={"q": q})
        body = json.loads(response.text, parse_float=Decimal)
        assert body["done"] is True and body["totalSize"] == len(opp.lines)
        assert sum(r["TotalPrice"] for r in body["records"]) == opp.amount
        for record, line in zip(body["records"], opp.lines, strict=True):
            assert record["attributes"]["type"] == "OpportunityLineItem"
            assert record["Id"] == line.id
            assert record["Quantity"] * record["UnitPrice"] == record["TotalPrice"]


async def test_query_pages_with_next_records_url(twin: Twin, firm: Firm) -> None:
    stage = firm.opportunities[0].stage
    expected = {o.id for o in firm.opportunities if o.stage == stage}
    response = await twin.client.get(
        f"{API}/query",
        params={"q": f"SELECT Id, StageName FROM Opportunity WHERE StageName = '{stage}'"},
        headers={"Sforce-Query-Options": "batchSize=2"},
    )
    body = response.json()
    seen = [r["Id"] for r in body["records"]]
    assert body["totalSize"] == len(expected)
    pages = 1
    while not body["done"]:
        assert body["nextRecordsUrl"].startswith(f"{API}/query/01g")
        body = (await twin.client.get(body["nextRecordsUrl"])).json()
        seen += [r["Id"] for r in body["records"]]
        pages += 1
    assert set(seen) == expected and len(seen) == len(expected)
    assert pages == (len(expected) + 1) // 2


async def test_query_filters_and_orders(twin: Twin, firm: Firm) -> None:
    q = "SELECT Id, Amount FROM Opportunity WHERE Amount >= 100000 ORDER BY Amount DESC LIMIT 5"
    body = json.loads(
        (await twin.client.get(f"{API}/query", params={"q": q})).text, parse_float=Decimal
    )
    amounts = [r["Amount"] for r in body["records"]]
    expected = sorted((o.amount for o in firm.opportunities if o.amount >= 100000), reverse=True)
    assert amounts == expected[:5]


@pytest.mark.parametrize(
    ("q", "code"),
    [
        ("SELECT Id FROM Invoice__c", "INVALID_TYPE"),
        ("SELECT Id, Bogus FROM Opportunity", "INVALID_FIELD"),
        ("SELECT Account.Name FROM Opportunity", "INVALID_FIELD"),
        ("SELECT Id FROM Opportunity WHERE Amount = '5'", "MALFORMED_QUERY"),
        ("SELECT Id FROM Opportunity WHERE CloseDate = '2025-01-01'", "MALFORMED_QUERY"),
        ("SELECT COUNT() FROM Opportunity", "MALFORMED_QUERY"),
        ("SELECT Id FROM Opportunity WHERE", "MALFORMED_QUERY"),
        ("DELETE FROM Opportunity", "MALFORMED_QUERY"),
        ("", "MALFORMED_QUERY"),
    ],
)
async def test_query_refusals(twin: Twin, q: str, code: str) -> None:
    response = await twin.client.get(f"{API}/query", params={"q": q})
    assert response.status_code == 400
    assert errors(response)[0]["errorCode"] == code


async def test_invalid_query_locator(twin: Twin) -> None:
    response = await twin.client.get(f"{API}/query/01g000000000000AAA-200")
    assert response.status_code == 400
    assert errors(response)[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


async def test_account_read(twin: Twin, firm: Firm) -> None:
    held = next(c for c in firm.customers if c.credit_hold)
    body = (await twin.client.get(f"{API}/sobjects/Account/{held.id}")).json()
    assert body["attributes"]["type"] == "Account"
    assert body["Name"] == held.name and body["Credit_Hold__c"] is True
    assert body["CurrencyIsoCode"] == held.currency


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("patch", "code", "field"),
    [
        ({"Bogus__c": 1}, "INVALID_FIELD", "Bogus__c"),
        ({"CloseDate": 20250101}, "JSON_PARSER_ERROR", "CloseDate"),
        ({"CloseDate": "next tuesday"}, "JSON_PARSER_ERROR", "CloseDate"),
        ({"Name": 42}, "JSON_PARSER_ERROR", "Name"),
        ({"IsWon": True}, "INVALID_FIELD_FOR_INSERT_UPDATE", "IsWon"),
        ({"Id": "006000000000000AAA"}, "INVALID_FIELD_FOR_INSERT_UPDATE", "Id"),
        ({"StageName": "Won-ish"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "StageName"),
        ({"Provisioning_Status__c": "Maybe"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", None),
        ({"Amount": 1000}, "FIELD_INTEGRITY_EXCEPTION", "Amount"),
        ({"CurrencyIsoCode": "JPY"}, "FIELD_INTEGRITY_EXCEPTION", "CurrencyIsoCode"),
        ({"Name": None}, "REQUIRED_FIELD_MISSING", "Name"),
        ({"AccountId": "not-an-id"}, "MALFORMED_ID", "AccountId"),
        (
            {"AccountId": salesforce_id("001", 424242, pod="zz")},
            "INVALID_CROSS_REFERENCE_KEY",
            None,
        ),
        ({"Provisioning_Error__c": "x" * 300}, "STRING_TOO_LONG", "Provisioning_Error__c"),
    ],
)
async def test_patch_refusals_are_vendor_errors(
    twin: Twin, firm: Firm, patch: dict[str, Any], code: str, field: str | None
) -> None:
    opp = firm.opportunities[2]
    before = (await twin.client.get(f"{API}/sobjects/Opportunity/{opp.id}")).json()
    response = await twin.client.patch(f"{API}/sobjects/Opportunity/{opp.id}", json=patch)
    assert response.status_code == 400
    error = errors(response)[0]
    assert error["errorCode"] == code
    if field:
        assert error["fields"] == [field]
    after = (await twin.client.get(f"{API}/sobjects/Opportunity/{opp.id}")).json()
    assert after == before


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"null", b'"text"'])
async def test_malformed_bodies_are_400_not_500(twin: Twin, firm: Firm, raw: bytes) -> None:
    response = await twin.client.patch(
        f"{API}/sobjects/Opportunity/{firm.opportunities[0].id}",
        content=raw,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert errors(response)[0]["errorCode"] == "JSON_PARSER_ERROR"


async def test_missing_or_bad_auth_is_invalid_session(twin: Twin, firm: Firm) -> None:
    url = f"{API}/sobjects/Opportunity/{firm.opportunities[0].id}"
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer nope"}):
        response = await twin.client.get(url, headers=headers)
        assert response.status_code == 401
        assert errors(response)[0]["errorCode"] == "INVALID_SESSION_ID"


async def test_oauth_token_then_access(twin: Twin, firm: Firm) -> None:
    token = await twin.client.post(
        "/oauth2/token",
        data=CLIENT_CREDENTIALS,
        headers={"Authorization": ""},
    )
    access = token.json()["access_token"]
    response = await twin.client.get(
        f"{API}/sobjects/Account/{firm.customers[0].id}",
        headers={"Authorization": f"Bearer {access}"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/sobjects/Opportunity/006000000000000AAA",
        "/sobjects/Opportunity/garbage",
        "/sobjects/Widget__c/006000000000000AAA",
    ],
)
async def test_unknown_records_are_not_found(twin: Twin, path: str) -> None:
    response = await twin.client.get(f"{API}{path}")
    assert response.status_code == 404
    assert errors(response)[0]["errorCode"] == "NOT_FOUND"


async def test_account_id_is_not_an_opportunity(twin: Twin, firm: Firm) -> None:
    response = await twin.client.get(f"{API}/sobjects/Opportunity/{firm.customers[0].id}")
    assert response.status_code == 404


async def test_unsupported_api_version_is_not_found(twin: Twin, firm: Firm) -> None:
    response = await twin.client.get(
        f"/services/data/v12.0/sobjects/Opportunity/{firm.opportunities[0].id}"
    )
    assert response.status_code == 404


# --------------------------------------------------------------------------- writes


async def test_create_opportunity_with_lines_rolls_up_amount(twin: Twin, firm: Firm) -> None:
    account = firm.customers[0]
    created = await twin.client.post(
        f"{API}/sobjects/Opportunity",
        json={
            "Name": "Data platform phase 2",
            "AccountId": account.id,
            "CloseDate": "2025-07-31",
            "StageName": "Proposal/Price Quote",
            "CurrencyIsoCode": "USD",
        },
    )
    assert created.status_code == 201
    body = created.json()
    assert body["success"] is True and body["errors"] == []
    opp_id = body["id"]
    assert is_salesforce_id(opp_id) and opp_id.startswith("006")
    for quantity, price in (("120", "235.50"), ("80", 190)):
        line = await twin.client.post(
            f"{API}/sobjects/OpportunityLineItem",
            json={
                "OpportunityId": opp_id,
                "ProductCode": "PS-TM-SC",
                "Quantity": quantity,
                "UnitPrice": price,
                "Billing_Type__c": "Time and Materials",
                "Role__c": "Senior Consultant",
            },
        )
        assert line.status_code == 201, line.text
    opp = json.loads(
        (await twin.client.get(f"{API}/sobjects/Opportunity/{opp_id}")).text, parse_float=Decimal
    )
    assert opp["Amount"] == Decimal("120") * Decimal("235.50") + 80 * 190
    assert opp["HasOpportunityLineItem"] is True
    assert opp["Probability"] == 75


async def test_line_item_refusals(twin: Twin, firm: Firm) -> None:
    opp = firm.opportunities[0]
    both = await twin.client.post(
        f"{API}/sobjects/OpportunityLineItem",
        json={"OpportunityId": opp.id, "Quantity": 1, "UnitPrice": 10, "TotalPrice": 10},
    )
    assert errors(both)[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    missing = await twin.client.post(
        f"{API}/sobjects/OpportunityLineItem", json={"OpportunityId": opp.id, "UnitPrice": 10}
    )
    assert errors(missing)[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    orphan = await twin.client.post(
        f"{API}/sobjects/OpportunityLineItem",
        json={
            "OpportunityId": salesforce_id("006", 77, pod="zz"),
            "Quantity": 1,
            "UnitPrice": 10,
        },
    )
    assert errors(orphan)[0]["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"


async def test_line_change_bumps_the_opportunity_version(twin: Twin, firm: Firm) -> None:
    opp = firm.opportunities[3]
    url = f"{API}/sobjects/Opportunity/{opp.id}"
    before = (await twin.client.get(url)).json()
    line = opp.lines[0]
    response = await twin.client.patch(
        f"{API}/sobjects/OpportunityLineItem/{line.id}", json={"Quantity": str(line.quantity * 2)}
    )
    assert response.status_code == 204
    after = json.loads((await twin.client.get(url)).text, parse_float=Decimal)
    assert after["SystemModstamp"] > before["SystemModstamp"]
    assert after["Amount"] == opp.amount + line.total_price


async def test_write_back_fields(twin: Twin, firm: Firm) -> None:
    opp = firm.opportunities[4]
    url = f"{API}/sobjects/Opportunity/{opp.id}"
    patch = {
        "Enterprise_Project_Id__c": "01JABCDEFGHJKMNPQRSTVWXYZ0",
        "Provisioning_Status__c": "Provisioned",
        "Provisioning_Error__c": None,
    }
    assert (await twin.client.patch(url, json=patch)).status_code == 204
    body = (await twin.client.get(url)).json()
    assert {k: body[k] for k in patch} == patch


# --------------------------------------------------------------------------- won-deal events


async def test_closed_won_sends_a_signed_thin_event(twin: Twin, firm: Firm) -> None:
    receiver = Receiver(DEV_WEBHOOK_SECRET)
    opp = firm.opportunities[5]
    async with serve(receiver.app()) as hooks:
        assert twin.state.webhooks is not None
        twin.state.webhooks.configure(f"{hooks}/hooks/crm")
        response = await twin.client.patch(
            f"{API}/sobjects/Opportunity/{opp.id}", json={"StageName": "Closed Won"}
        )
        assert response.status_code == 204
        await twin.state.webhooks.drain(10)
    assert len(receiver.events) == 1
    event_id, payload = receiver.events[0]
    assert payload["type"] == crm.WON_EVENT
    assert payload["data"] == {
        "tenant": "acme",
        "object": "Opportunity",
        "id": opp.id,
        "stage": "Closed Won",
    }
    body = (await twin.client.get(f"{API}/sobjects/Opportunity/{opp.id}")).json()
    assert body["IsWon"] is True and body["IsClosed"] is True and body["Probability"] == 100
    assert twin.state.webhooks.deliveries[event_id].delivered


async def test_only_the_transition_to_won_sends_an_event(twin: Twin, firm: Firm) -> None:
    opp = firm.opportunities[6]
    url = f"{API}/sobjects/Opportunity/{opp.id}"
    assert twin.state.webhooks is not None
    await twin.client.patch(url, json={"StageName": "Closed Won"})
    await twin.client.patch(url, json={"StageName": "Closed Won", "Description": "again"})
    await twin.client.patch(url, json={"Description": "signed"})
    won = [d for d in twin.state.webhooks.deliveries.values() if d.event_type == crm.WON_EVENT]
    assert len(won) == 1


async def test_delivery_is_retried_when_the_receiver_fails(twin: Twin, firm: Firm) -> None:
    receiver = Receiver(DEV_WEBHOOK_SECRET, fail_first=2)
    opp = firm.opportunities[7]
    async with serve(receiver.app()) as hooks:
        assert twin.state.webhooks is not None
        twin.state.webhooks.configure(f"{hooks}/hooks/crm")
        await twin.client.patch(
            f"{API}/sobjects/Opportunity/{opp.id}", json={"StageName": "Closed Won"}
        )
        await twin.state.webhooks.drain(10)
    assert receiver.calls == 3
    assert [p["data"]["id"] for _, p in receiver.events] == [opp.id]
    (delivery,) = twin.state.webhooks.deliveries.values()
    assert delivery.delivered and delivery.attempts == 3


async def test_creating_a_won_opportunity_sends_an_event(twin: Twin, firm: Firm) -> None:
    receiver = Receiver("whsec_" + "c2Vjb25kLXNlY3JldC1mb3ItdGVzdHM=")
    async with serve(receiver.app()) as hooks:
        assert twin.state.webhooks is not None
        twin.state.webhooks.configure(f"{hooks}/hooks/crm", receiver.secret)
        created = await twin.client.post(
            f"{API}/sobjects/Opportunity",
            json={
                "Name": "Signed on the spot",
                "AccountId": firm.customers[1].id,
                "CloseDate": "2025-06-15",
                "StageName": "Closed Won",
            },
        )
        await twin.state.webhooks.drain(10)
    assert [p["data"]["id"] for _, p in receiver.events] == [created.json()["id"]]
