"""Committed workflow histories still replay against today's workflow code.

A failure here means a change would break running workflows: gate it with
`workflow.patched(...)`. Re-record one scenario (only for a deliberate, patched change) with
`python -m tests.replay.record_histories --only <scenario>` (`--list` names them).

A file is named by its workflow ID with "/" as "~"; a workflow that continued as new has one
file per run, the run's label after "@" (`<id>@continued_as_new.json`, `<id>@continuation.json`).

Histories replay through pssync's data converter with payload encryption (`plumbing.codec`),
as workers run: the files recorded before encryption hold plain payloads, which the codec passes
through; those recorded since (`*_encrypted`) hold payloads encrypted with the test key of
`tests/replay/replay_key.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from plumbing.codec import data_converter, is_encrypted
from tests.replay.replay_key import replay_keyring
from worker import WORKFLOWS

CONVERTER = data_converter(replay_keyring())

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def workflow_id_of(path: Path) -> str:
    """The recorded workflow ID: the file stem without its run label, "~" back to "/"."""
    return path.stem.split("@", 1)[0].replace("~", "/")


def _events(path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(path.read_text())["events"]
    return events


def test_histories_are_committed() -> None:
    names = {p.stem for p in HISTORIES}
    assert {
        "opportunity_to_project_clean",
        "opportunity_to_project_corrected_cost_center",
        "opportunity_to_project_abandoned_after_erp_refusal",
        # the exception desk and the saga helper (tests/replay/record_histories.py --new)
        "opportunity_to_project_escalated_then_corrected",
        "opportunity_to_project_resolution_races_escalation",
        "opportunity_to_project_compensation_failed",
        "termination~test~W-00042~rescinded_after_effective_date",
        # continue-as-new: the run that continued and the continuation
        "time-to-invoice~replay~101@continued_as_new",
        "time-to-invoice~replay~101@continuation",
        "assignment-sync~test~101@continued_as_new",
        "assignment-sync~test~101@continuation",
        # recorded with payload encryption on
        "opportunity_to_project_clean_encrypted",
        "opportunity_to_project_abandoned_after_erp_refusal_encrypted",
    } <= names
    recorded_types = {
        _events(p)[0]["workflowExecutionStartedEventAttributes"]["workflowType"]["name"]
        for p in HISTORIES
    }
    # every process the worker runs has a committed history (Doctor aside: no messages)
    assert {
        "OpportunityToProject",
        "ChangeOrder",
        "WorkerTermination",
        "HcmChangesPoller",
        "TimeToInvoice",
        "TimeToInvoiceSweep",
        "AssignmentSync",
    } <= recorded_types


def test_continued_runs_are_paired() -> None:
    """A run recorded as continued-as-new ended so, and its continuation was started by it
    (same workflow ID, the continuation's input carried from the first run)."""
    continued = [p for p in HISTORIES if p.stem.endswith("@continued_as_new")]
    assert continued
    for first in continued:
        events = _events(first)
        continued_as_new = events[-1].get("workflowExecutionContinuedAsNewEventAttributes")
        assert continued_as_new, f"{first.stem} did not end by continuing as new"
        second = first.with_name(first.name.replace("@continued_as_new", "@continuation"))
        assert second.exists(), f"{second.name} missing"
        started = _events(second)[0]["workflowExecutionStartedEventAttributes"]
        first_run = events[0]["workflowExecutionStartedEventAttributes"]["originalExecutionRunId"]
        assert started["continuedExecutionRunId"] == first_run, second.stem
        assert started["originalExecutionRunId"] == continued_as_new["newExecutionRunId"]


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays_without_nondeterminism(path: Path) -> None:
    # The file stem is the recorded workflow ID with "/" as "~" (workflows derive IDs from it),
    # and for a workflow that continued as new, "@" and the run's label.
    workflow_id = workflow_id_of(path)
    history = WorkflowHistory.from_json(workflow_id, path.read_text())  # noqa: ASYNC240
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def payloads_in(message: Message) -> list[Payload]:
    """Every `Payload` inside a proto message (inputs, results, failures, memos, summaries),
    depth first; search attributes aside (indexed in clear by design, never encoded). Also
    used by tests/e2e/test_payload_encryption.py."""
    if isinstance(message, Payload):
        return [message]
    found: list[Payload] = []
    for field, value in message.ListFields():
        if field.message_type is None or field.name == "search_attributes":
            continue
        if field.message_type.GetOptions().map_entry:
            values = list(value.values())
            found += [p for v in values if isinstance(v, Message) for p in payloads_in(v)]
        elif field.is_repeated:
            found += [p for item in value for p in payloads_in(item)]
        else:
            found += payloads_in(value)
    return found


def _history_payloads(path: Path) -> list[Payload]:
    history = WorkflowHistory.from_json(workflow_id_of(path), path.read_text())
    return [p for event in history.events for p in payloads_in(event)]


async def test_plain_and_encrypted_histories_decode_through_the_codec() -> None:
    """Histories recorded before encryption pass through the codec unchanged; in those recorded
    since every payload is encrypted and decrypts to its original encoding."""
    codec = CONVERTER.payload_codec
    assert codec is not None
    plain = [p for p in HISTORIES if not p.stem.endswith("_encrypted")]
    encrypted = [p for p in HISTORIES if p.stem.endswith("_encrypted")]
    assert plain and encrypted
    for path in plain:
        payloads = _history_payloads(path)
        assert payloads and not any(is_encrypted(p) for p in payloads), path.stem
        assert await codec.decode(payloads) == payloads, path.stem
    for path in encrypted:
        payloads = _history_payloads(path)
        assert payloads and all(is_encrypted(p) for p in payloads), path.stem
        opened = await codec.decode(payloads)
        assert {p.metadata["encoding"] for p in opened} <= {b"json/plain", b"binary/null"}
        # the first is the workflow's input, as the workflow was given it
        (started,) = pydantic_data_converter.payload_converter.from_payloads(opened[:1])
        assert started["opportunity_id"], started


def test_an_encrypted_history_shows_no_failure_in_clear() -> None:
    """Failure messages and stack traces are encrypted with the payloads ("Encoded failure" is
    all that shows): the ERP's refusal cannot be read from the raw history."""
    path = HISTORIES[0].parent / "opportunity_to_project_abandoned_after_erp_refusal_encrypted.json"
    raw = path.read_text()
    assert "Encoded failure" in raw
    assert "credit hold" not in raw and "CUSTOMER_CREDIT_HOLD" not in raw
    plain = path.with_name("opportunity_to_project_abandoned_after_erp_refusal.json").read_text()
    assert "credit hold" in plain  # what the same run showed before encryption
