"""The PSA twin over real HTTP: Kantata's response shape, paging and side-loading, its
business refusals, vendor-shaped errors (never a 500), 429 without Retry-After, and signed
outbound events delivered with retries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from standardwebhooks import Webhook, WebhookVerificationError

from contracts.settings import DEV_WEBHOOK_SECRET
from sandbox import psa
from sandbox._twin import WebhookSender
from sandbox.seed import build_firm
from tests._servers import serve

AUTH = {"Authorization": "Bearer dev-static-token"}


@pytest.fixture
async def twin() -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = psa.create_app()
    async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        yield app, client


class Receiver:
    """A webhook receiver that verifies Standard Webhooks signatures; answers 503 to the
    first `fail_first` deliveries."""

    def __init__(self, secret: str = DEV_WEBHOOK_SECRET, fail_first: int = 0) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.attempts = 0
        self.events: list[dict[str, Any]] = []
        self.got = asyncio.Event()
        self.app = FastAPI()
        self.app.post("/hook")(self.hook)

    async def hook(self, request: Request) -> Response:
        self.attempts += 1
        body = await request.body()
        Webhook(self.secret).verify(body, dict(request.headers))  # raises when forged
        if self.attempts <= self.fail_first:
            return Response(status_code=503)
        self.events.append({"id": request.headers["webhook-id"], **json.loads(body)})
        self.got.set()
        return Response(status_code=204)


async def ws(client: httpx.AsyncClient, **fields: Any) -> str:
    body = {"title": "Apollo", "currency": "USD", **fields}
    r = await client.post("/api/v1/workspaces.json", json={"workspace": body})
    assert r.status_code == 200, r.text
    return str(r.json()["results"][0]["id"])


async def time_entry(client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    return await client.post("/api/v1/time_entries.json", json={"time_entry": fields})


async def logged(client: httpx.AsyncClient, wid: str, uid: int, minutes: int) -> dict[str, Any]:
    """A time entry of `minutes` on 2025-03-03, as the PSA answers it."""
    r = await time_entry(
        client, workspace_id=wid, user_id=uid, date_performed="2025-03-03", time_in_minutes=minutes
    )
    return only(r.json())


async def approve(client: httpx.AsyncClient, entry: dict[str, Any]) -> httpx.Response:
    url = f"/api/v1/time_entries/{entry['id']}.json"
    return await client.put(url, json={"time_entry": {"approved": True}})


@contextlib.asynccontextmanager
async def hooked_twin(
    receiver: Receiver, *, base_delay_s: float | None = None
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The twin sending its events to `receiver` (retrying after `base_delay_s`), and a client."""
    async with serve(receiver.app) as hook_url:
        app = psa.create_app(webhook_url=f"{hook_url}/hook")
        if base_delay_s is not None:
            app.state.twin.webhooks.base_delay_s = base_delay_s
        async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as client:
            yield app, client


def only(body: dict[str, Any]) -> dict[str, Any]:
    first = body["results"][0]
    obj: dict[str, Any] = body[first["key"]][first["id"]]
    return obj


def error_of(r: httpx.Response) -> dict[str, Any]:
    err: dict[str, Any] = r.json()["errors"][0]
    assert err["type"] in ("validation", "system", "oauth")
    assert err["message"]
    return err


