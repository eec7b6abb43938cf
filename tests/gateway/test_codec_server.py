"""The codec server (`gateway.routes.codec`): the Temporal UI decodes pssync's encrypted payloads
through the gateway, as an `ops` actor, from the UI's origin only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RetryConfig

import store as store_module
from contracts.money import Money
from contracts.settings import Settings, load_settings
from contracts.v1.models import Worker
from gateway import create_app
from plumbing.codec import ENCODING, converter_for

OPS = {"Authorization": "Bearer dev-ops-token"}
DM = {"Authorization": "Bearer dev-dm-token"}
UI = "http://127.0.0.1:8233"
WORKER = Worker(
    source_system="HCM",
    external_id="W-00042",
    name="Ada Lovelace-Byron",
    email="ada.lovelace@example.com",
    hire_date=date(2020, 1, 6),
    cost_center="CC-100",
    cost_rate=Money(Decimal("123.45"), "USD"),
)


class Codec:
    def __init__(self, http: httpx.AsyncClient, client: Client, settings: Settings) -> None:
        self.http = http
        self.client = client
        self.settings = settings

    async def sealed(self, *values: Any) -> dict[str, Any]:
        """`values` encoded as pssync's clients encode them, as the UI would send them."""
        payloads = await self.client.data_converter.encode(list(values))
        return json_format.MessageToDict(Payloads(payloads=payloads))


def protos(body: dict[str, Any]) -> list[Payload]:
    return list(json_format.ParseDict(body, Payloads()).payloads)


