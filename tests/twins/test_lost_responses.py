"""The lost-response fault, on every twin from the shared frame: a create is applied, then its
answer is replaced by a 504 in the vendor's error shape — the one failure after which a client
cannot know whether its write happened. Also the CRM twin's External ID upsert, which is how a
Salesforce client creates safely under it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from sandbox import crm, erp, hcm, psa
from sandbox.app import create_sandbox
from sandbox.seed import build_firm
from tests._servers import serve
from tests._twins import CLIENT_CREDENTIALS, TwinApp

AUTH = {"Authorization": "Bearer dev-static-token"}
FIRM = build_firm(3, workers=12, today=date(2025, 6, 15))
OPP = "/services/data/v61.0/sobjects/Opportunity"


@dataclass
class Twin(TwinApp):
    system: str
    client: httpx.AsyncClient


def _crm() -> FastAPI:
    app = crm.create_app()
    crm.load_firm(app, FIRM)
    return app


def _hcm() -> FastAPI:
    app = hcm.create_app(tenant="acme")
    hcm.load_firm(app, FIRM)
    return app


FACTORIES: dict[str, Callable[[], FastAPI]] = {
    "crm": _crm,
    "psa": psa.create_app,
    "erp": erp.create_app,
    "hcm": _hcm,
}


@pytest.fixture(params=sorted(FACTORIES))
async def twin(request: pytest.FixtureRequest) -> AsyncIterator[Twin]:
    app = FACTORIES[request.param]()
    async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        yield Twin(app, request.param, client)


async def create_one(twin: Twin) -> httpx.Response:
    """One create through the twin's vendor API."""
    body: dict[str, Any]
    if twin.system == "crm":
        body = {
            "Name": "Lost deal",
            "AccountId": FIRM.customers[0].id,
            "CloseDate": "2025-07-01",
            "StageName": "Prospecting",
        }
        return await twin.client.post(OPP, json=body)
    if twin.system == "psa":
        body = {"workspace": {"title": "Lost project", "currency": "USD"}}
        return await twin.client.post("/api/v1/workspaces.json", json=body)
    if twin.system == "erp":
        return await twin.client.post(
            "/services/rest/record/v1/customer", json={"companyName": "Lost Co"}
        )
    worker = next(w for w in FIRM.workers if w.termination_date is None)
    return await twin.client.post(
        f"/ccx/api/v1/acme/workers/Employee_ID={worker.id}/terminate",
        json={"terminationDate": "2025-09-30"},
    )


def records(twin: Twin) -> int:
    """How many records the create above makes live in the twin's database."""
    table: Any = {
        "crm": crm.CrmOpportunity,
        "psa": psa.PsaWorkspace,
        "erp": erp.ErpCustomer,
        "hcm": hcm.HcmEvent,
    }[twin.system]
    with twin.state.session() as s:
        return len(s.exec(select(table)).all())


def vendor_error_code(twin: Twin, response: httpx.Response) -> str:
    body = response.json()
    if twin.system == "crm":
        return str(body[0]["errorCode"])
    if twin.system == "psa":
        return str(body["errors"][0]["type"])
    if twin.system == "erp":
        return str(body["o:errorDetails"][0]["o:errorCode"])
    return str(body["code"])


async def test_the_write_is_applied_and_its_answer_is_a_504(twin: Twin) -> None:
    before = records(twin)
    path = f"/_admin/{twin.system}/lost-responses"
    configured = await twin.client.post(path, json={"rate": 1.0, "seed": 1})
    assert configured.status_code == 200
    assert configured.json() == {"rate": 1.0, "seed": 1, "dropped": 0}

    response = await create_one(twin)

    assert response.status_code == 504
    # In the vendor's error shape (Kantata types its errors; a 5xx is a `system` error).
    assert vendor_error_code(twin, response) == (
        "system" if twin.system == "psa" else "GATEWAY_TIMEOUT"
    )
    assert records(twin) == before + 1  # applied all the same
    report = (await twin.client.get(path)).json()
    assert report["dropped"] == 1
    stats = (await twin.client.get("/_admin/stats")).json()
    assert stats["lost_responses"] == 1


async def test_shared_path_admin_and_token_are_never_lost(twin: Twin) -> None:
    assert (await twin.client.post("/_admin/lost-responses", json={"rate": 1.0})).status_code == 200
    assert (await twin.client.get("/_admin/faults")).status_code == 200
    token = await twin.client.post(
        "/oauth2/token",
        data=CLIENT_CREDENTIALS,
    )
    assert token.status_code == 200
    off = await twin.client.post(f"/_admin/{twin.system}/lost-responses", json={})
    assert off.json()["rate"] == 0.0
    assert (await create_one(twin)).status_code < 300