async def test_response_shape_paging_and_include(twin: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = twin
    ids = [await ws(client, title=f"Project {i}") for i in range(25)]
    body = (await client.get("/api/v1/workspaces.json")).json()
    assert body["count"] == 25
    assert body["meta"] == {"count": 25, "page_count": 2, "page_number": 1, "page_size": 20}
    assert [r["key"] for r in body["results"]] == ["workspaces"] * 20
    assert all(isinstance(r["id"], str) and r["id"].isdigit() for r in body["results"])
    assert set(body["workspaces"]) == {r["id"] for r in body["results"]}
    page2 = (await client.get("/api/v1/workspaces.json", params={"page": 2})).json()
    assert len(page2["results"]) == 5 and page2["meta"]["page_number"] == 2
    big = (await client.get("/api/v1/workspaces.json", params={"per_page": 500})).json()
    assert big["meta"]["page_size"] == 200 and len(big["results"]) == 25
    picked = (
        await client.get("/api/v1/workspaces.json", params={"only": f"{ids[3]},{ids[7]}"})
    ).json()
    assert sorted(r["id"] for r in picked["results"]) == sorted([ids[3], ids[7]])

    first = ids[0]
    parent = only(
        (
            await client.post(
                "/api/v1/stories.json", json={"story": {"workspace_id": first, "title": "Phase"}}
            )
        ).json()
    )
    child = only(
        (
            await client.post(
                "/api/v1/stories.json",
                json={"story": {"workspace_id": first, "title": "Task", "parent_id": parent["id"]}},
            )
        ).json()
    )
    assert child["parent_id"] == parent["id"] and child["root_id"] == parent["id"]
    loaded = (
        await client.get(f"/api/v1/workspaces/{first}.json", params={"include": "stories"})
    ).json()
    assert only(loaded)["story_ids"] == [parent["id"], child["id"]]
    assert set(loaded["stories"]) == {parent["id"], child["id"]}
    assert loaded["stories"][child["id"]]["workspace_id"] == first

    bad = await client.get("/api/v1/workspaces.json", params={"include": "nonsense"})
    assert bad.status_code == 400 and error_of(bad)["field"] == "include"


async def test_create_archive_and_unarchive_workspace(
    twin: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = twin
    missing = await client.post("/api/v1/workspaces.json", json={"workspace": {"title": " "}})
    assert missing.status_code == 422 and error_of(missing)["field"] == "title"
    wid = await ws(client, start_date="2025-01-01", due_date="2025-06-30", price_in_cents=100)
    r = await client.put(f"/api/v1/workspaces/{wid}.json", json={"workspace": {"archived": True}})
    archived = only(r.json())
    assert archived["archived"] is True and archived["status"]["message"] == "Archived"
    listed = (await client.get("/api/v1/workspaces.json")).json()
    assert listed["count"] == 0
    listed = (await client.get("/api/v1/workspaces.json", params={"include_archived": True})).json()
    assert listed["count"] == 1
    edit = await client.put(f"/api/v1/workspaces/{wid}.json", json={"workspace": {"title": "X"}})
    assert edit.status_code == 422 and error_of(edit)["field"] == "archived"
    story = await client.post(
        "/api/v1/stories.json", json={"story": {"workspace_id": wid, "title": "Late"}}
    )
    assert story.status_code == 422 and error_of(story)["field"] == "workspace_id"
    again = await client.put(
        f"/api/v1/workspaces/{wid}.json", json={"workspace": {"archived": True}}
    )
    assert only(again.json())["lock_version"] == archived["lock_version"]  # no-op repeat
    back = await client.put(
        f"/api/v1/workspaces/{wid}.json", json={"workspace": {"archived": False}}
    )
    assert only(back.json())["archived"] is False
    assert only(back.json())["status"]["message"] == "In Progress"


async def test_time_refused_for_inactive_resource_and_archived_workspace(
    twin: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = twin
    wid = await ws(client)
    active = psa.add_user(app, full_name="Ada", role="Consultant", start_date=date(2024, 1, 1))
    inactive = psa.add_user(app, full_name="Bob", active=False)
    closed = psa.add_user(app, full_name="Cy", time_entry_closed_after=date(2025, 3, 31))
    base = {"workspace_id": wid, "time_in_minutes": 60}

    ok = await time_entry(client, **base, user_id=active, date_performed="2025-03-03")
    assert ok.status_code == 200, ok.text
    entry = only(ok.json())
    assert (
        entry["approved"] is False and entry["lock_version"] == 1 and entry["role"] == "Consultant"
    )

    cases = [
        ({"user_id": inactive, "date_performed": "2025-03-03"}, "user_id"),
        ({"user_id": closed, "date_performed": "2025-04-01"}, "date_performed"),
        ({"user_id": active, "date_performed": "2023-12-31"}, "date_performed"),
        ({"user_id": 999, "date_performed": "2025-03-03"}, "user_id"),
        (
            {"user_id": active, "date_performed": "2025-03-03", "time_in_minutes": 0},
            "time_in_minutes",
        ),
        (
            {"user_id": active, "date_performed": "2025-03-03", "time_in_minutes": 1441},
            "time_in_minutes",
        ),
    ]
    for fields, field in cases:
        r = await time_entry(client, **{**base, **fields})
        assert r.status_code == 422, (fields, r.text)
        assert error_of(r) == {
            "type": "validation",
            "message": error_of(r)["message"],
            "field": field,
        }
    assert (
        await time_entry(client, **base, user_id=closed, date_performed="2025-03-31")
    ).status_code == 200

    await client.put(f"/api/v1/workspaces/{wid}.json", json={"workspace": {"archived": True}})
    r = await time_entry(client, **base, user_id=active, date_performed="2025-03-04")
    assert r.status_code == 422 and error_of(r)["field"] == "workspace_id"


async def test_approved_and_invoiced_entries_are_locked(
    twin: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = twin
    wid = await ws(client)
    uid = psa.add_user(app, full_name="Ada")
    entry = await logged(client, wid, uid, 90)
    url = f"/api/v1/time_entries/{entry['id']}.json"
    approved = only((await approve(client, entry)).json())
    assert approved["approved"] is True and approved["lock_version"] == 2
    locked = await client.put(url, json={"time_entry": {"time_in_minutes": 30}})
    assert locked.status_code == 422 and error_of(locked)["field"] == "approved"

    inv = await client.post(
        "/api/v1/invoices.json",
        json={"invoice": {"reference_number": "INV-1", "time_entry_ids": [entry["id"]]}},
    )
    assert inv.status_code == 200, inv.text
    invoice = only(inv.json())
    assert invoice["time_entry_ids"] == [entry["id"]]
    twice = await client.post(
        "/api/v1/invoices.json", json={"invoice": {"time_entry_ids": [entry["id"]]}}
    )
    assert twice.status_code == 422 and error_of(twice)["field"] == "time_entry_ids"
    edit = await client.put(url, json={"time_entry": {"approved": False}})
    assert edit.status_code == 422 and error_of(edit)["field"] == "is_invoiced"

    cancelled = await client.put(f"/api/v1/invoices/{invoice['id']}/cancel.json")
    assert only(cancelled.json())["state"] == "cancelled"
    fresh = only((await client.get(url)).json())
    assert fresh["is_invoiced"] is False and fresh["invoice_id"] is None
    reopened = await client.put(
        url, json={"time_entry": {"approved": False, "time_in_minutes": 30}}
    )
    assert only(reopened.json())["time_in_minutes"] == 30


async def test_events_are_signed_thin_and_cover_every_trigger() -> None:
    receiver = Receiver()
    async with hooked_twin(receiver) as (app, client):
        wid = await ws(client, change_orders_enabled=True)
        uid = psa.add_user(app, full_name="Ada")
        entry = await logged(client, wid, uid, 60)
        await approve(client, entry)
        # Approving again changes nothing and emits nothing.
        await approve(client, entry)
        expense = only(
            (
                await client.post(
                    "/api/v1/expenses.json",
                    json={
                        "expense": {
                            "workspace_id": wid,
                            "user_id": uid,
                            "date": "2025-03-03",
                            "amount_in_cents": 1250,
                        }
                    },
                )
            ).json()
        )
        await client.put(
            f"/api/v1/expenses/{expense['id']}.json", json={"expense": {"approved": True}}
        )
        assignment = only(
            (
                await client.post(
                    "/api/v1/assignments.json",
                    json={
                        "assignment": {
                            "workspace_id": wid,
                            "user_id": uid,
                            "role": "Consultant",
                            "start_date": "2025-03-01",
                            "end_date": "2025-06-30",
                            "allocated_minutes": 4800,
                        }
                    },
                )
            ).json()
        )
        a_url = f"/api/v1/assignments/{assignment['id']}.json"
        await client.put(a_url, json={"assignment": {"end_date": "2025-05-31"}})
        assert (await client.delete(a_url)).status_code == 204
        await client.post(
            "/api/v1/change_orders.json",
            json={
                "change_order": {
                    "workspace_id": wid,
                    "title": "More design",
                    "budget_delta_in_cents": 500000,
                    "requested_by": "dana",
                    "lines": [{"role": "Designer", "minutes_delta": 2400}],
                }
            },
        )
        ms = only(
            (
                await client.post(
                    "/api/v1/billing_milestones.json",
                    json={"billing_milestone": {"workspace_id": wid, "title": "Kickoff"}},
                )
            ).json()
        )
        await client.put(
            f"/api/v1/billing_milestones/{ms['id']}.json",
            json={"billing_milestone": {"state": "completed"}},
        )
        await app.state.twin.webhooks.drain(10)
    types = [e["type"] for e in receiver.events]
    assert sorted(types) == sorted(
        [
            "time_entry.approved",
            "expense.approved",
            "assignment.changed",
            "assignment.changed",
            "assignment.changed",
            "change_order.submitted",
            "billing_milestone.completed",
        ]
    )
    approved = next(e for e in receiver.events if e["type"] == "time_entry.approved")
    assert approved["data"] == {"workspace_id": wid, "time_entry_id": entry["id"], "version": 2}
    changes = [e["data"] for e in receiver.events if e["type"] == "assignment.changed"]
    assert [(c["action"], c["version"]) for c in sorted(changes, key=lambda c: c["version"])] == [
        ("created", 1),
        ("updated", 2),
        ("deleted", 3),
    ]
    assert len({e["id"] for e in receiver.events}) == len(receiver.events)


async def test_forged_signature_is_detectable() -> None:
    sender = WebhookSender(None, DEV_WEBHOOK_SECRET)
    body, headers = sender.signed_request("evt_1", {"type": "x", "data": {}})
    Webhook(DEV_WEBHOOK_SECRET).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA==").verify(body, headers)


async def test_delivery_retried_when_receiver_answers_503() -> None:
    receiver = Receiver(fail_first=2)
    async with hooked_twin(receiver, base_delay_s=0.01) as (app, client):
        wid = await ws(client)
        uid = psa.add_user(app, full_name="Ada")
        await approve(client, await logged(client, wid, uid, 60))
        await app.state.twin.webhooks.drain(10)
        deliveries = (await client.get("/_admin/webhooks/deliveries")).json()
    assert receiver.attempts == 3
    assert [e["type"] for e in receiver.events] == ["time_entry.approved"]
    assert deliveries[0]["delivered"] is True and deliveries[0]["attempts"] == 3


async def test_bad_input_gets_vendor_errors_never_500(
    twin: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = twin
    wid = await ws(client)
    uid = psa.add_user(app, full_name="Ada")
    good = {"workspace_id": wid, "user_id": uid, "date_performed": "2025-03-03"}
    requests: list[tuple[str, str, dict[str, Any]]] = [
        (
            "POST",
            "/api/v1/time_entries.json",
            {"json": {"time_entry": {**good, "time_in_minutes": "lots"}}},
        ),
        ("POST", "/api/v1/time_entries.json", {"json": {"time_entry": {**good, "colour": "red"}}}),
        ("POST", "/api/v1/time_entries.json", {"json": {**good, "time_in_minutes": 5}}),
        (
            "POST",
            "/api/v1/time_entries.json",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
        ),
        (
            "POST",
            "/api/v1/time_entries.json",
            {"json": {"time_entry": {**good, "date_performed": "yesterday"}}},
        ),
        ("GET", "/api/v1/time_entries/abc.json", {}),
        ("GET", "/api/v1/time_entries/424242.json", {}),
        ("GET", "/api/v1/workspaces.json", {"params": {"only": "1,x"}}),
        ("GET", "/api/v1/workspaces.json", {"params": {"order": "secret:asc"}}),
        ("GET", "/api/v1/workspaces.json", {"params": {"page": 0}}),
        ("GET", "/api/v1/time_entries.json", {"params": {"updated_after": "soon"}}),
        ("GET", "/api/v1/external_references.json", {}),
        (
            "PUT",
            f"/api/v1/workspaces/{wid}.json",
            {"json": {"workspace": {"target_margin": "high"}}},
        ),
        (
            "POST",
            "/api/v1/external_references/create_or_update",
            {
                "json": {
                    "external_reference": {
                        "subject_type": "Spaceship",
                        "subject_id": 1,
                        "service_name": "x",
                        "service_model": "y",
                        "service_model_ref": "z",
                    }
                }
            },
        ),
        (
            "POST",
            "/api/v1/assignments.json",
            {
                "json": {
                    "assignment": {
                        "workspace_id": wid,
                        "role": "Dev",
                        "start_date": "2025-03-02",
                        "end_date": "2025-03-01",
                    }
                }
            },
        ),
    ]
    for method, path, kwargs in requests:
        r = await client.request(method, path, **kwargs)
        assert r.status_code in (400, 404, 422), (method, path, r.status_code, r.text)
        error_of(r)
    unauthenticated = await client.get("/api/v1/workspaces.json", headers={"Authorization": ""})
    assert unauthenticated.status_code == 401 and error_of(unauthenticated)["type"] == "oauth"
    stats = (await client.get("/_admin/stats")).json()
    assert stats["errors_5xx"] == 0


async def test_rate_limit_answers_429_without_retry_after(
    twin: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = twin
    await client.post("/_admin/faults", json={"rate_limit_rate": 1.0})
    r = await client.get("/api/v1/workspaces.json")
    assert r.status_code == 429
    assert "retry-after" not in r.headers
    assert error_of(r)["type"] == "system"
    await client.post("/_admin/faults", json={})
    assert (await client.get("/api/v1/workspaces.json")).status_code == 200


async def test_external_reference_create_or_update_is_one_per_subject_and_model(
    twin: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = twin
    wid = await ws(client)
    ref = {
        "subject_type": "Workspace",
        "subject_id": wid,
        "service_name": "pssync",
        "service_model": "enterprise_project",
        "service_model_ref": "01HZZZZZZZZZZZZZZZZZZZZZZZ",
    }
    url = "/api/v1/external_references/create_or_update"
    first = only((await client.post(url, json={"external_reference": ref})).json())
    assert first["status"] == "pending"
    second = only(
        (
            await client.post(url, json={"external_reference": {**ref, "status": "successful"}})
        ).json()
    )
    assert second["id"] == first["id"] and second["status"] == "successful"
    found = (
        await client.get(
            "/api/v1/external_references.json",
            params={"subject_type": "Workspace", "service_model_ref": ref["service_model_ref"]},
        )
    ).json()
    assert found["count"] == 1 and only(found)["subject_id"] == wid
    missing = await client.post(url, json={"external_reference": {**ref, "subject_id": 9999}})
    assert missing.status_code == 422 and error_of(missing)["field"] == "subject_id"


async def test_change_order_states_and_milestone_rules(
    twin: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = twin
    disabled = await ws(client)
    co = {"workspace_id": disabled, "title": "More", "requested_by": "dana"}
    refused = await client.post("/api/v1/change_orders.json", json={"change_order": co})
    assert refused.status_code == 422 and error_of(refused)["field"] == "workspace_id"
    wid = await ws(client, change_orders_enabled=True)
    created = only(
        (
            await client.post(
                "/api/v1/change_orders.json", json={"change_order": {**co, "workspace_id": wid}}
            )
        ).json()
    )
    url = f"/api/v1/change_orders/{created['id']}.json"
    bad = await client.put(url, json={"change_order": {"state": "applied"}})
    assert bad.status_code == 422 and error_of(bad)["field"] == "state"
    for state in ("approved", "applied"):
        assert (
            only((await client.put(url, json={"change_order": {"state": state}})).json())["state"]
            == state
        )
    stale = await client.put(url, json={"change_order": {"state": "approved", "lock_version": 1}})
    assert stale.status_code == 409


async def test_load_firm_maps_workers_to_users_with_external_references(
    twin: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = twin
    firm = build_firm(7, today=date(2025, 6, 15))
    psa.load_firm(app, firm)
    users = (await client.get("/api/v1/users.json", params={"per_page": 200})).json()
    assert users["count"] == len(firm.workers)
    refs = (
        await client.get(
            "/api/v1/external_references.json",
            params={"subject_type": "User", "service_model": "hcm_worker", "per_page": 200},
        )
    ).json()
    user_of = {
        r["service_model_ref"]: r["subject_id"] for r in refs["external_references"].values()
    }
    assert set(user_of) == {w.id for w in firm.workers}

    def user(worker_id: str) -> dict[str, Any]:
        return dict(users["users"][user_of[worker_id]])

    worker = next(w for w in firm.workers if w.status == "active" and w.termination_date is None)
    u = user(worker.id)
    assert (u["full_name"], u["email_address"], u["role"]) == (
        worker.name,
        worker.email,
        worker.role,
    )
    assert u["active"] is True and u["start_date"] == worker.hire_date.isoformat()
    assert u["cost_rate_in_cents"] == int(worker.cost_rate * 100)
    gone = next(w for w in firm.workers if w.status == "terminated")
    assert user(gone.id)["active"] is False
    assert user(gone.id)["time_entry_closed_after"] == gone.last_day_worked.isoformat()
    leaving = next(w for w in firm.workers if w.status == "active" and w.termination_date)
    assert user(leaving.id)["time_entry_closed_after"] is None  # the saga closes it

    cards = (
        await client.get("/api/v1/rate_cards.json", params={"include": "rate_card_roles"})
    ).json()
    assert cards["count"] == len(firm.rate_cards)
    card_refs = (
        await client.get("/api/v1/external_references.json", params={"subject_type": "RateCard"})
    ).json()
    first = firm.rate_cards[0]
    card_id = next(
        r["subject_id"]
        for r in card_refs["external_references"].values()
        if r["service_model_ref"] == first.id
    )
    roles = {
        (role["role"], role["rate_in_cents"], role["effective_from"])
        for role in cards["rate_card_roles"].values()
        if role["rate_card_id"] == card_id
    }
    assert roles == {
        (line.role, int(line.bill_rate * 100), line.effective_from.isoformat())
        for line in first.lines
    }


async def test_posts_on_a_workspace_activity_feed(
    twin: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = twin
    wid = await ws(client)
    other = await ws(client, title="Other")
    user = psa.add_user(app, full_name="Rita Resource", role="Resource Manager")
    body = {
        "workspace_id": wid,
        "message": "Change order approved",
        "recipient_ids": [user],
        "recipient_roles": ["resource_managers"],
    }
    created = await client.post("/api/v1/posts.json", json={"post": body})
    assert created.status_code == 200, created.text
    post = only(created.json())
    assert created.json()["results"] == [{"key": "posts", "id": post["id"]}]
    assert post["workspace_id"] == wid and post["message"] == "Change order approved"
    assert post["recipient_ids"] == [str(user)]
    assert post["recipient_roles"] == ["resource_managers"]
    for i in range(3):
        msg = {"post": {"workspace_id": other, "message": f"note {i}"}}
        assert (await client.post("/api/v1/posts.json", json=msg)).status_code == 200

    listed = (
        await client.get(
            "/api/v1/posts.json", params={"workspace_id": other, "per_page": 2, "page": 2}
        )
    ).json()
    assert listed["meta"] == {"count": 3, "page_count": 2, "page_number": 2, "page_size": 2}
    [only_one] = listed["posts"].values()
    assert only_one["message"] == "note 2"
    mine = (
        await client.get("/api/v1/posts.json", params={"workspace_id": wid, "include": "workspace"})
    ).json()
    assert mine["count"] == 1 and mine["workspaces"][wid]["title"] == "Apollo"

    for bad, field in (
        ({"workspace_id": 99999, "message": "x"}, "workspace_id"),
        ({"message": "x"}, "workspace_id"),
        ({"workspace_id": wid, "message": "  "}, "message"),
        ({"workspace_id": wid, "message": "x", "recipient_ids": [99999]}, "recipient_ids"),
    ):
        r = await client.post("/api/v1/posts.json", json={"post": bad})
        assert r.status_code == 422 and error_of(r)["field"] == field, r.text
    unknown = await client.post(
        "/api/v1/posts.json", json={"post": {"workspace_id": wid, "message": "x", "subject": "s"}}
    )
    assert unknown.status_code in (400, 422)


# --------------------------------------------------------------------------- bulk and only=


def _rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [body[r["key"]][r["id"]] for r in body["results"]]


async def _priced_workspace(app: FastAPI, client: httpx.AsyncClient) -> tuple[str, int, int]:
    """A workspace on a rate card (Consultant 150.00, Analyst 95.50), a consultant with a
    cost rate, and an analyst; (workspace id, consultant id, analyst id)."""
    card = psa.add_rate_card(
        app,
        title="Standard",
        currency="USD",
        roles=[
            ("Consultant", 15000, date(2024, 1, 1), None),
            ("Analyst", 9550, date(2024, 1, 1), None),
        ],
    )
    wid = await ws(client, rate_card_id=card)
    ada = psa.add_user(app, full_name="Ada", role="Consultant", cost_rate_in_cents=9000)
    bob = psa.add_user(app, full_name="Bob", role="Analyst")
    return wid, ada, bob


async def test_bulk_time_entries_follow_the_create_rules_all_or_none() -> None:
    receiver = Receiver()
    async with hooked_twin(receiver) as (app, client):
        wid, ada, bob = await _priced_workspace(app, client)
        story = only(
            (
                await client.post(
                    "/api/v1/stories.json", json={"story": {"workspace_id": wid, "title": "T"}}
                )
            ).json()
        )
        entries = [
            {"workspace_id": wid, "user_id": ada, "date_performed": "2025-03-03",
             "time_in_minutes": 90},
            {"workspace_id": wid, "user_id": bob, "date_performed": "2025-03-04",
             "time_in_minutes": 60, "story_id": story["id"], "billable": False},
            {"workspace_id": wid, "user_id": ada, "date_performed": "2025-03-05",
             "time_in_minutes": 30, "role": "Analyst"},
        ]  # fmt: skip
        r = await client.post("/_admin/time_entries/bulk", json={"entries": entries})
        assert r.status_code == 200, r.text
        ids = r.json()["ids"]
        assert len(ids) == 3 and all(isinstance(i, str) for i in ids)
        listed = await client.get(
            "/api/v1/time_entries.json", params={"only": ",".join(ids), "per_page": 200}
        )
        rows = {row["id"]: row for row in _rows(listed.json())}
        got = [rows[i] for i in ids]
        assert [(g["user_id"], g["time_in_minutes"], g["role"]) for g in got] == [
            (str(ada), 90, "Consultant"),
            (str(bob), 60, "Analyst"),
            (str(ada), 30, "Analyst"),
        ]
        assert [g["rate_in_cents"] for g in got] == [15000, 9550, 9550]
        assert [g["cost_rate_in_cents"] for g in got] == [9000, 0, 9000]
        assert [g["billable"] for g in got] == [True, False, True]
        assert got[1]["story_id"] == story["id"]
        assert all(g["approved"] and g["approved_at"] and g["lock_version"] == 2 for g in got)
        assert all(g["currency"] == "USD" and not g["is_invoiced"] for g in got)
        # Approved entries are locked like any other.
        edit = await client.put(
            f"/api/v1/time_entries/{ids[0]}.json", json={"time_entry": {"notes": "x"}}
        )
        assert edit.status_code == 422 and error_of(edit)["field"] == "approved"

        # One refused entry refuses the lot, naming it.
        psa_state = app.state.twin
        with psa_state.session() as session:
            user = session.get(psa.PsaUser, bob)
            assert user is not None
            user.active = False
            session.add(user)
            session.commit()
        refused = await client.post("/_admin/time_entries/bulk", json={"entries": entries})
        assert refused.status_code == 422
        assert error_of(refused)["field"] == "entries[1].user_id"
        too_long = [entries[0] | {"time_in_minutes": 1441}]
        r = await client.post("/_admin/time_entries/bulk", json={"entries": too_long})
        assert r.status_code == 422
        assert error_of(r)["field"] == "entries[0].time_in_minutes"
        count = await client.get("/api/v1/time_entries.json", params={"per_page": 1})
        assert count.json()["count"] == 3
        assert receiver.events == []

        # Unapproved on request; events only when asked for, one per approved entry.
        r = await client.post(
            "/_admin/time_entries/bulk",
            json={"entries": [entries[0]], "approved": False, "emit": True},
        )
        pending = _rows(
            (await client.get(f"/api/v1/time_entries/{r.json()['ids'][0]}.json")).json()
        )[0]
        assert not pending["approved"] and pending["lock_version"] == 1
        r = await client.post(
            "/_admin/time_entries/bulk",
            json={"entries": [entries[0], entries[2]], "emit": True},
        )
        emitted = r.json()["ids"]
        await app.state.twin.webhooks.drain()
    assert [(e["type"], e["data"]["time_entry_id"]) for e in receiver.events] == [
        ("time_entry.approved", emitted[0]),
        ("time_entry.approved", emitted[1]),
    ]


async def test_bulk_of_ten_thousand_entries_is_quick(
    twin: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = twin
    wid, ada, bob = await _priced_workspace(app, client)
    entries = [
        {
            "workspace_id": wid,
            "user_id": (ada, bob)[n % 2],
            "date_performed": date(2025, 3, 1 + n % 28).isoformat(),
            "time_in_minutes": 15 + n % 400,
        }
        for n in range(10_000)
    ]
    started = time.monotonic()
    r = await client.post("/_admin/time_entries/bulk", json={"entries": entries}, timeout=30)
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    ids = r.json()["ids"]
    assert len(ids) == len(set(ids)) == 10_000
    assert elapsed < 3.0, elapsed
    last = _rows((await client.get(f"/api/v1/time_entries/{ids[-1]}.json")).json())[0]
    assert (last["user_id"], last["time_in_minutes"]) == (str(bob), 15 + 9_999 % 400)


async def test_only_picks_time_entries_and_expenses_by_id_and_200_list_quickly(
    twin: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = twin
    wid, ada, _ = await _priced_workspace(app, client)
    entries = [
        {"workspace_id": wid, "user_id": ada, "date_performed": "2025-03-03", "time_in_minutes": 30}
    ] * 250
    ids = (await client.post("/_admin/time_entries/bulk", json={"entries": entries})).json()["ids"]
    wanted = ids[10:210]
    started = time.monotonic()
    r = await client.get(
        "/api/v1/time_entries.json",
        params={"only": ",".join([*wanted, "987654321"]), "per_page": 200},
    )
    elapsed = time.monotonic() - started
    body = r.json()
    assert body["count"] == 200 and body["meta"]["page_count"] == 1
    assert sorted(row["id"] for row in _rows(body)) == sorted(wanted)
    assert elapsed < 1.0, elapsed
    # Filters still apply on top of only=.
    none = await client.get(
        "/api/v1/time_entries.json", params={"only": ",".join(wanted), "approved": "false"}
    )
    assert none.json()["count"] == 0

    expense_ids = []
    for cents in (1000, 2000, 3000):
        r = await client.post(
            "/api/v1/expenses.json",
            json={
                "expense": {
                    "workspace_id": wid,
                    "user_id": ada,
                    "date": "2025-03-03",
                    "amount_in_cents": cents,
                }
            },
        )
        expense_ids.append(only(r.json())["id"])
    picked = await client.get(
        "/api/v1/expenses.json", params={"only": f"{expense_ids[0]},{expense_ids[2]},999"}
    )
    assert sorted(row["amount_in_cents"] for row in _rows(picked.json())) == [1000, 3000]
    bad = await client.get("/api/v1/expenses.json", params={"only": "1,x"})
    assert bad.status_code == 400 and error_of(bad)["field"] == "only"


async def test_a_null_for_a_required_field_is_refused_not_a_server_error(
    twin: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = twin
    wid = await ws(client)
    uid = psa.add_user(app, full_name="Ada")
    entry = only(
        (
            await client.post(
                "/api/v1/time_entries.json",
                json={
                    "time_entry": {
                        "workspace_id": wid,
                        "user_id": uid,
                        "date_performed": "2025-03-03",
                        "time_in_minutes": 60,
                    }
                },
            )
        ).json()
    )
    milestone = only(
        (
            await client.post(
                "/api/v1/billing_milestones.json",
                json={"billing_milestone": {"workspace_id": wid, "title": "Kickoff"}},
            )
        ).json()
    )
    for path, body, field in (
        (
            f"/api/v1/time_entries/{entry['id']}.json",
            {"time_entry": {"approved": None}},
            "approved",
        ),
        (
            f"/api/v1/billing_milestones/{milestone['id']}.json",
            {"billing_milestone": {"state": None}},
            "state",
        ),
    ):
        r = await client.put(path, json=body)
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert error_of(r)["field"] == field
    stats = (await client.get("/_admin/stats")).json()
    assert stats["errors_5xx"] == 0
