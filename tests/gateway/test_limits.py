"""Bounded requests (`gateway.limits`), through the whole app over ASGI with a real SQLite store
and a Temporal client that reaches nothing: every refusal here happens before Temporal.

Bodies over the limit (declared or streamed), JSON nested too deep, overlong paths and path
ids, unbounded free-form fields and callers over their rate are each refused in the gateway's
error shape, and nothing reaches the store. The real-server memory check is in
test_limits_rss.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RetryConfig

from contracts.settings import Settings
from gateway import create_app
from gateway.errors import GatewayError
from gateway.limits import JsonDepth, json_too_deep
from store import Store
from tests.gateway.test_gateway import sign

OPS = {"authorization": "Bearer dev-ops-token"}
DM = {"authorization": "Bearer dev-dm-token"}
JSON = {"content-type": "application/json"}
CHUNK = 64 * 1024


class FakeClock:
    """The token buckets' time source; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def gateway(
    settings: Settings, store: Store, **limits: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings.limits = settings.limits.model_copy(update=limits)
    down = await Client.connect(
        "127.0.0.1:1",
        lazy=True,
        data_converter=pydantic_data_converter,
        retry_config=RetryConfig(max_retries=0),
    )
    app = create_app(settings, store, down)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        yield app, http


class Chunks:
    """A chunked body of `total` bytes (no Content-Length), counting what was pulled."""

    def __init__(self, total: int, head: bytes = b'{"note": "') -> None:
        self.total = total
        self.head = head
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        self.sent += len(self.head)
        while self.sent < self.total:
            self.sent += CHUNK
            yield b"a" * CHUNK


def nested(depth: int) -> str:
    """A JSON envelope whose arrays and objects nest `depth` levels in all."""
    inner = "[" * (depth - 2) + "]" * (depth - 2)
    return '{"type": "limits.probe", "data": {"x": ' + inner + "}}"


