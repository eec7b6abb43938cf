"""The webhook sink signs every event (Standard Webhooks) and delivers in outbox order; a
refusal stops the batch there and the rest is delivered on the next pass, once."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from standardwebhooks import Webhook

from activities.events_relay import EventsRelay, SinkUnavailable, WebhookSink
from contracts.v1.events import WorkerTermination, outbox_payload
from store import Store

SECRET = "whsec_" + base64.b64encode(b"events-test-secret-0123456789ab").decode()


async def test_signed_events_reach_the_receiver_in_order_and_once(store: Store) -> None:
    for n in range(6):
        data = WorkerTermination(worker_id=f"W{n}")
        store.add_outbox("worker.terminated", f"W{n}", outbox_payload("EP-1", data))
    verifier = Webhook(SECRET)
    received: list[str] = []
    refuse = {"W3"}

    def receive(request: httpx.Request) -> httpx.Response:
        event = verifier.verify(request.content, dict(request.headers))  # raises if forged
        assert request.headers["webhook-id"] == event["id"]
        if event["data"]["worker_id"] in refuse:
            return httpx.Response(503)
        received.append(event["data"]["worker_id"])
        return httpx.Response(204)

    client = httpx.AsyncClient(transport=httpx.MockTransport(receive))
    relay = EventsRelay(store, WebhookSink("http://subscriber/events", SECRET, client=client))

    with pytest.raises(SinkUnavailable):
        await relay.run_once()
    assert received == ["W0", "W1", "W2"] and len(store.pending_outbox()) == 3
    refuse.clear()
    assert await relay.run_once() == 3

    assert received == [f"W{n}" for n in range(6)]
    assert store.pending_outbox() == []
    forged = json.dumps({"id": "x"})
    with pytest.raises(Exception):  # noqa: B017 - any verification failure
        verifier.verify(
            forged, {"webhook-id": "x", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"}
        )
    await client.aclose()
