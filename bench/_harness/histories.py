"""Where a workflow's time went, read from its Temporal history (server clock): activity queue
wait and run time, workflow-task queue and run time, per-entry timelines of the pipelines."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.converter import PayloadCodec

from bench._harness.stats import percentile
from contracts.v1.time_to_invoice import ENTRIES_CHANGED_SIGNAL


def event_ts(event: Any) -> float:
    return float(event.event_time.ToDatetime(tzinfo=UTC).timestamp())


def batch_timings(history: WorkflowHistory, since: float, until_: float) -> list[dict[str, Any]]:
    """`time.process_batch` activities of one pipeline run completed in [since, until_]:
    queue wait (scheduled -> started) and run time (started -> completed)."""
    scheduled: dict[int, tuple[str, float]] = {}
    started: dict[int, float] = {}
    out = []
    for event in history.events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = (attrs.activity_type.name, event_ts(event))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[event.activity_task_started_event_attributes.scheduled_event_id] = event_ts(
                event
            )
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sched_id = event.activity_task_completed_event_attributes.scheduled_event_id
            name, t_sched = scheduled[sched_id]
            t_done = event_ts(event)
            if name != "time.process_batch" or not since <= t_done <= until_:
                continue
            t_start = started.get(sched_id, t_done)
            out.append(
                {
                    "wait": t_start - t_sched,
                    "run": t_done - t_start,
                    "start": t_start,
                    "end": t_done,
                }
            )
    return out


def workflow_task_time(history: WorkflowHistory, since: float, until_: float) -> dict[str, Any]:
    """Workflow tasks of one run in [since, until_]: how many, their queue and run time."""
    sched: dict[int, float] = {}
    start: dict[int, float] = {}
    count, queue, run = 0, 0.0, 0.0
    for event in history.events:
        t = event_ts(event)
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            sched[event.event_id] = t
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            attrs = event.workflow_task_started_event_attributes
            start[event.event_id] = t
            if since <= t <= until_:
                queue += t - sched.get(attrs.scheduled_event_id, t)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            attrs_c = event.workflow_task_completed_event_attributes
            if since <= t <= until_:
                count += 1
                run += t - start.get(attrs_c.started_event_id, t)
    return {"count": count, "queue_s": queue, "run_s": run}


async def decode_inputs(histories: Sequence[WorkflowHistory], codec: PayloadCodec | None) -> None:
    """Decode in place the signal and activity inputs `entry_timeline` reads (pssync's payload
    codec encrypts them; without a codec they are left as they are)."""
    if codec is None:
        return
    for history in histories:
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                await codec.decode_wrapper(event.workflow_execution_signaled_event_attributes.input)
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                await codec.decode_wrapper(event.activity_task_scheduled_event_attributes.input)


def entry_timeline(histories: Sequence[WorkflowHistory]) -> dict[str, dict[str, float]]:
    """Per entry id, from the pipelines' histories (server clock): when its `entries_changed`
    signal was recorded (the first), and when the `time.process_batch` that carried it was
    scheduled, started and completed (the last such batch)."""
    out: dict[str, dict[str, float]] = {}
    for history in histories:
        batches: dict[int, list[str]] = {}
        for event in history.events:
            kind = event.event_type
            t = event_ts(event)
            if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                attrs = event.workflow_execution_signaled_event_attributes
                if attrs.signal_name != ENTRIES_CHANGED_SIGNAL or not attrs.input.payloads:
                    continue
                for ref in json.loads(attrs.input.payloads[0].data)["refs"]:
                    out.setdefault(str(ref["entry_id"]), {}).setdefault("signal", t)
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                sched = event.activity_task_scheduled_event_attributes
                if sched.activity_type.name != "time.process_batch":
                    continue
                body = json.loads(sched.input.payloads[0].data)
                ids = [str(e["ref"]["entry_id"]) for e in body["entries"]]
                batches[event.event_id] = ids
                for i in ids:
                    out.setdefault(i, {})["scheduled"] = t
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                sid = event.activity_task_started_event_attributes.scheduled_event_id
                for i in batches.get(sid, []):
                    out[i]["started"] = t
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                sid = event.activity_task_completed_event_attributes.scheduled_event_id
                for i in batches.get(sid, []):
                    out[i]["completed"] = t
    return out


def signals_between(histories: Sequence[WorkflowHistory], since: float, until_: float) -> int:
    """Signals the runs recorded in [since, until_]."""
    return sum(
        1
        for h in histories
        for ev in h.events
        if ev.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        and since <= event_ts(ev) <= until_
    )


def run_breakdown(history: WorkflowHistory) -> dict[str, float]:
    """One short run: start -> close, its activities' queue wait and run time, its workflow
    tasks' queue and run time (seconds)."""
    events = list(history.events)
    acts = batch_timings(history, 0, math.inf)
    wft = workflow_task_time(history, 0, math.inf)
    return {
        "start_to_close": event_ts(events[-1]) - event_ts(events[0]),
        "activity_queue_wait": sum(a["wait"] for a in acts),
        "activity_run": sum(a["run"] for a in acts),
        "workflow_task_queue": wft["queue_s"],
        "workflow_task_run": wft["run_s"],
    }