async def asgi_get(app: FastAPI, path: str) -> tuple[int, dict[str, Any]]:
    """A GET straight through ASGI (httpx refuses URLs this long; a fuzzer's ASGI client
    does not)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"gw"), *((k.encode(), v.encode()) for k, v in OPS.items())],
        "client": ("10.0.0.1", 40000),
        "server": ("gw", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


def error_code(resp: httpx.Response) -> str:
    code: str = resp.json()["error"]["code"]
    return code


# --------------------------------------------------------------------------- body size


async def test_a_chunked_webhook_over_the_limit_is_refused_while_it_streams(
    settings: Settings, store: Store
) -> None:
    async with gateway(settings, store, webhook_max_body_bytes=256 * 1024) as (_app, http):
        body = Chunks(8 << 20)
        event = f"evt_{uuid.uuid4().hex}"
        headers = {**sign(b"{}", event_id=event)}
        resp = await http.post("/webhooks/psa", content=body, headers=headers)
    assert resp.status_code == 413, resp.text
    assert resp.json() == {
        "error": {"code": "body_too_large", "message": "the body exceeds 262144 bytes"}
    }
    assert body.sent <= 256 * 1024 + 2 * CHUNK  # the rest of the 8 MiB was never pulled
    assert await asyncio.to_thread(store.inbox_get, "psa", event) is None


async def test_a_declared_length_over_the_limit_is_refused_before_the_app_runs(
    settings: Settings, store: Store
) -> None:
    async with gateway(settings, store) as (_app, http):
        resp = await http.post("/webhooks/crm", content=b"x" * ((1 << 20) + 1), headers=sign(b"{}"))
        assert (resp.status_code, error_code(resp)) == (413, "body_too_large")
        resp = await http.post(
            "/api/exceptions/x/resolution",
            content=b" " * (256 * 1024 + 1),
            headers={**OPS, **JSON},
        )
        assert (resp.status_code, error_code(resp)) == (413, "body_too_large")


async def test_a_chunked_api_body_over_the_limit_is_413_in_the_error_shape(
    settings: Settings, store: Store
) -> None:
    async with gateway(settings, store, api_max_body_bytes=64 * 1024) as (_app, http):
        body = Chunks(4 << 20)
        resp = await http.post(
            "/api/exceptions/x/resolution", content=body, headers={**OPS, **JSON}
        )
    assert resp.status_code == 413, resp.text
    assert resp.json()["error"] == {
        "code": "body_too_large",
        "message": "the body exceeds 65536 bytes",
    }
    assert body.sent <= 64 * 1024 + 2 * CHUNK


# --------------------------------------------------------------------------- JSON depth


async def test_a_signed_webhook_nested_10000_deep_is_400_not_500(
    settings: Settings, store: Store
) -> None:
    body = '{"type": "x", "data": ' + '{"a": ' * 10_000 + "1" + "}" * 10_000 + "}"
    event = f"evt_{uuid.uuid4().hex}"
    async with gateway(settings, store) as (_app, http):
        resp = await http.post("/webhooks/psa", content=body, headers=sign(body, event_id=event))
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == {
        "code": "json_too_deep",
        "message": "the JSON body nests deeper than 64 levels",
    }
    assert await asyncio.to_thread(store.inbox_get, "psa", event) is None


async def test_a_webhook_nested_to_the_limit_is_still_processed(
    settings: Settings, store: Store
) -> None:
    body = nested(64)
    async with gateway(settings, store) as (_app, http):
        resp = await http.post("/webhooks/psa", content=body, headers=sign(body))
        assert (resp.status_code, resp.json()) == (202, {"status": "ignored"}), resp.text
        deeper = nested(65)
        resp = await http.post("/webhooks/psa", content=deeper, headers=sign(deeper))
        assert (resp.status_code, error_code(resp)) == (400, "json_too_deep")


async def test_an_api_body_nested_10000_deep_is_400(settings: Settings, store: Store) -> None:
    body = '{"action": "retry", "note": ' + "[" * 10_000 + "]" * 10_000 + "}"
    async with gateway(settings, store) as (_app, http):
        resp = await http.post(
            "/api/exceptions/x/resolution", content=body, headers={**OPS, **JSON}
        )
    assert (resp.status_code, error_code(resp)) == (400, "json_too_deep")


async def test_a_stored_deep_body_is_refused_on_replay_not_a_recursion_error(
    settings: Settings, store: Store
) -> None:
    """The receiver checks depth itself too (the relay's path does not pass the middleware)."""
    deep = '{"type": "x", "data": ' + "[" * 5000 + "]" * 5000 + "}"
    await asyncio.to_thread(
        store.inbox_accept, "psa", "evt-deep", "hash", event_type="x", body=deep
    )
    row = await asyncio.to_thread(store.inbox_get, "psa", "evt-deep")
    assert row is not None
    async with gateway(settings, store) as (app, _http):
        with pytest.raises(GatewayError) as refused:
            await app.state.webhooks.replay(row)
    assert (refused.value.status, refused.value.code) == (400, "json_too_deep")


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ('{"a": "[[[[{{{{", "b": "\\"[[[", "c": "\\\\"}', 1),
        ('[[], [[]], {"k": [{"v": "]]]]"}]}]', 4),
        ('{"a": {"b": "\\u005b"}, "c": [[["x\\\\"]]]}', 4),
        ("1", 0),
        ('"\\\\\\"["', 0),
    ],
)
def test_json_depth_ignores_brackets_in_strings_across_any_chunking(text: str, depth: int) -> None:
    data = text.encode()
    json.loads(text)  # each is valid JSON, nested exactly `depth` deep
    assert not json_too_deep(data, depth)
    assert depth == 0 or json_too_deep(data, depth - 1)
    for limit in (max(depth - 1, 0), depth):
        for size in (1, 2, 3, 7):  # any chunking gives the same answer
            scan = JsonDepth(limit)
            answers = [scan.feed(data[i : i + size]) for i in range(0, len(data), size)]
            assert answers[-1] is (limit >= depth)
            assert limit < depth or scan.depth == 0  # back at the top once all is fed


def test_json_depth_is_linear_on_hostile_bodies() -> None:
    """Unterminated strings full of escaped quotes, or nothing but brackets: one pass each."""
    for body in (b'"' + b'\\"' * 200_000, b"[" * 400_000, b'"",' * 150_000 + b"[" * 65):
        assert isinstance(json_too_deep(body, 64), bool)
    assert json_too_deep(b'"",' * 150_000 + b"[" * 65, 64)
    assert not json_too_deep(b'"' + b"[" * 400_000, 64)  # all inside one unterminated string


# --------------------------------------------------------------------------- paths


async def test_a_100000_character_path_id_is_414_not_500(settings: Settings, store: Store) -> None:
    async with gateway(settings, store) as (app, _http):
        for path in (
            "/api/exceptions/" + "x" * 100_000,
            "/api/projects/" + "x" * 100_000 + "/time-to-invoice",
        ):
            status, body = await asgi_get(app, path)
            assert status == 414
            assert body["error"]["code"] == "uri_too_long"


