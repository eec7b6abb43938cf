"""An outbox row becomes one CloudEvent: a stable id per fact, the enterprise id as subject,
the recorded time, and data that validates against the event's contract."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from contracts.v1.events import (
    EVENT_TYPES,
    CloudEvent,
    TimePosted,
    event_id,
    outbox_payload,
    to_cloud_event,
)

AT = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)


def test_an_outbox_row_maps_to_a_cloud_event_with_a_stable_id_and_the_enterprise_subject() -> None:
    data = TimePosted(
        entry_key="time:1", kind="time", entry_id="1", psa_project_id="P1",
        hours=Decimal("7.5"), entry_version="v1", bill_amount=Decimal("900.00"),
    )  # fmt: skip
    payload = outbox_payload("EP-1", data)

    event = to_cloud_event(41, "time.posted", "time:1@v1:k", payload, AT)
    again = to_cloud_event(41, "time.posted", "time:1@v1:k", payload, AT)

    assert event.id == again.id == event_id("time.posted", "time:1@v1:k")
    assert event.id != event_id("time.reversed", "time:1@v1:k")
    assert (event.type, event.subject, event.time, event.sequence) == (
        "com.pssync.time.posted", "EP-1", AT, "41",
    )  # fmt: skip
    assert EVENT_TYPES["time.posted"].model_validate(event.data) == data
    wire = CloudEvent.model_validate_json(event.model_dump_json())
    assert wire.specversion == "1.0" and wire.datacontenttype == "application/json"
    assert wire.data["hours"] == "7.5"


def test_a_row_written_before_events_had_a_subject_takes_its_enterprise_id() -> None:
    legacy = {"enterprise_id": "EP-7", "opportunity_id": "O-1", "psa_project_id": "P7"}

    event = to_cloud_event(3, "project.provisioned", "EP-7", legacy, AT)

    assert (event.type, event.subject, event.data) == (
        "com.pssync.project.provisioned",
        "EP-7",
        legacy,
    )
    assert to_cloud_event(4, "notification", "wf/x", {"kind": "k"}, AT).type == (
        "com.pssync.notification.recorded"
    )