def aggregate_runs(runs: list[dict[str, float]]) -> dict[str, Any]:
    """p50 and p95 of each `run_breakdown` key over the runs."""
    return {
        "runs_sampled": len(runs),
        **{f"{k}_p50_s": round(percentile([r[k] for r in runs], 50), 4) for k in runs[0]},
        **{f"{k}_p95_s": round(percentile([r[k] for r in runs], 95), 4) for k in runs[0]},
    }


# --------------------------------------------------------------------------- per activity type


def shape_of(history: WorkflowHistory) -> list[int]:
    """Business steps per workflow task, in order: activities scheduled, and each local
    activity (its marker) as a step of its own. The floor runs each step as a regular no-op
    activity, so it stays the engine cost of the process's steps however pssync runs them
    (issue 19's local store steps cut round trips; they must not shrink their own floor)."""
    batches: dict[int, int] = {}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            wtc = event.activity_task_scheduled_event_attributes.workflow_task_completed_event_id
        elif (
            event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
            and event.marker_recorded_event_attributes.marker_name == "core_local_activity"
        ):
            wtc = event.event_id  # one step each: a workflow task runs its locals in turn
        else:
            continue
        batches[wtc] = batches.get(wtc, 0) + 1
    return [batches[k] for k in sorted(batches)]


def breakdown(history: WorkflowHistory) -> dict[str, Any]:
    """Per-activity queue wait and run time, and workflow-task time, of one run."""
    scheduled: dict[int, tuple[str, str, float]] = {}
    started: dict[int, float] = {}
    activities: list[dict[str, Any]] = []
    wft_scheduled: dict[int, float] = {}
    wft_started: dict[int, float] = {}
    wft_queue = wft_run = 0.0
    first = last = None
    for event in history.events:
        t = event_ts(event)
        first = t if first is None else first
        last = t
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            sched = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = (sched.activity_type.name, sched.task_queue.name, t)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[event.activity_task_started_event_attributes.scheduled_event_id] = t
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sched_id = event.activity_task_completed_event_attributes.scheduled_event_id
            name, queue, t_sched = scheduled[sched_id]
            t_start = started.get(sched_id, t)
            activities.append(
                {"name": name, "queue": queue, "wait": t_start - t_sched, "run": t - t_start}
            )
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            wft_scheduled[event.event_id] = t
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            wft_sched_id = event.workflow_task_started_event_attributes.scheduled_event_id
            wft_started[event.event_id] = t
            wft_queue += t - wft_scheduled.get(wft_sched_id, t)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            wft_start_id = event.workflow_task_completed_event_attributes.started_event_id
            wft_run += t - wft_started.get(wft_start_id, t)
    return {
        "activities": activities,
        "workflow_task_queue_s": wft_queue,
        "workflow_task_run_s": wft_run,
        "history_s": (last or 0.0) - (first or 0.0),
    }


def aggregate_breakdowns(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per run of where its time went (`breakdown`), and per activity type."""
    per_type: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    totals: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        wait = run_s = 0.0
        by_queue: dict[str, float] = defaultdict(float)
        for a in run["activities"]:
            per_type[a["name"]]["wait"].append(a["wait"])
            per_type[a["name"]]["run"].append(a["run"])
            wait += a["wait"]
            run_s += a["run"]
            by_queue[a["queue"]] += a["wait"]
        totals["activity_queue_wait_s"].append(wait)
        totals["activity_run_s"].append(run_s)
        totals["workflow_task_queue_s"].append(run["workflow_task_queue_s"])
        totals["workflow_task_run_s"].append(run["workflow_task_run_s"])
        totals["history_s"].append(run["history_s"])
        for queue, seconds in by_queue.items():
            totals[f"queue_wait_s[{queue}]"].append(seconds)
    return {
        "runs_sampled": len(runs),
        "per_run_p50": {k: round(percentile(v, 50), 4) for k, v in sorted(totals.items())},
        "per_activity_p50": {
            name: {
                "queue_wait_s": round(percentile(v["wait"], 50), 4),
                "queue_wait_p95_s": round(percentile(v["wait"], 95), 4),
                "run_s": round(percentile(v["run"], 50), 4),
                "run_p95_s": round(percentile(v["run"], 95), 4),
            }
            for name, v in sorted(per_type.items())
        },
    }
