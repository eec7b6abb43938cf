"""Committed workflow histories still replay against today's workflow code.

A failure here means a change would break running workflows: gate it with
`workflow.patched(...)` (then re-record with `python -m tests.replay.record_histories`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_committed() -> None:
    names = {p.stem for p in HISTORIES}
    assert {
        "opportunity_to_project_clean",
        "opportunity_to_project_corrected_cost_center",
        "opportunity_to_project_abandoned_after_erp_refusal",
    } <= names
    recorded_types = {
        json.loads(p.read_text())["events"][0]["workflowExecutionStartedEventAttributes"][
            "workflowType"
        ]["name"]
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
    } <= recorded_types


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays_without_nondeterminism(path: Path) -> None:
    # The file stem is the recorded workflow ID with "/" as "~" (workflows derive IDs from it).
    workflow_id = path.stem.replace("~", "/")
    history = WorkflowHistory.from_json(workflow_id, path.read_text())  # noqa: ASYNC240
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