async def test_seeded_rate_loses_the_same_requests_each_run(twin: Twin) -> None:
    async def run() -> list[int]:
        await twin.client.post("/_admin/lost-responses", json={"rate": 0.5, "seed": 7})
        statuses = [(await twin.client.get("/_admin/stats")).status_code]  # admin: not drawn
        for _ in range(12):
            statuses.append((await twin.client.get(read_path(twin))).status_code)
        return statuses

    first, second = await run(), await run()
    assert first == second and 504 in first and any(s < 300 for s in first)


def read_path(twin: Twin) -> str:
    return {
        "crm": f"{OPP}/{FIRM.opportunities[0].id}",
        "psa": "/api/v1/workspaces.json",
        "erp": "/services/rest/record/v1/customer",
        "hcm": "/ccx/api/v1/acme/workers",
    }[twin.system]


async def test_erp_keeps_its_path_under_the_sandbox_mount() -> None:
    sandbox = create_sandbox(None)
    async with serve(sandbox.app) as base_url:
        async with httpx.AsyncClient(base_url=base_url, headers=AUTH) as client:
            for system in ("crm", "psa", "erp", "hcm"):
                r = await client.post(f"/{system}/_admin/{system}/lost-responses", json={"rate": 1})
                assert r.status_code == 200, system
            lost = await client.post(
                "/psa/api/v1/workspaces.json", json={"workspace": {"title": "Mounted"}}
            )
            assert lost.status_code == 504
            assert sandbox.state("psa").lost.dropped == 1
            assert sandbox.state("erp").lost.dropped == 0


# --------------------------------------------------------------------------- CRM upsert


async def test_crm_upsert_by_external_id_is_one_record_however_often_sent() -> None:
    app = _crm()
    async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        body = {
            "Name": "Keyed deal",
            "AccountId": FIRM.customers[1].id,
            "CloseDate": "2025-07-01",
            "StageName": "Prospecting",
        }
        await client.post("/_admin/crm/lost-responses", json={"rate": 1.0})
        lost = await client.patch(f"{OPP}/Pssync_Key__c/DEAL-1", json=body)
        assert lost.status_code == 504
        await client.post("/_admin/crm/lost-responses", json={})
        again = await client.patch(f"{OPP}/Pssync_Key__c/DEAL-1", json=body)
        assert again.status_code == 200 and again.json()["created"] is False
        fresh = await client.patch(f"{OPP}/pssync_key__c/DEAL-2", json=body)
        assert fresh.status_code == 201 and fresh.json()["created"] is True
        assert fresh.json()["id"] != again.json()["id"]
        found = await client.get(
            "/services/data/v61.0/query",
            params={"q": "SELECT Id FROM Opportunity WHERE Pssync_Key__c = 'DEAL-1'"},
        )
        assert [r["Id"] for r in found.json()["records"]] == [again.json()["id"]]

        not_external = await client.patch(f"{OPP}/Name/Keyed", json=body)
        assert not_external.status_code == 404
        assert not_external.json()[0]["errorCode"] == "NOT_FOUND"
        clash = await client.post(OPP, json={**body, "Pssync_Key__c": "DEAL-1"})
        assert clash.status_code == 400
        assert clash.json()[0]["errorCode"] == "DUPLICATE_VALUE"
        other = await client.patch(
            f"{OPP}/Pssync_Key__c/DEAL-3", json={**body, "Pssync_Key__c": "X"}
        )
        assert other.status_code == 400
    with app.state.twin.session() as s:
        keyed = s.exec(select(crm.CrmOpportunity).where(crm.CrmOpportunity.Pssync_Key__c != None))  # noqa: E711
        assert sorted(o.Pssync_Key__c or "" for o in keyed.all()) == ["DEAL-1", "DEAL-2"]


async def test_a_twin_database_from_before_the_key_field_gets_it(tmp_path: Any) -> None:
    """A sandbox home made before `Pssync_Key__c` existed is upgraded in place."""
    import sqlite3

    db = tmp_path / "crm.db"
    crm.create_app(db)  # today's schema
    with sqlite3.connect(db) as conn:
        conn.execute('DROP INDEX "ix_crm_opportunity_Pssync_Key__c"')
        conn.execute("ALTER TABLE crm_opportunity DROP COLUMN Pssync_Key__c")
    app = crm.create_app(db)
    crm.load_firm(app, FIRM)
    with sqlite3.connect(db) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(crm_opportunity)")}
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(crm_opportunity)")}
    assert "Pssync_Key__c" in columns and "ix_crm_opportunity_Pssync_Key__c" in indexes
