"""The PSA's `rate_card_version.published` webhook reaches the card's one RateCardSync run:
signal-with-start by the card, the revision in the signal; a redelivery is a duplicate."""

from __future__ import annotations

import asyncio
import json
import uuid

from contracts.v1.rate_cards import rate_card_sync_workflow_id
from tests.gateway.test_gateway import Gw, post_event


async def test_a_published_rate_card_version_signals_the_cards_sync(gw: Gw) -> None:
    card = f"7{uuid.uuid4().int % 10**6}"
    wid = rate_card_sync_workflow_id(gw.settings.psa.tenant, card)
    event = {
        "type": "rate_card_version.published",
        "data": {"rate_card_id": card, "rate_card_version_id": "31"},
    }
    resp = await post_event(gw, event, source="psa", event_id=f"rc-{card}-31")
    assert resp.status_code == 202, resp.text
    assert resp.json()["workflow_id"] == wid
    replay = await post_event(gw, event, source="psa", event_id=f"rc-{card}-31")
    assert (replay.status_code, replay.json()["status"]) == (200, "duplicate")
    nxt = {
        "type": "rate_card_version.published",
        "data": {"rate_card_id": card, "rate_card_version_id": "32"},
    }
    resp2 = await post_event(gw, nxt, source="psa", event_id=f"rc-{card}-32")
    assert resp2.json()["run_id"] == resp.json()["run_id"], resp2.text

    deadline = asyncio.get_running_loop().time() + 10
    while True:
        signals = [
            event.workflow_execution_signaled_event_attributes
            async for event in gw.client.get_workflow_handle(wid).fetch_history_events()
            if event.HasField("workflow_execution_signaled_event_attributes")
        ]
        if len(signals) >= 2 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
    assert [s.signal_name for s in signals] == ["rate_card_revised", "rate_card_revised"]
    codec = gw.client.data_converter.payload_codec
    assert codec is not None
    decoded = await codec.decode([s.input.payloads[0] for s in signals])
    assert [json.loads(p.data)["revision_id"] for p in decoded] == ["31", "32"]
    await gw.client.get_workflow_handle(wid).terminate()
