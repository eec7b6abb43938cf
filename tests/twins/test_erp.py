"""The ERP twin over real HTTP: NetSuite's shapes, upserts, async jobs, idempotency keys,
business refusals and fault injection."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from sandbox import erp
from sandbox.app import create_sandbox
from tests._servers import serve
from tests._twins import CLIENT_CREDENTIALS
from tests.twins._erp_fixtures import (
    ACTIVE_CC,
    AUTH,
    CLOSED_PERIOD,
    CUSTOMER,
    HOLD_CUSTOMER,
    INACTIVE_CC,
    RECORD,
    ErpTwin,
    erp_twin,
    small_firm,
)

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
async def twin() -> AsyncIterator[ErpTwin]:
    async with erp_twin() as t:
        yield t


def detail(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["status"] == response.status_code
    assert body["type"].startswith("https://www.rfc-editor.org/rfc/")
    first: dict[str, Any] = body["o:errorDetails"][0]
    return first


async def internal_id(twin: ErpTwin, record_type: str, external_id: str) -> str:
    response = await twin.client.get(f"{RECORD}/{record_type}/eid:{external_id}")
    response.raise_for_status()
    ident: str = response.json()["id"]
    return ident


async def make_job(twin: ErpTwin, eid: str = "PRJ-1", **fields: Any) -> str:
    customer = await internal_id(twin, "customer", CUSTOMER)
    department = await internal_id(twin, "department", ACTIVE_CC)
    body = {"companyName": f"Project {eid}", "customer": {"id": customer}}
    body |= {"department": {"id": department}} | fields
    response = await twin.client.put(f"{RECORD}/job/eid:{eid}", json=body)
    assert response.status_code == 204, response.text
    return response.headers["location"].rsplit("/", 1)[-1]


async def timebill(twin: ErpTwin, eid: str, job: str, **fields: Any) -> dict[str, Any]:
    department = await internal_id(twin, "department", ACTIVE_CC)
    body: dict[str, Any] = {
        "externalId": eid,
        "customer": {"id": job},
        "employee": {"externalId": "E1001"},
        "tranDate": "2025-06-10",
        "hours": 7.5,
        "costAmount": 937.5,
        "currency": {"id": "USD"},
        "department": {"id": department},
    }
    return body | fields


async def run_job(twin: ErpTwin, location: str) -> list[dict[str, Any]]:
    """Poll the job until it completes; its tasks with results."""
    for _ in range(10):
        job = (await twin.client.get(location)).json()
        if job["completed"]:
            break
    else:
        raise AssertionError("job never completed")
    tasks = await twin.client.get(f"{location}/task", params={"expandSubResources": "true"})
    items: list[dict[str, Any]] = tasks.json()["items"]
    return items


# --------------------------------------------------------------------------- records


async def test_put_by_external_id_twice_is_one_record(twin: ErpTwin) -> None:
    first = await twin.client.put(f"{RECORD}/customer/eid:C-9", json={"companyName": "Nine"})
    second = await twin.client.put(
        f"{RECORD}/customer/eid:C-9", json={"companyName": "Nine Ltd", "email": "a@nine.test"}
    )
    assert first.status_code == second.status_code == 204
    assert first.headers["location"] == second.headers["location"]
    assert await twin.count("customer", "externalId IS C-9") == 1
    record = (await twin.client.get(f"{RECORD}/customer/eid:C-9")).json()
    assert record["companyName"] == "Nine Ltd"
    assert record["externalId"] == "C-9"


async def test_post_creates_with_204_and_location(twin: ErpTwin) -> None:
    response = await twin.client.post(
        f"{RECORD}/department", json={"name": "Research", "externalId": "CC-300"}
    )
    assert response.status_code == 204
    assert response.content == b""
    location = response.headers["location"]
    assert location.startswith(f"{twin.base_url}{RECORD}/department/")
    record = (await twin.client.get(location)).json()
    assert record["name"] == "Research"
    assert record["links"][0] == {"rel": "self", "href": location}
    again = await twin.client.post(
        f"{RECORD}/department", json={"name": "Again", "externalId": "CC-300"}
    )
    assert again.status_code == 400 and detail(again)["o:errorCode"] == "DUP_RCRD"


async def test_get_returns_references_as_objects(twin: ErpTwin) -> None:
    job = await make_job(twin)
    record = (await twin.client.get(f"{RECORD}/job/{job}")).json()
    customer = await internal_id(twin, "customer", CUSTOMER)
    assert record["customer"]["id"] == customer
    assert record["entityStatus"] == {"id": "2", "refName": "In Progress"}
    assert record["department"] == {"id": await internal_id(twin, "department", ACTIVE_CC)}
    assert record["externalId"] == "PRJ-1"
    by_eid = (await twin.client.get(f"{RECORD}/job/eid:PRJ-1")).json()
    assert by_eid["id"] == job


async def test_list_pages_with_links(twin: ErpTwin) -> None:
    for i in range(5):
        await twin.client.post(f"{RECORD}/department", json={"name": f"D{i}"})
    total = await twin.count("department")
    assert total == 7  # 2 from the firm
    page = (await twin.client.get(f"{RECORD}/department", params={"limit": 2, "offset": 2})).json()
    assert page["count"] == 2 and page["offset"] == 2 and page["totalResults"] == 7
    assert page["hasMore"] is True
    rels = {link["rel"]: link["href"] for link in page["links"]}
    assert {"first", "prev", "next", "last", "self"} <= set(rels)
    assert "offset=4" in rels["next"] and "offset=6" in rels["last"]
    assert set(page["items"][0]) == {"links", "id"}
    last = (await twin.client.get(rels["last"])).json()
    assert last["count"] == 1 and last["hasMore"] is False
    too_big = await twin.client.get(f"{RECORD}/department", params={"limit": 1001})
    assert too_big.status_code == 400 and detail(too_big)["o:errorPath"] == "limit"


async def test_q_filter_and_suiteql(twin: ErpTwin) -> None:
    job = await make_job(twin)
    for n in range(3):
        body = await timebill(twin, f"TB-{n}", job)
        assert (await twin.client.post(f"{RECORD}/timebill", json=body)).status_code == 204
    assert await twin.count("timebill", f"customer ANY_OF {job}") == 3
    assert await twin.count("timebill", "externalId IS TB-1") == 1
    bad = await twin.client.get(f"{RECORD}/timebill", params={"q": "nosuchfield IS 1"})
    assert bad.status_code == 400 and detail(bad)["o:errorCode"] == "INVALID_PARAMETER"
    rows = await twin.client.post(
        "/services/rest/query/v1/suiteql",
        json={"q": f"SELECT id, externalid, hours FROM timebill WHERE customer = {job}"},
        headers={"Prefer": "transient"},
    )
    assert rows.status_code == 200
    items = rows.json()["items"]
    assert sorted(i["externalid"] for i in items) == ["TB-0", "TB-1", "TB-2"]
    assert {i["hours"] for i in items} == {"7.5"}


async def test_unknown_ids_are_404(twin: ErpTwin) -> None:
    for path in (f"{RECORD}/job/999", f"{RECORD}/job/eid:nope"):
        response = await twin.client.get(path)
        assert response.status_code == 404
        assert detail(response)["o:errorCode"] == "NONEXISTENT_ID"
    unknown_type = await twin.client.get(f"{RECORD}/spaceship/1")
    assert unknown_type.status_code == 404


# --------------------------------------------------------------------------- bad input


async def test_bad_input_is_a_vendor_error_never_500(twin: ErpTwin) -> None:
    unknown = await twin.client.post(
        f"{RECORD}/customer", json={"companyName": "X", "colour": "red"}
    )
    assert unknown.status_code == 400
    assert detail(unknown)["o:errorCode"] == "INVALID_FIELD"
    assert detail(unknown)["o:errorPath"] == "colour"
    job = await make_job(twin)
    wrong_type = await twin.client.post(
        f"{RECORD}/timebill", json=await timebill(twin, "TB-X", job, hours="lots")
    )
    assert wrong_type.status_code == 400
    assert detail(wrong_type)["o:errorCode"] == "INVALID_CONTENT"
    assert detail(wrong_type)["o:errorPath"] == "hours"
    bad_ref = await twin.client.put(
        f"{RECORD}/job/eid:P-X", json={"companyName": "X", "customer": {"id": "424242"}}
    )
    assert bad_ref.status_code == 400
    assert detail(bad_ref) | {"detail": ""} == {
        "detail": "",
        "o:errorCode": "INVALID_KEY_OR_REF",
        "o:errorPath": "customer",
    }
    missing = await twin.client.post(f"{RECORD}/job", json={"companyName": "No customer"})
    assert missing.status_code == 400 and detail(missing)["o:errorPath"] == "customer"
    not_json = await twin.client.post(
        f"{RECORD}/customer", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    not_object = await twin.client.post(f"{RECORD}/customer", json=[1, 2])
    assert not_object.status_code == 400
    put_internal = await twin.client.put(f"{RECORD}/customer/12", json={"companyName": "X"})
    assert put_internal.status_code == 400


async def test_missing_or_bad_auth_is_401(twin: ErpTwin) -> None:
    async with httpx.AsyncClient(base_url=twin.base_url) as anonymous:
        response = await anonymous.get(f"{RECORD}/customer")
        assert response.status_code == 401
        assert detail(response)["o:errorCode"] == "INVALID_LOGIN"
        bad = await anonymous.get(f"{RECORD}/customer", headers={"Authorization": "Bearer forged"})
        assert bad.status_code == 401
        token = await anonymous.post(
            "/oauth2/token",
            data=CLIENT_CREDENTIALS,
        )
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        assert (await anonymous.get(f"{RECORD}/customer", headers=bearer)).status_code == 200


# --------------------------------------------------------------------------- business rules


async def test_business_rules_answer_netsuite_errors(twin: ErpTwin) -> None:
    hold = await internal_id(twin, "customer", HOLD_CUSTOMER)
    credit = await twin.client.put(
        f"{RECORD}/job/eid:P-HOLD", json={"companyName": "Held", "customer": {"id": hold}}
    )
    assert credit.status_code == 400
    assert (detail(credit)["o:errorCode"], detail(credit)["o:errorPath"]) == (
        "CUSTOMER_CREDIT_HOLD",
        "customer",
    )
    inactive = await internal_id(twin, "department", INACTIVE_CC)
    customer = await internal_id(twin, "customer", CUSTOMER)
    dept = await twin.client.put(
        f"{RECORD}/job/eid:P-OLD",
        json={"companyName": "Old", "customer": {"id": customer}, "department": {"id": inactive}},
    )
    assert (detail(dept)["o:errorCode"], detail(dept)["o:errorPath"]) == (
        "INVALID_COST_CENTER",
        "department",
    )
    job = await make_job(twin)
    closed_period = await twin.client.post(
        f"{RECORD}/timebill", json=await timebill(twin, "TB-P", job, tranDate="2025-05-20")
    )
    assert (detail(closed_period)["o:errorCode"], detail(closed_period)["o:errorPath"]) == (
        "PERIOD_CLOSED",
        "tranDate",
    )
    no_period = await twin.client.post(
        f"{RECORD}/timebill", json=await timebill(twin, "TB-N", job, tranDate="2031-01-02")
    )
    assert detail(no_period)["o:errorCode"] == "PERIOD_CLOSED"
    wrong_cc = await twin.client.post(
        f"{RECORD}/timebill", json=await timebill(twin, "TB-D", job, department={"id": inactive})
    )
    assert detail(wrong_cc)["o:errorCode"] == "INVALID_COST_CENTER"
    posted = await twin.client.post(f"{RECORD}/timebill", json=await timebill(twin, "TB-1", job))
    assert posted.status_code == 204
    closed = await twin.client.patch(
        f"{RECORD}/job/{job}", json={"entityStatus": {"id": "1"}, "comments": "cancelled"}
    )
    assert closed.status_code == 204
    to_closed = await twin.client.post(f"{RECORD}/timebill", json=await timebill(twin, "TB-2", job))
    assert (detail(to_closed)["o:errorCode"], detail(to_closed)["o:errorPath"]) == (
        "PROJECT_CLOSED",
        "customer",
    )
    # An upsert that changes nothing is an idempotent retry: accepted although now closed.
    retry = await twin.client.put(
        f"{RECORD}/timebill/eid:TB-1", json=await timebill(twin, "TB-1", job)
    )
    assert retry.status_code == 204
    assert await twin.count("timebill") == 1


async def test_a_posting_is_reversed_once(twin: ErpTwin) -> None:
    job = await make_job(twin)
    await twin.client.post(f"{RECORD}/timebill", json=await timebill(twin, "TB-1", job))
    original = await internal_id(twin, "timebill", "TB-1")
    reversal = await timebill(
        twin, "TB-1-R", job, hours=-7.5, costAmount=-937.5, reverses={"id": original}
    )
    assert (await twin.client.post(f"{RECORD}/timebill", json=reversal)).status_code == 204
    again = await twin.client.post(f"{RECORD}/timebill", json=reversal | {"externalId": "TB-1-R2"})
    assert (detail(again)["o:errorCode"], detail(again)["o:errorPath"]) == (
        "ALREADY_REVERSED",
        "reverses",
    )
    record = (await twin.client.get(f"{RECORD}/timebill/eid:TB-1-R")).json()
    assert record["reverses"] == {"id": original}
    assert record["hours"] == -7.5 and record["costAmount"] == -937.5


BUDGET = f"{RECORD}/customrecord_pssync_budget"
FORECAST = f"{RECORD}/customrecord_pssync_labor_forecast"


def budget_body(job: str, amount: float, version: int) -> dict[str, Any]:
    return {
        "name": f"pssync budget, project {job}",
        "custrecord_pssync_budget_project": {"id": job},
        "custrecord_pssync_budget_amount": amount,
        "custrecord_pssync_budget_currency": {"id": "USD"},
        "custrecord_pssync_budget_version": version,
    }


async def test_budget_custom_record_is_read_and_upserted_by_external_id(twin: ErpTwin) -> None:
    job = await make_job(twin)
    url = f"{BUDGET}/eid:pssync-budget-{job}"
    missing = await twin.client.get(url)
    assert (missing.status_code, detail(missing)["o:errorCode"]) == (404, "NONEXISTENT_ID")
    created = await twin.client.put(url, json=budget_body(job, 1000, 1))
    assert created.status_code == 204
    ident = created.headers["location"].rsplit("/", 1)[-1]
    assert created.headers["location"] == f"{twin.base_url}{BUDGET}/{ident}"
    record = (await twin.client.get(url)).json()
    assert record == (await twin.client.get(f"{BUDGET}/{ident}")).json()
    assert (record["id"], record["externalId"]) == (ident, f"pssync-budget-{job}")
    assert record["custrecord_pssync_budget_project"] == {"id": job, "refName": "Project PRJ-1"}
    assert record["custrecord_pssync_budget_currency"] == {"id": "USD", "refName": "USD"}
    assert (
        record["custrecord_pssync_budget_amount"],
        record["custrecord_pssync_budget_version"],
    ) == (1000, 1)
    # The upsert again by the same external ID updates the one record. NetSuite applies no
    # version rule to a custom record (the connector compares before it writes): the twin
    # stores what it is sent.
    again = await twin.client.put(url, json=budget_body(job, 1500.25, 7))
    assert again.headers["location"] == created.headers["location"]
    record = (await twin.client.get(url)).json()
    assert (
        record["custrecord_pssync_budget_amount"],
        record["custrecord_pssync_budget_version"],
    ) == (1500.25, 7)
    assert await twin.count("customrecord_pssync_budget") == 1
    # The undocumented job sub-resources are gone.
    for path in (f"{RECORD}/job/{job}/budget", f"{RECORD}/job/{job}/laborForecast/2025-06"):
        assert (await twin.client.get(path)).status_code == 404


async def test_custom_records_check_mandatory_fields_references_and_types(
    twin: ErpTwin,
) -> None:
    job = await make_job(twin)
    body = budget_body(job, 1000, 1)
    no_project = {k: v for k, v in body.items() if k != "custrecord_pssync_budget_project"}
    refused = await twin.client.put(f"{BUDGET}/eid:B-1", json=no_project)
    assert (detail(refused)["o:errorCode"], detail(refused)["o:errorPath"]) == (
        "USER_ERROR",
        "custrecord_pssync_budget_project",
    )
    unknown_job = body | {"custrecord_pssync_budget_project": {"id": "98765"}}
    refused = await twin.client.put(f"{BUDGET}/eid:B-1", json=unknown_job)
    assert (detail(refused)["o:errorCode"], detail(refused)["o:errorPath"]) == (
        "INVALID_KEY_OR_REF",
        "custrecord_pssync_budget_project",
    )
    not_a_number = body | {"custrecord_pssync_budget_version": "two"}
    refused = await twin.client.put(f"{BUDGET}/eid:B-1", json=not_a_number)
    assert detail(refused)["o:errorCode"] == "INVALID_CONTENT"
    unknown_field = body | {"custrecord_pssync_budget_owner": "me"}
    refused = await twin.client.put(f"{BUDGET}/eid:B-1", json=unknown_field)
    assert detail(refused)["o:errorCode"] == "INVALID_FIELD"
    assert await twin.count("customrecord_pssync_budget") == 0


async def test_labor_forecast_custom_record_stores_what_finance_sets(twin: ErpTwin) -> None:
    job = await make_job(twin)
    url = f"{FORECAST}/eid:pssync-forecast-{job}-2025-06"
    assert (await twin.client.get(url)).status_code == 404
    body = {
        "name": f"pssync labor forecast, project {job}, 2025-06",
        "custrecord_pssync_lf_project": {"id": job},
        "custrecord_pssync_lf_period": "2025-06",
        "custrecord_pssync_lf_hours": 100,
        "custrecord_pssync_lf_labor_cost": 12500,
        "custrecord_pssync_lf_currency": {"id": "USD"},
        "custrecord_pssync_lf_status": "draft",
        "custrecord_pssync_lf_version": 1,
    }
    assert (await twin.client.put(url, json=body)).status_code == 204
    ident = (await twin.client.get(url)).json()["id"]
    # Finance approves it in NetSuite: an edit of the one field.
    approved = await twin.client.patch(
        f"{FORECAST}/{ident}", json={"custrecord_pssync_lf_status": "Approved"}
    )
    assert approved.status_code == 204
    record = (await twin.client.get(url)).json()
    assert (
        record["custrecord_pssync_lf_hours"],
        record["custrecord_pssync_lf_status"],
        record["custrecord_pssync_lf_version"],
    ) == (100, "Approved", 1)
    listed = await twin.client.get(FORECAST, params={"q": f"custrecord_pssync_lf_project IS {job}"})
    assert [item["id"] for item in listed.json()["items"]] == [ident]


# --------------------------------------------------------------------------- async jobs


async def test_async_upsert_job_flow(twin: ErpTwin) -> None:
    customer = await internal_id(twin, "customer", CUSTOMER)
    response = await twin.client.put(
        f"{RECORD}/job/eid:PRJ-A",
        json={"companyName": "Async", "customer": {"id": customer}},
        headers=ASYNC,
    )
    assert response.status_code == 202
    assert response.headers["preference-applied"] == "respond-async"
    location = response.headers["location"]
    assert "/services/rest/async/v1/job/" in location
    first = (await twin.client.get(location)).json()
    assert (first["completed"], first["progress"]) == (False, "pending")
    second = (await twin.client.get(location)).json()
    assert (second["completed"], second["progress"]) == (True, "succeeded")
    tasks = (await twin.client.get(f"{location}/task")).json()
    assert tasks["count"] == 1
    task_url = tasks["items"][0]["links"][0]["href"]
    task = (await twin.client.get(task_url)).json()
    assert task["completed"] is True and task["progress"] == "succeeded"
    result = (await twin.client.get(f"{task_url}/result")).json()
    job = (await twin.client.get(f"{RECORD}/job/eid:PRJ-A")).json()
    assert result["id"] == job["id"] and result["externalId"] == "PRJ-A"


async def test_repeated_idempotency_key_points_at_the_earlier_job(twin: ErpTwin) -> None:
    customer = await internal_id(twin, "customer", CUSTOMER)
    key = str(uuid.uuid4())
    headers = ASYNC | {"X-NetSuite-Idempotency-Key": key}
    body = {"companyName": "Once", "customer": {"id": customer}, "externalId": "PRJ-ONCE"}
    first = await twin.client.post(f"{RECORD}/job", json=body, headers=headers)
    assert first.status_code == 202
    again = await twin.client.post(f"{RECORD}/job", json=body, headers=headers)
    assert again.status_code == 400
    assert detail(again)["o:errorCode"] == "IDEMPOTENCY_ERROR"
    assert again.headers["location"] == first.headers["location"]
    assert await twin.count("job", "externalId IS PRJ-ONCE") == 1
    # Without a key NetSuite would try again: an add of a taken externalId fails by itself.
    third = await twin.client.post(f"{RECORD}/job", json=body, headers=ASYNC)
    tasks = await run_job(twin, third.headers["location"])
    assert tasks[0]["result"]["o:errorDetails"][0]["o:errorCode"] == "DUP_RCRD"
    assert await twin.count("job", "externalId IS PRJ-ONCE") == 1


async def test_malformed_idempotency_key_is_refused(twin: ErpTwin) -> None:
    response = await twin.client.put(
        f"{RECORD}/customer/eid:C-K",
        json={"companyName": "K"},
        headers=ASYNC | {"X-NetSuite-Idempotency-Key": "not-a-uuid"},
    )
    assert response.status_code == 400
    assert detail(response)["o:errorPath"] == "X-NetSuite-Idempotency-Key"
    assert await twin.count("customer", "externalId IS C-K") == 0


async def test_batch_reports_each_record(twin: ErpTwin) -> None:
    job = await make_job(twin)
    items = [await timebill(twin, f"TB-{n}", job) for n in range(4)]
    items[2] = items[2] | {"tranDate": f"{CLOSED_PERIOD}-15"}
    items.append({"customer": {"id": job}})  # no externalId
    items.append((await timebill(twin, "TB-9", job)) | {"colour": "red"})
    key = str(uuid.uuid4())
    response = await twin.client.post(
        f"{RECORD}/timebill",
        json={"items": items},
        headers=ASYNC | {"X-NetSuite-Idempotency-Key": key},
    )
    assert response.status_code == 202
    tasks = await run_job(twin, response.headers["location"])
    assert [t["progress"] for t in tasks] == [
        "succeeded",
        "succeeded",
        "failed",
        "succeeded",
        "failed",
        "failed",
    ]
    errors = [t["result"]["o:errorDetails"][0] for t in tasks if t["progress"] == "failed"]
    assert [(e["o:errorCode"], e.get("o:errorPath")) for e in errors] == [
        ("PERIOD_CLOSED", "tranDate"),
        ("USER_ERROR", "externalId"),
        ("INVALID_FIELD", "colour"),
    ]
    assert [tasks[i]["result"]["externalId"] for i in (0, 1, 3)] == ["TB-0", "TB-1", "TB-3"]
    job_status = (await twin.client.get(response.headers["location"])).json()
    assert job_status["progress"] == "partiallySucceeded"
    assert await twin.count("timebill") == 3
    # The same records again under a new key are upserts: still three.
    retry = await twin.client.post(
        f"{RECORD}/timebill",
        json={"items": items[:4]},
        headers=ASYNC | {"X-NetSuite-Idempotency-Key": str(uuid.uuid4())},
    )
    await run_job(twin, retry.headers["location"])
    assert await twin.count("timebill") == 3


async def test_rules_hold_between_the_records_of_one_batch(twin: ErpTwin) -> None:
    """A batch is written in one go at its end; the rules still see every earlier record of
    the same batch: a repeat is an upsert, a reversal finds its original, a second reversal
    of it is refused, and every id reported is the id the record has."""
    job = await make_job(twin)
    inactive = await internal_id(twin, "department", INACTIVE_CC)
    items = [
        await timebill(twin, "TB-A", job),
        await timebill(twin, "TB-R1", job, hours=-7.5, reverses={"externalId": "TB-A"}),
        await timebill(twin, "TB-B", job, department={"id": inactive}),
        await timebill(twin, "TB-R2", job, hours=-7.5, reverses={"externalId": "TB-A"}),
        await timebill(twin, "TB-A", job, hours=8),
        await timebill(twin, "TB-C", job),
    ]
    response = await twin.client.post(f"{RECORD}/timebill", json={"items": items}, headers=ASYNC)
    tasks = await run_job(twin, response.headers["location"])
    assert [t["progress"] for t in tasks] == [
        "succeeded",
        "succeeded",
        "failed",
        "failed",
        "succeeded",
        "succeeded",
    ]
    codes = [
        t["result"]["o:errorDetails"][0]["o:errorCode"]
        for t in tasks
        if "o:errorDetails" in t["result"]
    ]
    assert codes == ["INVALID_COST_CENTER", "ALREADY_REVERSED"]
    ids = {t["result"]["externalId"]: t["result"]["id"] for t in tasks if "id" in t["result"]}
    for external_id, ident in ids.items():
        assert await internal_id(twin, "timebill", external_id) == ident
    original = (await twin.client.get(f"{RECORD}/timebill/eid:TB-A")).json()
    assert original["hours"] == 8
    assert original["id"] == tasks[0]["result"]["id"] == tasks[4]["result"]["id"]
    reversal = (await twin.client.get(f"{RECORD}/timebill/eid:TB-R1")).json()
    assert reversal["reverses"] == {"id": original["id"]}
    assert await twin.count("timebill") == 3
    # Records created by a later single write get the next ids.
    single = await twin.client.post(f"{RECORD}/timebill", json=await timebill(twin, "TB-D", job))
    assert int(single.headers["location"].rsplit("/", 1)[-1]) > max(int(i) for i in ids.values())


async def test_batch_limits(twin: ErpTwin) -> None:
    too_many = {"items": [{"externalId": f"X{n}"} for n in range(201)]}
    response = await twin.client.post(f"{RECORD}/timebill", json=too_many, headers=ASYNC)
    assert response.status_code == 400 and detail(response)["o:errorPath"] == "items"
    sync = await twin.client.post(f"{RECORD}/timebill", json={"items": []})
    assert sync.status_code == 400


# --------------------------------------------------------------------------- faults


async def test_outage_is_503(twin: ErpTwin) -> None:
    await twin.faults(outage=True)
    response = await twin.client.get(f"{RECORD}/customer")
    assert response.status_code == 503
    assert detail(response)["o:errorCode"] == "SERVICE_UNAVAILABLE"
    await twin.faults()
    assert (await twin.client.get(f"{RECORD}/customer")).status_code == 200


async def test_concurrency_quota_is_429_without_retry_after(twin: ErpTwin) -> None:
    await twin.faults(quota_concurrency=1, latency_ms=200)
    responses = await asyncio.gather(*(twin.client.get(f"{RECORD}/customer") for _ in range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses[0] == 200 and statuses[-1] == 429
    refused = next(r for r in responses if r.status_code == 429)
    assert detail(refused)["o:errorCode"] == "CONCURRENCY_LIMIT_EXCEEDED"
    assert "retry-after" not in refused.headers
    stats = (await twin.client.get("/_admin/stats")).json()
    assert stats["throttled_429"] >= 1


async def test_load_firm_is_idempotent() -> None:
    app = erp.create_app()
    erp.load_firm(app, small_firm())
    erp.load_firm(app.state.twin, small_firm())
    async with erp_twin() as twin:
        assert await twin.count("department") == 2
        assert await twin.count("accountingPeriod") == 3
        assert await twin.count("customer") == 2
        rate = (await twin.client.get(f"{RECORD}/employee/eid:E1001")).json()
        assert rate["laborCost"] == 125.5
    with app.state.twin.session() as s:
        assert len(s.exec(select(erp.ErpCustomer)).all()) == 2


_OLD_BUDGET_TABLE = """CREATE TABLE erp_job_budget (job_id INTEGER NOT NULL PRIMARY KEY,
    amount VARCHAR NOT NULL, currency VARCHAR NOT NULL, budget_version INTEGER NOT NULL,
    last_modified DATETIME NOT NULL)"""
_OLD_FORECAST_TABLE = """CREATE TABLE erp_labor_forecast (id INTEGER NOT NULL PRIMARY KEY,
    job_id INTEGER NOT NULL, period_name VARCHAR NOT NULL, hours VARCHAR NOT NULL,
    labor_cost VARCHAR NOT NULL, currency VARCHAR NOT NULL, status VARCHAR NOT NULL,
    version INTEGER NOT NULL, last_modified DATETIME NOT NULL)"""


async def test_a_sandbox_home_from_before_the_custom_records_is_upgraded(tmp_path: Path) -> None:
    """Budgets and forecasts the twin kept under `job/{id}/...` become custom record entries
    the connector finds by external ID; a version-0 budget row ("none yet") becomes none."""
    path = tmp_path / "erp.db"
    app = erp.create_app(path)
    erp.load_firm(app, small_firm())
    with app.state.twin.session() as s:
        customer = s.exec(select(erp.ErpCustomer)).first()
        assert customer is not None and customer.id is not None
        jobs = [erp.ErpJob(company_name=f"Old {n}", customer_id=customer.id) for n in (1, 2)]
        s.add_all(jobs)
        s.commit()
        budgeted, unbudgeted = (int(job.id or 0) for job in jobs)
    app.state.twin.engine.dispose()
    with sqlite3.connect(path) as db:  # the tables as the twin made them before
        db.execute("DROP TABLE erp_job_budget")
        db.execute("DROP TABLE erp_labor_forecast")
        db.execute(_OLD_BUDGET_TABLE)
        db.execute(_OLD_FORECAST_TABLE)
        now = "2025-06-01 00:00:00"
        db.executemany(
            "INSERT INTO erp_job_budget VALUES (?, ?, 'USD', ?, ?)",
            [(budgeted, "80000", 2, now), (unbudgeted, "0", 0, now)],
        )
        db.execute(
            "INSERT INTO erp_labor_forecast VALUES (1, ?, '2025-06', '100', '12500', 'USD',"
            " 'approved', 3, ?)",
            (budgeted, now),
        )
    upgraded = erp.create_app(path)
    transport = httpx.ASGITransport(app=upgraded)
    async with httpx.AsyncClient(transport=transport, base_url="http://erp", headers=AUTH) as c:
        budget = (await c.get(f"{BUDGET}/eid:pssync-budget-{budgeted}")).json()
        assert budget["custrecord_pssync_budget_project"]["id"] == str(budgeted)
        assert (
            budget["custrecord_pssync_budget_amount"],
            budget["custrecord_pssync_budget_version"],
        ) == (80000, 2)
        assert (await c.get(f"{BUDGET}/eid:pssync-budget-{unbudgeted}")).status_code == 404
        forecast = (await c.get(f"{FORECAST}/eid:pssync-forecast-{budgeted}-2025-06")).json()
        assert (
            forecast["custrecord_pssync_lf_status"],
            forecast["custrecord_pssync_lf_version"],
        ) == (
            "approved",
            3,
        )
        # New entries go in beside the upgraded ones.
        new = budget_body(str(unbudgeted), 500, 1)
        created = await c.put(f"{BUDGET}/eid:pssync-budget-{unbudgeted}", json=new)
        assert created.status_code == 204
        listed = (await c.get(BUDGET)).json()
        assert listed["totalResults"] == 2
    upgraded.state.twin.engine.dispose()


async def test_lost_response_fault_processes_then_answers_504(twin: ErpTwin) -> None:
    await twin.client.post("/_admin/erp/lost-responses", json={"rate": 1.0})
    response = await twin.client.put(f"{RECORD}/customer/eid:C-L", json={"companyName": "Lost"})
    assert response.status_code == 504
    assert detail(response)["o:errorCode"] == "GATEWAY_TIMEOUT"
    report = (await twin.client.post("/_admin/erp/lost-responses", json={})).json()
    assert report["dropped"] == 1
    assert await twin.count("customer", "externalId IS C-L") == 1


async def test_mounted_under_a_prefix_links_keep_it() -> None:
    sandbox = create_sandbox(None)
    erp.load_firm(sandbox.state("erp"), small_firm())
    async with serve(sandbox.app) as base_url:
        async with httpx.AsyncClient(base_url=f"{base_url}/erp", headers=AUTH) as client:
            response = await client.put(
                f"{base_url}/erp{RECORD}/customer/eid:C-M", json={"companyName": "Mounted"}
            )
            assert response.status_code == 204
            location = response.headers["location"]
            assert location.startswith(f"{base_url}/erp{RECORD}/customer/")
            assert (await client.get(location)).json()["companyName"] == "Mounted"