async def test_an_overlong_or_control_character_path_id_is_422(
    settings: Settings, store: Store
) -> None:
    async with gateway(settings, store) as (_app, http):
        resp = await http.get("/api/exceptions/" + "x" * 201, headers=OPS)
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"] == {
            "code": "invalid_id",
            "message": "item_id is longer than 200 characters",
            "field": "item_id",
        }
        assert (await http.get("/api/exceptions/" + "x" * 200, headers=OPS)).status_code == 404
        resp = await http.get("/api/projects/acme%00x", headers=OPS)
        assert (resp.status_code, error_code(resp)) == (422, "invalid_id")
        assert resp.json()["error"]["field"] == "enterprise_id"


# --------------------------------------------------------------------------- free-form fields


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/api/exceptions/x/resolution",
            {"action": "retry_with_data", "corrections": {f"f{i}": "v" for i in range(21)}},
            "corrections",
        ),
        (
            "/api/exceptions/x/resolution",
            {"action": "retry_with_data", "corrections": {"cost_center": "C" * 1001}},
            "corrections.cost_center",
        ),
        (
            "/api/exceptions/x/resolution",
            {"action": "retry_with_data", "corrections": {"k" * 65: "v"}},
            "corrections.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk.[key]",
        ),
        ("/api/exceptions/x/resolution", {"action": "retry", "note": "n" * 4001}, "note"),
        ("/api/change-orders/CO-1/decision", {"approve": True, "note": "n" * 4001}, "note"),
        ("/api/change-orders/CO-1/decision", {"approve": True, "as_role": "r" * 101}, "as_role"),
        ("/api/terminations/W-1/2024-01-31/rescind", {"reason": "r" * 4001}, "reason"),
    ],
)
async def test_free_form_fields_are_bounded(
    settings: Settings, store: Store, path: str, body: dict[str, Any], field: str
) -> None:
    async with gateway(settings, store) as (_app, http):
        resp = await http.post(path, json=body, headers=OPS)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["field"] == field


# --------------------------------------------------------------------------- rate


async def test_an_actor_over_its_rate_gets_429_others_do_not_and_it_passes_later(
    settings: Settings, store: Store
) -> None:
    clock = FakeClock()
    async with gateway(settings, store, api_rate_per_s=0.3, api_burst=2) as (app, http):
        app.state.limits.clock = clock
        for _ in range(2):
            assert (await http.get("/api/exceptions", headers=OPS)).status_code == 200
        resp = await http.get("/api/exceptions", headers=OPS)
        assert resp.status_code == 429, resp.text
        assert resp.headers["retry-after"] == "4"  # 1 token at 0.3/s: 3.33 s, rounded up
        assert resp.json()["error"]["code"] == "rate_limited"

        assert (await http.get("/api/exceptions", headers=DM)).status_code == 200
        # no Authorization header: counted by client address, its own bucket
        assert (await http.get("/api/exceptions")).status_code == 401
        assert (await http.get("/healthz")).status_code != 429  # probes are never limited

        clock.now += 3.0
        assert (await http.get("/api/exceptions", headers=OPS)).status_code == 429
        clock.now += 0.4
        assert (await http.get("/api/exceptions", headers=OPS)).status_code == 200
        assert (await http.get("/api/exceptions", headers=OPS)).status_code == 429


async def test_a_webhook_sender_over_its_rate_gets_429_per_endpoint_and_address(
    settings: Settings, store: Store
) -> None:
    clock = FakeClock()
    async with gateway(settings, store, webhook_rate_per_s=1.0, webhook_burst=2) as (app, http):
        app.state.limits.clock = clock
        for _ in range(2):
            assert (await http.post("/webhooks/psa", content=b"{}")).status_code == 401
        resp = await http.post("/webhooks/psa", content=b"{}")
        assert (resp.status_code, resp.headers["retry-after"]) == (429, "1")
        assert resp.json()["error"]["code"] == "rate_limited"
        assert (await http.post("/webhooks/crm", content=b"{}")).status_code == 401

        other = httpx.ASGITransport(app=app, client=("10.0.0.2", 40000))
        async with httpx.AsyncClient(transport=other, base_url="http://gw") as sender:
            assert (await sender.post("/webhooks/psa", content=b"{}")).status_code == 401

        clock.now += 1.0
        assert (await http.post("/webhooks/psa", content=b"{}")).status_code == 401
