"""Committed workflow histories still replay against today's workflow code.

A failure here means a change would break running workflows: gate it with
`workflow.patched(...)`. Re-record one scenario (only for a deliberate, patched change) with
`python -m tests.replay.record_histories --only <scenario>` (`--list` names them).

A file is named by its workflow ID with "/" as "~"; a workflow that continued as new has one
file per run, the run's label after "@" (`<id>@continued_as_new.json`, `<id>@continuation.json`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import WORKFLOWS

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
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