@pytest.fixture
async def codec(tmp_path: Path) -> AsyncIterator[Codec]:
    settings = load_settings(home=tmp_path / ".pssync")
    url = f"sqlite:///{tmp_path}/s.db"
    store_module.upgrade(url)
    engine = store_module.make_engine(url)
    # the codec server needs no Temporal server: only the client's data converter
    client = await Client.connect(
        "127.0.0.1:1",
        lazy=True,
        data_converter=converter_for(settings),
        retry_config=RetryConfig(max_retries=0),
    )
    app = create_app(settings, store_module.Store(engine), client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        yield Codec(http, client, settings)
    engine.dispose()


async def test_decode_needs_a_token_and_the_ops_role(codec: Codec) -> None:
    body = await codec.sealed(WORKER)
    refused = await codec.http.post("/codec/decode", json=body)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    forbidden = await codec.http.post("/codec/decode", json=body, headers=DM)
    assert forbidden.status_code == 403
    assert "Ada" not in forbidden.text
    wrong = await codec.http.post(
        "/codec/decode", json=body, headers={"Authorization": "Bearer not-a-token"}
    )
    assert wrong.status_code == 401


async def test_ops_decodes_a_real_encrypted_payload(codec: Codec) -> None:
    body = await codec.sealed(WORKER, "plain text")
    (sealed, _) = protos(body)
    assert sealed.metadata["encoding"] == ENCODING
    assert b"Ada" not in sealed.data

    answer = await codec.http.post(
        "/codec/decode", json=body, headers={**OPS, "X-Namespace": "default"}
    )
    assert answer.status_code == 200, answer.text
    decoded = protos(answer.json())
    assert [p.metadata["encoding"] for p in decoded] == [b"json/plain", b"json/plain"]
    worker, text = pydantic_data_converter.payload_converter.from_payloads(decoded, [Worker, str])
    assert worker == WORKER and text == "plain text"


async def test_encode_then_decode_round_trips(codec: Codec) -> None:
    plain = pydantic_data_converter.payload_converter.to_payloads([WORKER])
    body = json_format.MessageToDict(Payloads(payloads=plain))
    encoded = await codec.http.post("/codec/encode", json=body, headers=OPS)
    assert encoded.status_code == 200, encoded.text
    assert all(p.metadata["encoding"] == ENCODING for p in protos(encoded.json()))
    assert "Ada" not in encoded.text
    decoded = await codec.http.post("/codec/decode", json=encoded.json(), headers=OPS)
    assert protos(decoded.json()) == plain


async def test_undecodable_input_is_a_422_never_a_500(codec: Codec) -> None:
    body = await codec.sealed(WORKER)
    data = body["payloads"][0]["data"]
    body["payloads"][0]["data"] = ("A" if data[0] != "A" else "B") + data[1:]
    tampered = await codec.http.post("/codec/decode", json=body, headers=OPS)
    assert tampered.status_code == 422
    assert tampered.json()["error"]["code"] == "payload_undecodable"

    junks: list[dict[str, Any]] = [
        {"payloads": [{"data": "a"}]},  # not base64
        {"payloads": [{"data": "!!!!"}]},
        {"payloads": [{"data": "", "extra": 1}]},
        {"payloads": [{"metadata": "x"}]},
        {"payloads": "x"},
        {"nothing": []},
    ]
    for junk in junks:
        answer = await codec.http.post("/codec/decode", json=junk, headers=OPS)
        assert answer.status_code == 422, (junk, answer.text)

    # the UI names the namespace it shows; pssync's keys serve its one namespace
    other = await codec.http.post(
        "/codec/decode",
        json=await codec.sealed(WORKER),
        headers={**OPS, "X-Namespace": "another"},
    )
    assert other.status_code == 200


async def test_cors_preflight_for_the_ui_origin_only(codec: Codec) -> None:
    preflight = {
        "Origin": UI,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-namespace",
    }
    answer = await codec.http.options("/codec/decode", headers=preflight)
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == UI
    assert answer.headers["access-control-allow-credentials"] == "true"
    allowed = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-namespace"} <= allowed
    assert "POST" in answer.headers["access-control-allow-methods"]

    evil = await codec.http.options(
        "/codec/decode", headers={**preflight, "Origin": "http://evil.example"}
    )
    assert evil.status_code == 403
    assert "access-control-allow-origin" not in evil.headers

    # the actual request from the UI carries the CORS answer, refusals included
    body = await codec.sealed(WORKER)
    ok = await codec.http.post("/codec/decode", json=body, headers={**OPS, "Origin": UI})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == UI
    refused = await codec.http.post("/codec/decode", json=body, headers={"Origin": UI})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == UI
    elsewhere = await codec.http.post(
        "/codec/decode", json=body, headers={**OPS, "Origin": "http://evil.example"}
    )
    assert "access-control-allow-origin" not in elsewhere.headers


async def test_a_codec_session_cookie_lets_the_ui_decode(codec: Codec) -> None:
    """The dev server's UI cannot send a bearer token: an ops actor opens a session (an
    HttpOnly cookie for /codec) and the UI's credentialed requests carry it."""
    assert (await codec.http.post("/codec/session")).status_code == 401
    assert (await codec.http.post("/codec/session", headers=DM)).status_code == 403
    assert "pssync_codec_session" not in codec.http.cookies

    opened = await codec.http.post("/codec/session", headers=OPS)
    assert opened.status_code == 204
    cookie = opened.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/codec" in cookie

    body = await codec.sealed(WORKER)
    answer = await codec.http.post("/codec/decode", json=body, headers={"Origin": UI})
    assert answer.status_code == 200, answer.text
    (decoded,) = protos(answer.json())
    assert b"Ada Lovelace-Byron" in decoded.data

    # the cookie stands for the header on the codec routes only
    assert (await codec.http.get("/api/exceptions")).status_code == 401

    closed = await codec.http.delete("/codec/session")
    assert closed.status_code == 204
    assert "max-age=0" in closed.headers["set-cookie"].lower()
    codec.http.cookies.clear()
    assert (await codec.http.post("/codec/decode", json=body)).status_code == 401
    assert (await codec.http.delete("/codec/session")).status_code == 401

    page = await codec.http.get("/codec/login")
    assert page.status_code == 200 and "Bearer" in page.text
