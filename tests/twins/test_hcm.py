"""The Workday twin over real HTTP: workers, paging, the changed-workers window, HR actions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from sandbox import hcm
from sandbox._twin import FaultConfig
from sandbox.seed import Firm, Worker, build_firm
from tests._servers import serve
from tests._twins import Clock, TwinApp, employee

TODAY = date(2025, 6, 15)
BASE = "/ccx/api/v1/acme/workers"
AUTH = {"Authorization": "Bearer dev-static-token"}


@dataclass
class Twin(TwinApp):
    client: httpx.AsyncClient
    clock: Clock
    firm: Firm

    def employee(self, n: int) -> Worker:
        return employee(self.firm, n, TODAY)


@pytest.fixture(scope="module")
async def twin() -> AsyncIterator[Twin]:
    firm = build_firm(5, workers=45, today=TODAY)
    clock = Clock(datetime(2025, 6, 15, 12, 0, tzinfo=UTC))
    app = hcm.create_app(None, tenant="acme", clock=clock)
    hcm.load_firm(app, firm)
    async with serve(app) as base, httpx.AsyncClient(base_url=base, headers=AUTH) as client:
        yield Twin(app, client, clock, firm)


@pytest.fixture(autouse=True)
def _reset(twin: Twin) -> None:
    twin.clock.now = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
    twin.state.set_faults(FaultConfig())


def error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert isinstance(body, dict) and isinstance(body["errors"], list), body
    assert body["error"] and body["errors"][0]["error"]
    detail: dict[str, Any] = body["errors"][0]
    return detail


async def window(twin: Twin, start: datetime, end: datetime, **params: Any) -> dict[str, Any]:
    response = await twin.client.get(
        BASE,
        params={"updatedFrom": start.isoformat(), "updatedThrough": end.isoformat(), **params},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --------------------------------------------------------------------------- reads


async def test_worker_is_workday_shaped(twin: Twin) -> None:
    w = twin.employee(0)
    body = (await twin.client.get(f"{BASE}/{w.wid}")).json()
    assert body["id"] == w.wid and len(body["id"]) == 32
    assert body["workerId"] == w.id
    assert body["descriptor"] == w.name
    assert body["primaryWorkEmail"] == w.email
    assert body["businessTitle"] == w.role
    assert body["jobProfile"]["descriptor"] == w.role
    assert body["location"]["descriptor"] == w.location
    assert body["costCenter"] == {"id": w.cost_center, "descriptor": w.practice}
    assert body["workerStatus"] == {
        "active": True,
        "onLeave": False,
        "hireDate": w.hire_date.isoformat(),
        "originalHireDate": w.hire_date.isoformat(),
        "terminated": False,
        "terminationDate": None,
        "terminationLastDayOfWork": None,
        "terminationReason": None,
    }
    assert body["lastUpdated"].endswith("Z")


async def test_worker_by_employee_id_reference(twin: Twin) -> None:
    w = twin.employee(0)
    body = (await twin.client.get(f"{BASE}/Employee_ID={w.id}")).json()
    assert body["id"] == w.wid


async def test_seeded_statuses(twin: Twin) -> None:
    by_id = {w["workerId"]: w for w in (await all_workers(twin))}
    for w in twin.firm.workers:
        status = by_id[w.id]["workerStatus"]
        if w.status == "terminated":
            assert status["terminated"] and not status["active"]
        elif w.hire_date > TODAY:
            assert not status["active"] and not status["terminated"]
        elif w.status == "leave":
            assert status["onLeave"] and status["active"]
        else:
            assert status["active"]


async def all_workers(twin: Twin, limit: int = 100) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        body = (await twin.client.get(BASE, params={"limit": limit, "offset": len(out)})).json()
        out += body["data"]
        if not body["data"] or len(out) >= body["total"]:
            return out


async def test_paging(twin: Twin) -> None:
    first = (await twin.client.get(BASE)).json()
    assert first["total"] == 45 and len(first["data"]) == 20
    workers = await all_workers(twin, limit=7)
    ids = [w["workerId"] for w in workers]
    assert len(ids) == 45 and len(set(ids)) == 45 and ids == sorted(ids)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
        ({"limit": "many"}, "limit"),
        ({"updatedFrom": "2025-06-01T00:00:00Z"}, "updatedThrough"),
        ({"updatedFrom": "yesterday", "updatedThrough": "2025-06-01T00:00:00Z"}, "updatedFrom"),
        (
            {"updatedFrom": "2025-06-02T00:00:00Z", "updatedThrough": "2025-06-01T00:00:00Z"},
            "updatedThrough",
        ),
    ],
)
async def test_bad_parameters_are_400(twin: Twin, params: dict[str, Any], field: str) -> None:
    response = await twin.client.get(BASE, params=params)
    assert response.status_code == 400
    assert error(response)["field"] == field


async def test_unknown_worker_and_tenant_are_404(twin: Twin) -> None:
    for path in (f"{BASE}/{'0' * 32}", f"{BASE}/Employee_ID=99999", "/ccx/api/v1/other/workers"):
        response = await twin.client.get(path)
        assert response.status_code == 404
        assert error(response)["code"] == "NOT_FOUND"


async def test_missing_auth_is_401(twin: Twin) -> None:
    response = await twin.client.get(BASE, headers={"Authorization": ""})
    assert response.status_code == 401
    assert error(response)["code"]


async def test_throttling_sends_retry_after(twin: Twin) -> None:
    twin.state.set_faults(FaultConfig(rate_limit_rate=1.0, retry_after_s=7))
    response = await twin.client.get(BASE)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert error(response)["code"] == "REQUEST_LIMIT_EXCEEDED"
    twin.state.set_faults(FaultConfig(outage=True))
    assert (await twin.client.get(BASE)).status_code == 503


# --------------------------------------------------------------------------- the window


async def test_future_dated_termination_is_in_the_window_of_its_entry(twin: Twin) -> None:
    w = twin.employee(1)
    entered = datetime(2025, 6, 15, 12, 0, 0, 250_000, tzinfo=UTC)
    twin.clock.now = entered
    effective = date(2025, 7, 31)
    response = await twin.client.post(
        f"{BASE}/{w.wid}/terminate",
        json={"terminationDate": "2025-07-31", "lastDayOfWork": "2025-07-29", "reason": "Move"},
    )
    assert response.status_code == 200, response.text
    event = response.json()
    assert event["type"] == "terminate" and event["status"] == "Successfully Completed"
    assert event["effectiveDate"] == "2025-07-31"
    assert event["entryMoment"] == "2025-06-15T12:00:00.250Z"

    inside = await window(twin, entered - timedelta(minutes=5), entered + timedelta(minutes=5))
    (found,) = [d for d in inside["data"] if d["workerId"] == w.id]
    assert [e["type"] for e in found["events"]] == ["terminate"]
    assert found["events"][0]["effectiveDate"] == effective.isoformat()
    assert found["events"][0]["entryMoment"] == "2025-06-15T12:00:00.250Z"
    # Entered now, effective later: visible, not yet terminated.
    assert found["workerStatus"]["terminationDate"] == "2025-07-31"
    assert found["workerStatus"]["terminationLastDayOfWork"] == "2025-07-29"
    assert found["workerStatus"]["terminated"] is False
    assert found["workerStatus"]["active"] is True

    # Half-open: [from, through) — the entry moment belongs to the window that starts at it.
    at_start = await window(twin, entered, entered + timedelta(milliseconds=1))
    assert w.id in {d["workerId"] for d in at_start["data"]}
    ending_at = await window(twin, entered - timedelta(hours=1), entered)
    assert w.id not in {d["workerId"] for d in ending_at["data"]}
    after = await window(twin, entered + timedelta(milliseconds=1), entered + timedelta(days=60))
    assert w.id not in {d["workerId"] for d in after["data"]}
    # Nor on the effective date: the window is about entry, not effect.
    on_effect = await window(
        twin,
        datetime(2025, 7, 31, tzinfo=UTC),
        datetime(2025, 8, 1, tzinfo=UTC),
    )
    assert w.id not in {d["workerId"] for d in on_effect["data"]}

    # Once the termination date has passed the worker is terminated.
    twin.clock.now = datetime(2025, 8, 1, 9, 0, tzinfo=UTC)
    status = (await twin.client.get(f"{BASE}/{w.wid}")).json()["workerStatus"]
    assert status["terminated"] is True and status["active"] is False


async def test_window_accepts_offsets(twin: Twin) -> None:
    w = twin.employee(2)
    twin.clock.now = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
    await twin.client.post(f"{BASE}/{w.wid}/terminate", json={"terminationDate": "2025-06-30"})
    # 07:59-04:00 is 11:59Z: the entry at 12:00Z is inside.
    body = await twin.client.get(
        BASE,
        params={
            "updatedFrom": "2025-06-15T07:59:00-04:00",
            "updatedThrough": "2025-06-15T12:01:00Z",
        },
    )
    assert w.id in {d["workerId"] for d in body.json()["data"]}


async def test_window_pages(twin: Twin) -> None:
    twin.clock.now = moment = datetime(2025, 6, 16, 8, 0, tzinfo=UTC)
    workers = [twin.employee(n) for n in range(3, 8)]
    for w in workers:
        response = await twin.client.post(
            f"{BASE}/{w.wid}/terminate", json={"terminationDate": "2025-09-30"}
        )
        assert response.status_code == 200
    seen: list[str] = []
    offset = 0
    while True:
        body = await window(twin, moment, moment + timedelta(seconds=1), limit=2, offset=offset)
        assert body["total"] == 5
        seen += [d["workerId"] for d in body["data"]]
        offset += len(body["data"])
        if offset >= body["total"]:
            break
    assert sorted(seen) == sorted(w.id for w in workers)


async def test_seed_history_is_in_the_past(twin: Twin) -> None:
    pending = next(
        w for w in twin.firm.workers if w.termination_date and w.termination_date > TODAY
    )
    assert pending.termination_entered_at is not None
    body = await window(
        twin,
        pending.termination_entered_at - timedelta(seconds=1),
        pending.termination_entered_at + timedelta(seconds=1),
    )
    (found,) = [d for d in body["data"] if d["workerId"] == pending.id]
    assert found["events"][0]["type"] == "terminate"
    assert found["workerStatus"]["terminationDate"] == str(pending.termination_date)


# --------------------------------------------------------------------------- HR actions


async def test_rescind_undoes_the_termination(twin: Twin) -> None:
    w = twin.employee(8)
    url = f"{BASE}/{w.wid}"
    await twin.client.post(f"{url}/terminate", json={"terminationDate": "2025-07-15"})
    twin.clock.now = rescinded_at = datetime(2025, 6, 17, 10, 0, tzinfo=UTC)
    response = await twin.client.post(f"{url}/rescindTermination")
    assert response.status_code == 200
    assert response.json()["type"] == "rescind"
    assert response.json()["worker"]["workerStatus"]["terminationDate"] is None
    body = await window(twin, rescinded_at, rescinded_at + timedelta(seconds=1))
    (found,) = [d for d in body["data"] if d["workerId"] == w.id]
    assert [(e["type"], e["effectiveDate"]) for e in found["events"]] == [("rescind", "2025-07-15")]
    again = await twin.client.post(f"{url}/rescindTermination", json={})
    assert again.status_code == 400 and error(again)["code"] == "NO_TERMINATION"


async def test_rehire_after_termination(twin: Twin) -> None:
    w = twin.employee(9)
    url = f"{BASE}/{w.wid}"
    await twin.client.post(f"{url}/terminate", json={"terminationDate": "2025-06-01"})
    early = await twin.client.post(f"{url}/rehire", json={"hireDate": "2025-06-01"})
    assert early.status_code == 400 and error(early)["field"] == "hireDate"
    response = await twin.client.post(f"{url}/rehire", json={"hireDate": "2025-06-10"})
    assert response.status_code == 200
    status = response.json()["worker"]["workerStatus"]
    assert status["active"] and status["hireDate"] == "2025-06-10"
    assert status["originalHireDate"] == w.hire_date.isoformat()
    active = twin.employee(10)
    refused = await twin.client.post(f"{BASE}/{active.wid}/rehire", json={"hireDate": "2025-07-01"})
    assert error(refused)["code"] == "WORKER_NOT_TERMINATED"


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"terminationDate": "1990-01-01"}, "TERMINATION_BEFORE_HIRE", "terminationDate"),
        (
            {"terminationDate": "2025-07-01", "lastDayOfWork": "2025-07-02"},
            "LAST_DAY_AFTER_TERMINATION",
            "lastDayOfWork",
        ),
        (
            {"terminationDate": "2025-07-01", "lastDayOfWork": "1990-01-01"},
            "LAST_DAY_BEFORE_HIRE",
            "lastDayOfWork",
        ),
        ({"terminationDate": "soon"}, "INVALID_FIELD", "terminationDate"),
        ({"terminationDate": 20250701}, "INVALID_FIELD", "terminationDate"),
        ({}, "INVALID_FIELD", "terminationDate"),
        ({"terminationDate": "2025-07-01", "severance": True}, "INVALID_FIELD", "severance"),
    ],
)
async def test_termination_refusals(
    twin: Twin, body: dict[str, Any], code: str, field: str
) -> None:
    w = twin.employee(11)
    response = await twin.client.post(f"{BASE}/{w.wid}/terminate", json=body)
    assert response.status_code == 400
    detail = error(response)
    assert (detail["code"], detail["field"]) == (code, field)
    status = (await twin.client.get(f"{BASE}/{w.wid}")).json()["workerStatus"]
    assert status["terminationDate"] is None


async def test_second_termination_is_refused(twin: Twin) -> None:
    w = twin.employee(12)
    first = await twin.client.post(
        f"{BASE}/{w.wid}/terminate", json={"terminationDate": "2025-08-01"}
    )
    assert first.status_code == 200
    second = await twin.client.post(
        f"{BASE}/{w.wid}/terminate", json={"terminationDate": "2025-09-01"}
    )
    assert second.status_code == 400 and error(second)["code"] == "TERMINATION_EXISTS"


@pytest.mark.parametrize("raw", [b"{nope", b"[]", b'{"reason": 5}'])
async def test_malformed_bodies_are_400(twin: Twin, raw: bytes) -> None:
    w = twin.employee(13)
    for action in ("terminate", "rescindTermination"):
        response = await twin.client.post(
            f"{BASE}/{w.wid}/{action}", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, (action, response.text)
