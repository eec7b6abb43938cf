"""Payload encryption end to end on the real dev server: after the demo scenario (deals, a
change order, a consultant who leaves the firm, time and an invoice), the raw workflow histories
read by a client *without* pssync's codec hold no worker name, email or amount in clear; the
same histories decode through the gateway's codec server (as the Temporal UI decodes them) and
there they are."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from contracts.settings import load_settings
from demo import run_scenario
from demo.checks import Check
from sandbox.seed import build_firm
from stack import Stack, running_stack
from tests.replay.test_replay import payloads_in

pytestmark = pytest.mark.e2e

FIRM = build_firm(7)
OPS = {"Authorization": "Bearer dev-ops-token", "X-Namespace": "default"}
BATCH_BYTES = 128 * 1024
"""Codec requests stay well under the gateway's body limit."""


async def raw_histories(stack: Stack) -> tuple[bytes, list[Payload]]:
    """Every run's history and description as the Temporal service holds them, read with a
    plain client (no codec): the raw bytes, and the payloads in them."""
    raw = await Client.connect(stack.urls["temporal"], namespace=stack.settings.temporal.namespace)
    chunks: list[bytes] = []
    payloads: list[Payload] = []
    async for run in raw.list_workflows():
        handle = raw.get_workflow_handle(run.id, run_id=run.run_id)
        history = await handle.fetch_history()
        description = (await handle.describe()).raw_description
        for message in (*history.events, description):
            chunks.append(message.SerializeToString())
            payloads += _encoded_payloads(message)
    return b"\n".join(chunks), payloads


def _encoded_payloads(message: Any) -> list[Payload]:
    """The payloads pssync's codec encodes. Temporal's core SDK writes two kinds of marker
    details itself, outside the codec, and they hold no business data: a `workflow.patched`
    marker's (`{"id": ..., "deprecated": false}`) and a local activity marker's `data` (its
    activity id, type, attempt, times). A local activity's result and failure are pssync's and
    go through the codec like any other payload."""
    if not (
        isinstance(message, HistoryEvent) and message.HasField("marker_recorded_event_attributes")
    ):
        return payloads_in(message)
    marker = message.marker_recorded_event_attributes
    if marker.marker_name == "core_patch":
        return []
    if marker.marker_name == "core_local_activity":
        found = [p for key, ps in marker.details.items() if key != "data" for p in payloads_in(ps)]
        return found + payloads_in(marker.failure)
    return payloads_in(message)


async def decode_through_codec_server(stack: Stack, payloads: list[Payload]) -> list[Payload]:
    """The payloads decoded by the gateway's codec server, in batches, as the UI asks."""
    decoded: list[Payload] = []
    batch: list[dict[str, Any]] = []
    size = 0
    async with httpx.AsyncClient(base_url=stack.urls["gateway"], timeout=60) as http:

        async def flush() -> None:
            nonlocal batch, size
            if batch:
                answer = await http.post("/codec/decode", json={"payloads": batch}, headers=OPS)
                assert answer.status_code == 200, answer.text[:500]
                decoded.extend(json_format.ParseDict(answer.json(), Payloads()).payloads)
            batch, size = [], 0

        for payload in payloads:
            as_json = json_format.MessageToDict(payload)
            batch.append(as_json)
            size += len(json.dumps(as_json))
            if size > BATCH_BYTES:
                await flush()
        await flush()
    return decoded


def amounts_in(value: Any) -> set[str]:
    """Money amounts (`{"amount": "...", "currency": "..."}`) anywhere in a decoded value."""
    found: set[str] = set()
    if isinstance(value, dict):
        if isinstance(value.get("amount"), str) and isinstance(value.get("currency"), str):
            found.add(value["amount"])
        for item in value.values():
            found |= amounts_in(item)
    elif isinstance(value, list):
        for item in value:
            found |= amounts_in(item)
    return found


async def test_histories_hold_no_personal_data_in_clear_and_decode_through_the_codec_server(
    tmp_path: Path,
) -> None:
    settings = load_settings(home=tmp_path / ".pssync")
    async with running_stack(settings, ephemeral_ports=True) as stack:
        checks: list[Check] = await run_scenario(stack, deals=1, say=lambda _m: None)
        failed = [c for c in checks if not c.held]
        assert not failed, failed
        raw, payloads = await raw_histories(stack)
        decoded = await decode_through_codec_server(stack, payloads)

    # What the scenario handled, read from the decoded payloads: the leaver and the money.
    plain = b"\n".join(p.data for p in decoded)
    names = {w.name.encode() for w in FIRM.workers}
    emails = {w.email.encode() for w in FIRM.workers if w.email}
    seen_names = {n for n in names if n in plain}
    seen_emails = {e for e in emails if e in plain}
    assert seen_names and seen_emails, "the scenario's workers should be in the decoded payloads"
    amounts: set[str] = set()
    for payload in decoded:
        if payload.metadata.get("encoding") == b"json/plain":
            amounts |= amounts_in(json.loads(payload.data))
    # amounts whose text cannot turn up by chance in ids or timestamps
    telling = {a for a in amounts if "." in a and len(a) >= 5 and Decimal(a) >= 100}
    assert len(telling) >= 3, amounts

    print(
        f"{len(payloads)} payloads, {len(raw)} raw bytes; decoded: {len(seen_names)} worker "
        f"names, {len(seen_emails)} emails, {len(telling)} amounts"
    )
    # None of it is in clear in what the Temporal service holds.
    assert not [n for n in names if n in raw], "a worker name in clear"
    assert not [e for e in emails if e in raw], "an email in clear"
    assert not [a for a in telling if a.encode() in raw], "an amount in clear"
    # every payload but the search attributes is encrypted
    assert all(p.metadata.get("encoding") == b"binary/encrypted" for p in payloads)
