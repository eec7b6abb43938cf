"""TimeToInvoice benchmark: approved PSA time through the whole local stack into the ERP twin —
throughput against a naive workflow-per-entry baseline in the same run, approval-to-posting
latency at a steady approval rate, and how much of an ERP quota the pipeline uses.

    python bench/time_to_invoice.py [--entries 10000] [--projects 8] [--workers 50]
        [--naive 400] [--naive-concurrency 20] [--latency-rps 100] [--latency-s 25]
        [--latency-mode bulk|api] [--quota-rps 20] [--quota-batch-size 5]
        [--quota-window-s 25] [--phases throughput,naive,latency,quota]
        [--worker-process] [--temporal-db-dir DIR] [--keep-home]

What it runs on 127.0.0.1 (OS-assigned ports), in a fresh temp home: `starter.running_stack`
(embedded Temporal dev server with its SQLite file, the gateway, the seeded twins in their own
process with zero latency and the PSA's webhooks pointed at the gateway) and the pssync worker
(`worker.run_workers`: in this process, or as `pssync worker` in a child process with
`--worker-process`), restarted with other settings for the quota phase. Then:

0. set-up, not timed: `--projects` + `--quota-projects` won deals provisioned by the real
   OpportunityToProject saga (PSA project linked to an ERP project, a USD rate card covering
   every role); `--workers` active workers (HCM active since before the entries' dates, ERP
   cost rates); entries created in the PSA twin with its bulk admin endpoint
   (`POST /psa/_admin/time_entries/bulk`, no webhooks): one worker, day and duration once per
   project (the duplicate check never fires), dated from the first of last month (an open ERP
   period) to yesterday. A warm-up of `--warmup` entries per project starts each project's
   pipeline and fills the master-data caches.
1. throughput: the clock starts, `--entries` approved entries are handed to their projects'
   pipelines the way the sweep does (`activities.time_to_invoice.signal_pipeline`, 1,000
   entries a signal) and the clock stops when the ledger (`store.time_posting_counts`) holds
   them all posted. The ERP twin is then read back (SuiteQL): every entry must be one timebill.
2. naive baseline, same run: `--naive` other entries, one `BenchNaiveTimeEntry` workflow each
   (on its own task queue, worker in this process) running `time.process_batch` with that one
   entry on the pssync ERP queue, `--naive-concurrency` in flight: entries/s from the first
   start to the last result. ratio = pipeline / naive.
3. latency: approvals at a steady `--latency-rps` for `--latency-s`, each announced by the PSA
   twin's signed `time_entry.approved` webhook to the gateway, which signals the project's
   pipeline. `--latency-mode bulk` (default): every 1/10 s one bulk request creates 10 entries
   approved, with `emit` (one webhook each); `api`: entries created unapproved beforehand, then
   one `PUT /api/v1/time_entries/{id}.json {"approved": true}` each (the twin cannot serve that
   and its webhooks at 100/s on 2 cores beside the rest). Latency per entry = the ledger row's
   `updated_at` when it turned `posted` (written right after the ERP answered) minus the wall
   clock just before the approving request; `latency_legs` splits it with the pipelines'
   histories: approval -> signal recorded, -> batch scheduled, -> batch started, -> posted.
4. quota: the worker restarts with `erp.rate_limit_rps` = `erp_quota_rps` = `--quota-rps`, the
   ERP twin answers 429 above `quota_rps` (its token bucket), and `--quota-projects` fresh
   pipelines get batches of `--quota-batch-size` entries, so ERP requests are the bottleneck.
   achieved_rps = ERP requests the twin served (2xx/3xx) in a `--quota-window-s` window that
   starts `--quota-warm-s` after the hand-off, while a backlog remains; then every entry must be
   posted with no exception item, and the twin's 429 count is reported.

The sweep Schedule is pushed out (`time_sweep_interval_s` = 1 day) so it cannot hand the
bench's entries to pipelines behind its back. Progress goes to stderr; the last line of stdout
is one JSON object (entries, pipeline_entries_per_s, naive_entries_per_s, ratio,
latency_p50_s, latency_p95_s, quota_rps, achieved_rps, quota_utilization, targets, meets,
per-phase details with CPU per process and breakdowns, machine, config). A phase that fails is
reported under `errors` and the next one runs. No sleep tunes anything: the waits poll for an
outcome with a deadline, and the quota window is a measurement interval.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import workflow

ROOT = Path(__file__).parent.parent
if not workflow.unsafe.in_sandbox():  # the sandbox re-imports this module to run the baseline
    ROOT = ROOT.resolve()
    sys.path.insert(0, str(ROOT))

with workflow.unsafe.imports_passed_through():
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import Client, WorkflowHistory
    from temporalio.worker import Worker

    import starter
    from activities.time_to_invoice import SWEEP_PAGE, signal_pipeline
    from contracts.naming import TASK_QUEUE, erp_task_queue, opportunity_workflow_id
    from contracts.settings import Settings, load_settings
    from contracts.v1.processes import ProvisionProjectResult
    from contracts.v1.time_to_invoice import (
        ENTRIES_CHANGED_SIGNAL,
        STATUS_QUERY,
        BatchEntry,
        BatchResult,
        EntriesChanged,
        EntryKind,
        EntryRef,
        PipelineStatus,
        ProcessBatch,
        TimePipelineInput,
        entry_key,
        pipeline_input,
    )
    from sandbox.seed import build_firm
    from workflows.time_to_invoice import BATCH_TIMEOUT, HEARTBEAT_TIMEOUT, PIPELINE_RETRY

NAIVE_QUEUE = "bench-tti-naive"
ERP_QUEUE = erp_task_queue(TASK_QUEUE)
SEED = 7
SYSTEMS = ("crm", "psa", "erp", "hcm")
STATIC_TOKEN = "dev-static-token"
"""Every twin accepts it (the connectors use OAuth2; the bench's own calls do not need to)."""
SIGNAL_CHUNK = SWEEP_PAGE
"""Entries per `entries_changed` signal, as the sweep sends them."""
BULK_CHUNK = 1000
SWEEP_OUT_S = 86_400.0
PHASES = ("throughput", "naive", "latency", "quota")
APPROVERS = 16
"""Concurrent approving requests at most (the latency phase's load generator)."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the baseline


@workflow.defn(name="BenchNaiveTimeEntry")
class BenchNaiveTimeEntry:
    """The naive design the pipeline replaces: one workflow and one activity per entry
    (`time.process_batch` with a batch of one, on the pssync ERP queue)."""

    @workflow.run
    async def run(self, request: ProcessBatch) -> BatchResult:
        result: BatchResult = await workflow.execute_activity(
            "time.process_batch",
            request,
            task_queue=ERP_QUEUE,
            start_to_close_timeout=BATCH_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=PIPELINE_RETRY,
            result_type=BatchResult,
        )
        return result


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """Linearly interpolated percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_s": round(percentile(values, 50), 4),
        "p95_s": round(percentile(values, 95), 4),
        "p99_s": round(percentile(values, 99), 4),
        "max_s": round(max(values), 4),
        "mean_s": round(statistics.fmean(values), 4),
    }


async def until(
    check: Callable[[], Awaitable[Any]], *, timeout_s: float, every_s: float, what: str
) -> Any:
    """Poll `check` until it returns something truthy; TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout_s:.0f} s")
        await asyncio.sleep(every_s)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of this process and of each of its children, by name
    (Linux /proc; empty elsewhere). Children of children (e.g. the twins' server) count apart
    under their own name when they are direct children."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    me = os.getpid()
    out: dict[str, float] = {}
    proc = Path("/proc")
    if not proc.exists():
        return out
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2 :].split()
        pid, ppid = int(entry.name), int(rest[1])
        if pid != me and ppid != me:
            continue
        seconds = (int(rest[11]) + int(rest[12])) / tick
        words = [c.decode(errors="replace") for c in cmd if c]
        if pid == me:
            name = "bench"
        elif any("temporal" in Path(w).name for w in words[:1]):
            name = "temporal_dev_server"
        elif "sandbox" in words:
            name = "twins"
        elif any("worker.main()" in w for w in words):
            name = "worker_process"
        else:
            name = Path(words[0]).name if words else entry.name
        out[name] = out.get(name, 0.0) + seconds
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, Any]:
    return {
        name: {
            "cpu_s": round(after[name] - before.get(name, 0.0), 2),
            "cores": round((after[name] - before.get(name, 0.0)) / wall, 2) if wall else None,
        }
        for name in sorted(after)
    }


# --------------------------------------------------------------------------- histories


def _ts(event: Any) -> float:
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
            scheduled[event.event_id] = (attrs.activity_type.name, _ts(event))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[event.activity_task_started_event_attributes.scheduled_event_id] = _ts(event)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sched_id = event.activity_task_completed_event_attributes.scheduled_event_id
            name, t_sched = scheduled[sched_id]
            t_done = _ts(event)
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
        t = _ts(event)
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


def entry_timeline(histories: Sequence[WorkflowHistory]) -> dict[str, dict[str, float]]:
    """Per entry id, from the pipelines' histories (server clock): when its `entries_changed`
    signal was recorded (the first), and when the `time.process_batch` that carried it was
    scheduled, started and completed (the last such batch)."""
    out: dict[str, dict[str, float]] = {}
    for history in histories:
        batches: dict[int, list[str]] = {}
        for event in history.events:
            kind = event.event_type
            t = _ts(event)
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


def run_breakdown(history: WorkflowHistory) -> dict[str, float]:
    """One short run: start -> close, its activities' queue wait and run time, its workflow
    tasks' queue and run time (seconds)."""
    events = list(history.events)
    acts = batch_timings(history, 0, math.inf)
    wft = workflow_task_time(history, 0, math.inf)
    return {
        "start_to_close": _ts(events[-1]) - _ts(events[0]),
        "activity_queue_wait": sum(a["wait"] for a in acts),
        "activity_run": sum(a["run"] for a in acts),
        "workflow_task_queue": wft["queue_s"],
        "workflow_task_run": wft["run_s"],
    }


def aggregate(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "runs_sampled": len(runs),
        **{f"{k}_p50_s": round(percentile([r[k] for r in runs], 50), 4) for k in runs[0]},
        **{f"{k}_p95_s": round(percentile([r[k] for r in runs], 95), 4) for k in runs[0]},
    }


# --------------------------------------------------------------------------- the worker


class WorkerRunner:
    """The pssync worker with per-phase settings: in this process (`worker.run_workers`), or as
    `pssync worker` in a child process. `restart` stops the running one first."""

    def __init__(self, stack: starter.Stack, *, in_process: bool, log_path: Path) -> None:
        self.stack = stack
        self.in_process = in_process
        self.log_path = log_path
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self.settings: Settings | None = None

    def phase_settings(self, *, erp_quota_rps: float, erp_rate_limit_rps: float | None) -> Settings:
        s = self.stack.settings.model_copy(deep=True)
        s.erp_quota_rps = erp_quota_rps
        s.erp = s.erp.model_copy(update={"rate_limit_rps": erp_rate_limit_rps})
        s.time_sweep_interval_s = SWEEP_OUT_S
        return s

    async def start(self, settings: Settings) -> None:
        import worker

        self.settings = settings
        if self.in_process:
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(
                worker.run_workers(self.stack.client, settings, self._stop)
            )
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith("PSSYNC_")}
        env.update(
            {
                "PSSYNC_HOME": str(settings.home),
                "PSSYNC_DATABASE_URL": settings.resolved_database_url,
                "PSSYNC_TEMPORAL__ADDRESS": settings.temporal.address,
                "PSSYNC_ERP_QUOTA_RPS": str(settings.erp_quota_rps),
                "PSSYNC_TIME_SWEEP_INTERVAL_S": str(settings.time_sweep_interval_s),
                "PSSYNC_WORKER_METRICS_PORT": str(_free_port()),
                **{f"PSSYNC_{n.upper()}__BASE_URL": getattr(settings, n).base_url for n in SYSTEMS},
            }
        )
        if settings.erp.rate_limit_rps:
            env["PSSYNC_ERP__RATE_LIMIT_RPS"] = str(settings.erp.rate_limit_rps)
        with self.log_path.open("ab") as out:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "import logging, worker; logging.getLogger('httpx').setLevel(logging.WARNING); "
                "worker.main()",
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )

    async def stop(self) -> None:
        if self._task is not None and self._stop is not None:
            self._stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 60)
            self._task = self._stop = None
        if self._proc is not None:
            if self._proc.returncode is None:
                self._proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(self._proc.wait(), 60)
                except TimeoutError:
                    self._proc.kill()
                    await self._proc.wait()
            self._proc = None

    async def restart(self, settings: Settings) -> None:
        await self.stop()
        await self.start(settings)

    def check_alive(self) -> None:
        if self._task is not None and self._task.done():
            self._task.result()
            raise RuntimeError("the in-process worker stopped")
        if self._proc is not None and self._proc.returncode is not None:
            raise RuntimeError(f"the worker process exited ({self._proc.returncode})")


# --------------------------------------------------------------------------- the data


@dataclass
class Project:
    psa_id: str
    made: int = 0
    """Entries generated for this project so far (the next one's index)."""


@dataclass
class Entry:
    project: str
    entry_id: str

    @property
    def key(self) -> str:
        return entry_key(EntryKind.TIME, self.entry_id)


@dataclass
class EntryFactory:
    """What the entries are made of: users (active workers) and days."""

    users: list[str]
    worker_of_user: dict[str, str]
    days: list[date]

    def next_entry(self, project: Project) -> dict[str, Any]:
        """A time entry no other entry of the project looks like (worker, day, minutes), so
        the duplicate check never fires: users fastest, then days, then durations."""
        k = project.made
        project.made += 1
        users, days = len(self.users), len(self.days)
        minutes = 60 + 15 * (k // (users * days))
        if minutes > 1440:
            raise ValueError("too many entries for the workers and days chosen")
        return {
            "workspace_id": int(project.psa_id),
            "user_id": int(self.users[k % users]),
            "date_performed": self.days[(k // users) % days].isoformat(),
            "time_in_minutes": minutes,
        }


class Twins:
    """The bench's own calls to the twins (they may run in another process): admin (bulk
    entries, faults, stats), PSA approvals, ERP SuiteQL read-back."""

    def __init__(self, stack: starter.Stack, max_connections: int = 32) -> None:
        import httpx

        self.base = stack.urls["sandbox"]
        self.http = httpx.AsyncClient(
            timeout=120,
            headers={"Authorization": f"Bearer {STATIC_TOKEN}"},
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def bulk(
        self, entries: list[dict[str, Any]], *, approved: bool, emit: bool = False
    ) -> list[str]:
        ids: list[str] = []
        for i in range(0, len(entries), BULK_CHUNK):
            r = await self.http.post(
                f"{self.base}/psa/_admin/time_entries/bulk",
                json={"entries": entries[i : i + BULK_CHUNK], "approved": approved, "emit": emit},
            )
            r.raise_for_status()
            ids += r.json()["ids"]
        return ids

    async def approve(self, entry_id: str) -> None:
        r = await self.http.put(
            f"{self.base}/psa/api/v1/time_entries/{entry_id}.json",
            json={"time_entry": {"approved": True}},
        )
        r.raise_for_status()

    async def worker_users(self) -> dict[str, str]:
        """HCM worker id -> PSA user id, from the PSA's external references."""
        out: dict[str, str] = {}
        page = 1
        while True:
            r = await self.http.get(
                f"{self.base}/psa/api/v1/external_references.json",
                params={
                    "service_name": "pssync",
                    "subject_type": "User",
                    "service_model": "hcm_worker",
                    "page": page,
                    "per_page": 200,
                },
            )
            r.raise_for_status()
            body = r.json()
            for ref in body.get("results", []):
                obj = body[ref["key"]][ref["id"]]
                out[str(obj["service_model_ref"])] = str(obj["subject_id"])
            if page >= int(body.get("meta", {}).get("page_count") or 0):
                return out
            page += 1

    async def faults(self, system: str, config: dict[str, Any]) -> None:
        r = await self.http.post(f"{self.base}/{system}/_admin/faults", json=config)
        r.raise_for_status()

    async def stats(self, system: str) -> dict[str, Any]:
        r = await self.http.get(f"{self.base}/{system}/_admin/stats")
        r.raise_for_status()
        return dict(r.json())

    async def reset_stats(self) -> None:
        for system in SYSTEMS:
            r = await self.http.post(f"{self.base}/{system}/_admin/stats/reset")
            r.raise_for_status()

    async def all_stats(self) -> dict[str, Any]:
        out = {}
        for system in SYSTEMS:
            s = await self.stats(system)
            out[system] = {
                "requests": s["requests"],
                "served": s["served"],
                "throttled_429": s["throttled_429"],
                "errors_5xx": s["errors_5xx"],
                "in_flight_max": s["in_flight_max"],
            }
        return out

    async def webhook_deliveries(self) -> list[dict[str, Any]]:
        r = await self.http.get(f"{self.base}/psa/_admin/webhooks/deliveries")
        r.raise_for_status()
        return list(r.json())

    async def timebills(self) -> list[dict[str, Any]]:
        """Every timebill in the ERP twin (SuiteQL, 1,000 a page)."""
        rows: list[dict[str, Any]] = []
        offset = 0
        while True:
            r = await self.http.post(
                f"{self.base}/erp/services/rest/query/v1/suiteql",
                params={"limit": 1000, "offset": offset},
                headers={"Prefer": "transient"},
                json={
                    "q": "SELECT id, externalid, custcol_pssync_source_entry, reverses "
                    "FROM timebill"
                },
            )
            r.raise_for_status()
            page = r.json()
            items = page.get("items", [])
            rows += items
            if not page.get("hasMore"):
                return rows
            offset += len(items) or 1000


# --------------------------------------------------------------------------- the bench


class Bench:
    def __init__(self, stack: starter.Stack, args: argparse.Namespace, runner: WorkerRunner):
        self.stack = stack
        self.args = args
        self.runner = runner
        self.client: Client = stack.client
        self.twins = Twins(stack)
        self.firm = build_firm(SEED)
        self.deal_counter = 0

    # -- set-up -------------------------------------------------------------------------------

    async def provision(self, count: int) -> list[str]:
        """`count` won deals through the OpportunityToProject saga (USD rate cards): the PSA
        project ids."""
        from connectors.crm import SalesforceCrm

        templates = [
            i
            for i in starter.provisionable_templates(self.firm)
            if self.firm.opportunities[i].currency == "USD"
        ]
        crm = SalesforceCrm(self.stack.settings.crm.model_copy(update={"max_concurrency": 32}))

        async def one(n: int) -> str:
            index = templates[n % len(templates)]
            new = starter.deal_from_template(
                self.firm, index, name=f"{self.firm.opportunities[index].name} (tti bench {n})"
            )
            opp_id = await crm.create_opportunity(new)
            await crm.set_stage(opp_id, "Closed Won")
            wf_id = opportunity_workflow_id(self.stack.settings.crm.tenant, opp_id)
            handle = await starter.wait_for_workflow(
                self.client, wf_id, timeout_s=120, result_type=ProvisionProjectResult
            )
            result: ProvisionProjectResult = await asyncio.wait_for(handle.result(), 120)
            return result.psa_project_id

        try:
            return list(await asyncio.gather(*(one(n) for n in range(count))))
        finally:
            await crm.aclose()

    async def entry_factory(self) -> EntryFactory:
        today = date.today()
        first = date(today.year, today.month, 1)
        first = (first - timedelta(days=1)).replace(day=1)  # the first of last month
        days = [first + timedelta(days=d) for d in range((today - first).days)]
        users = await self.twins.worker_users()
        fit = [
            w
            for w in self.firm.workers
            if w.status == "active"
            and w.termination_date is None
            and w.hire_date < first
            and w.id in users
        ]
        if len(fit) < self.args.workers:
            raise RuntimeError(f"only {len(fit)} workers fit, {self.args.workers} asked for")
        chosen = fit[: self.args.workers]
        return EntryFactory(
            users=[users[w.id] for w in chosen],
            worker_of_user={users[w.id]: w.id for w in chosen},
            days=days,
        )

    async def make_entries(
        self, factory: EntryFactory, projects: list[Project], count: int, *, approved: bool
    ) -> list[Entry]:
        """`count` entries spread round-robin over `projects`, created in one go per chunk."""
        specs = [factory.next_entry(projects[i % len(projects)]) for i in range(count)]
        ids = await self.twins.bulk(specs, approved=approved)
        return [Entry(str(s["workspace_id"]), i) for s, i in zip(specs, ids, strict=True)]

    # -- helpers ------------------------------------------------------------------------------

    async def counts(self) -> dict[str, int]:
        return await asyncio.to_thread(self.stack.store.time_posting_counts)

    async def hand_over(
        self, entries: list[Entry], defaults: TimePipelineInput, source: str
    ) -> None:
        """Signal-with-start each project's pipeline with its entries, `SIGNAL_CHUNK` a signal,
        projects concurrently — what the sweep does with what it finds."""
        by_project: dict[str, list[EntryRef]] = {}
        for e in entries:
            by_project.setdefault(e.project, []).append(
                EntryRef(kind=EntryKind.TIME, entry_id=e.entry_id, version="2")
            )

        async def one(project: str, refs: list[EntryRef]) -> None:
            for i in range(0, len(refs), SIGNAL_CHUNK):
                await signal_pipeline(
                    self.client,
                    defaults,
                    project,
                    ENTRIES_CHANGED_SIGNAL,
                    EntriesChanged(refs=refs[i : i + SIGNAL_CHUNK], source=source),
                    task_queue=TASK_QUEUE,
                )

        await asyncio.gather(*(one(p, r) for p, r in by_project.items()))

    async def wait_posted(self, target: int, *, timeout_s: float, what: str) -> dict[str, int]:
        """Until the ledger holds `target` posted rows; fails early on exception items."""

        async def check() -> dict[str, int] | None:
            self.runner.check_alive()
            c = await self.counts()
            if c["exception"] or c["rejected"]:
                raise RuntimeError(f"{what}: entries became exception items: {c}")
            return c if c["posted"] >= target else None

        result: dict[str, int] = await until(check, timeout_s=timeout_s, every_s=0.05, what=what)
        return result

    async def pipeline_statuses(self, projects: list[str]) -> list[PipelineStatus]:
        from contracts.naming import time_pipeline_workflow_id

        tenant = self.stack.settings.psa.tenant
        return list(
            await asyncio.gather(
                *(
                    self.client.get_workflow_handle(time_pipeline_workflow_id(tenant, p)).query(
                        STATUS_QUERY, result_type=PipelineStatus
                    )
                    for p in projects
                )
            )
        )

    @staticmethod
    def latency_projects(entries: list[Entry]) -> list[str]:
        return sorted({e.project for e in entries})

    async def pipeline_histories(self, projects: list[str]) -> list[WorkflowHistory]:
        from contracts.naming import time_pipeline_workflow_id

        tenant = self.stack.settings.psa.tenant
        return list(
            await asyncio.gather(
                *(
                    self.client.get_workflow_handle(
                        time_pipeline_workflow_id(tenant, p)
                    ).fetch_history()
                    for p in projects
                )
            )
        )

    # -- phases -------------------------------------------------------------------------------

    async def throughput(
        self, entries: list[Entry], projects: list[str], defaults: TimePipelineInput
    ) -> dict[str, Any]:
        before = await self.counts()
        target = before["posted"] + len(entries)
        await self.twins.reset_stats()
        cpu0 = process_cpu()
        log(f"throughput: handing {len(entries)} approved entries to {len(projects)} pipelines")
        wall0 = time.time()
        t0 = time.perf_counter()
        await self.hand_over(entries, defaults, "bench")
        handed = time.perf_counter() - t0
        after = await self.wait_posted(
            target, timeout_s=self.args.phase_timeout_s, what="throughput"
        )
        elapsed = time.perf_counter() - t0
        wall1 = time.time()
        cpu1 = process_cpu()
        twins = await self.twins.all_stats()
        log(f"  {len(entries)} posted in {elapsed:.2f} s ({len(entries) / elapsed:.0f}/s)")

        # ERP read-back: one timebill per entry, none twice.
        rows = await self.twins.timebills()
        wanted = {e.entry_id for e in entries}
        per_entry: dict[str, int] = {}
        for r in rows:
            src = str(r.get("custcol_pssync_source_entry") or "")
            if src in wanted and not r.get("reverses"):
                per_entry[src] = per_entry.get(src, 0) + 1
        missing = len(wanted - per_entry.keys())
        duplicates = sum(1 for n in per_entry.values() if n > 1)

        histories = await self.pipeline_histories(projects)
        batches = [b for h in histories for b in batch_timings(h, wall0, wall1 + 1)]
        wft = [workflow_task_time(h, wall0, wall1 + 1) for h in histories]
        busy = sum(b["run"] for b in batches)
        return {
            "entries": len(entries),
            "elapsed_s": round(elapsed, 3),
            "entries_per_s": round(len(entries) / elapsed, 1),
            "hand_over_s": round(handed, 3),
            "ledger_before": before,
            "ledger_after": after,
            "erp_timebills_for_these_entries": len(per_entry),
            "erp_missing": missing,
            "erp_duplicates": duplicates,
            "batches": len(batches),
            "entries_per_batch": round(len(entries) / len(batches), 1) if batches else None,
            "batch_run": summary([b["run"] for b in batches]),
            "batch_queue_wait": summary([b["wait"] for b in batches]),
            "batches_in_flight_mean": round(busy / elapsed, 2),
            "workflow_tasks": {
                "count": sum(w["count"] for w in wft),
                "run_s_total": round(sum(w["run_s"] for w in wft), 3),
                "queue_s_total": round(sum(w["queue_s"] for w in wft), 3),
            },
            "twin_requests": twins,
            "cpu": cpu_delta(cpu0, cpu1, elapsed),
        }

    async def naive(self, entries: list[Entry], warm: list[Entry]) -> dict[str, Any]:
        run_tag = f"{int(time.time())}"

        def wf_id(e: Entry, label: str) -> str:
            return f"bench-naive/{run_tag}/{label}/{e.entry_id}"

        async def one(e: Entry, label: str) -> float:
            start = time.perf_counter()
            await self.client.execute_workflow(
                BenchNaiveTimeEntry.run,
                ProcessBatch(
                    psa_tenant=self.stack.settings.psa.tenant,
                    psa_project_id=e.project,
                    batch_id=f"naive-{e.entry_id}",
                    entries=[BatchEntry(ref=EntryRef(entry_id=e.entry_id, version="2"))],
                ),
                id=wf_id(e, label),
                task_queue=NAIVE_QUEUE,
            )
            return time.perf_counter() - start

        async with Worker(self.client, task_queue=NAIVE_QUEUE, workflows=[BenchNaiveTimeEntry]):
            if warm:
                log(f"naive: warm-up, {len(warm)} entries")
                await asyncio.gather(*(one(e, "warm") for e in warm))
            before = await self.counts()
            await self.twins.reset_stats()
            cpu0 = process_cpu()
            limit = self.args.naive_concurrency or len(entries)
            log(f"naive: {len(entries)} workflows (one entry each), {limit} in flight")
            sem = asyncio.Semaphore(limit)

            async def bounded(e: Entry) -> float:
                async with sem:
                    return await one(e, "run")

            t0 = time.perf_counter()
            results = await asyncio.gather(*(bounded(e) for e in entries), return_exceptions=True)
            elapsed = time.perf_counter() - t0
            cpu1 = process_cpu()
        twins = await self.twins.all_stats()
        after = await self.counts()
        ok = [r for r in results if isinstance(r, float)]
        errors = [repr(r) for r in results if not isinstance(r, float)]
        log(f"  {len(ok)} done in {elapsed:.2f} s ({len(ok) / elapsed:.1f}/s)")
        step = max(1, len(entries) // self.args.history_sample)
        sample = [wf_id(e, "run") for e in entries[::step]][: self.args.history_sample]
        histories = await asyncio.gather(
            *(self.client.get_workflow_handle(w).fetch_history() for w in sample)
        )
        return {
            "entries": len(entries),
            "ok": len(ok),
            "failed": len(errors),
            "errors": errors[:5],
            "elapsed_s": round(elapsed, 3),
            "entries_per_s": round(len(ok) / elapsed, 2),
            "posted": after["posted"] - before["posted"],
            "workflow_client_latency": summary(ok),
            "breakdown": aggregate([run_breakdown(h) for h in histories]),
            "twin_requests": twins,
            "cpu": cpu_delta(cpu0, cpu1, elapsed),
        }

    async def latency(
        self, factory: EntryFactory, projects: list[Project], count: int
    ) -> dict[str, Any]:
        """Approvals at a steady rate, each announced by the PSA twin's signed webhook. `api`:
        entries created unapproved before the clock, then approved one request each (`PUT
        /api/v1/time_entries/{id}.json`); `bulk`: `--latency-per-call` entries a request,
        created approved by the bulk admin endpoint with `emit` (one webhook per entry)."""
        rate = self.args.latency_rps
        mode = self.args.latency_mode
        per_call = 1 if mode == "api" else self.args.latency_per_call
        units: list[list[Any]] = []
        if mode == "api":
            made = await self.make_entries(factory, projects, count, approved=False)
            units = [[e] for e in made]
        else:
            specs = [factory.next_entry(projects[i % len(projects)]) for i in range(count)]
            units = [specs[i : i + per_call] for i in range(0, len(specs), per_call)]
        before = await self.counts()
        await self.twins.reset_stats()
        cpu0 = process_cpu()
        sent: dict[str, float] = {}
        entries: list[Entry] = []
        api_s: list[float] = []
        errors: list[str] = []
        how = (
            "one PSA API request each"
            if mode == "api"
            else f"{per_call} a bulk request (created approved, one webhook each)"
        )
        log(f"latency: approving {count} entries at {rate:g}/s, {how}")

        async def approve(unit: list[Any]) -> None:
            wall = time.time()
            t = time.perf_counter()
            try:
                if mode == "api":
                    await self.twins.approve(unit[0].entry_id)
                    done = list(unit)
                else:
                    ids = await self.twins.bulk(unit, approved=True, emit=True)
                    done = [
                        Entry(str(x["workspace_id"]), i) for x, i in zip(unit, ids, strict=True)
                    ]
            except Exception as exc:  # reported, not raised
                errors.append(repr(exc))
                return
            finally:
                api_s.append(time.perf_counter() - t)
            for e in done:
                sent[e.key] = wall
                entries.append(e)

        # A fixed set of senders takes the requests in order, each at its due time: an
        # open-loop schedule with few connections, so the load generator stays cheap.
        call_rate = rate / per_call
        t0 = time.perf_counter()
        lag_max = 0.0
        queue = iter(enumerate(units))

        async def sender() -> None:
            nonlocal lag_max
            for i, unit in queue:
                due = t0 + i / call_rate
                now = time.perf_counter()
                if due > now:
                    await asyncio.sleep(due - now)
                else:
                    lag_max = max(lag_max, now - due)
                await approve(unit)

        await asyncio.gather(*(sender() for _ in range(APPROVERS)))
        approving = time.perf_counter() - t0
        log(f"  approved in {approving:.1f} s ({len(entries) / approving:.1f}/s); waiting")
        if errors:
            raise RuntimeError(f"latency: {len(errors)} approving requests failed: {errors[0]}")
        after = await self.wait_posted(
            before["posted"] + len(entries), timeout_s=self.args.phase_timeout_s, what="latency"
        )
        drained = time.perf_counter() - t0
        cpu1 = process_cpu()
        rows = await asyncio.to_thread(self.stack.store.time_postings, list(sent))
        latencies = [
            rows[k].updated_at.timestamp() - sent[k]
            for k in sent
            if k in rows and rows[k].state == "posted"
        ]
        histories = await self.pipeline_histories(self.latency_projects(entries))
        timeline = entry_timeline(histories)
        w0, w1 = min(sent.values()), time.time()
        batches = [b for h in histories for b in batch_timings(h, w0, w1)]
        wft = [workflow_task_time(h, w0, w1) for h in histories]
        signals = sum(
            1
            for h in histories
            for ev in h.events
            if ev.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
            and w0 <= _ts(ev) <= w1
        )
        legs: dict[str, list[float]] = {
            "approve_to_signal": [],
            "signal_to_batch_scheduled": [],
            "batch_queue_wait": [],
            "batch_start_to_posted": [],
        }
        for e in entries:
            tl, row = timeline.get(e.entry_id, {}), rows.get(e.key)
            if row is None or not {"signal", "scheduled", "started"} <= tl.keys():
                continue
            legs["approve_to_signal"].append(tl["signal"] - sent[e.key])
            legs["signal_to_batch_scheduled"].append(tl["scheduled"] - tl["signal"])
            legs["batch_queue_wait"].append(tl["started"] - tl["scheduled"])
            legs["batch_start_to_posted"].append(row.updated_at.timestamp() - tl["started"])
        twins = await self.twins.all_stats()
        deliveries = await self.twins.webhook_deliveries()
        approved_events = [d for d in deliveries if d["event_type"] == "time_entry.approved"]
        log(
            f"  p50 {percentile(latencies, 50):.3f} s, p95 {percentile(latencies, 95):.3f} s, "
            f"max {max(latencies):.3f} s"
        )
        return {
            "entries": len(entries),
            "approval_mode": mode,
            "entries_per_request": per_call,
            "approval_rate_target": rate,
            "approval_rate_achieved": round(len(entries) / approving, 2),
            "approval_schedule_lag_max_s": round(lag_max, 4),
            "approval_request": summary(api_s),
            "approval_errors": errors[:5],
            "posted": after["posted"] - before["posted"],
            "latency": summary(latencies),
            "latency_legs": {k: summary(v) for k, v in legs.items()},
            "pipelines": {
                "signals": signals,
                "batches": len(batches),
                "entries_per_batch": round(len(entries) / len(batches), 1) if batches else None,
                "batch_run": summary([b["run"] for b in batches]),
                "workflow_tasks": sum(w["count"] for w in wft),
                "workflow_task_queue": round(sum(w["queue_s"] for w in wft), 2),
                "workflow_task_run": round(sum(w["run_s"] for w in wft), 2),
            },
            "approve_to_all_posted_s": round(drained, 2),
            "webhooks": {
                "sent": len(approved_events),
                "retried": sum(1 for d in approved_events if d["attempts"] > 1),
                "undelivered": sum(1 for d in approved_events if not d["delivered"]),
            },
            "twin_requests": twins,
            "cpu": cpu_delta(cpu0, cpu1, drained),
        }

    async def quota(
        self, entries: list[Entry], projects: list[str], defaults: TimePipelineInput
    ) -> dict[str, Any]:
        q = self.args.quota_rps
        before = await self.counts()
        await self.twins.faults("erp", {"quota_rps": q})
        await self.twins.reset_stats()
        log(
            f"quota: ERP twin quota {q:g} rps, worker paced at {q:g} rps; {len(entries)} entries "
            f"in batches of {defaults.batch_size} to {len(projects)} fresh pipelines"
        )
        try:
            t0 = time.perf_counter()
            await self.hand_over(entries, defaults, "bench")
            await asyncio.sleep(max(0.0, self.args.quota_warm_s - (time.perf_counter() - t0)))
            s1, t1 = await self.twins.stats("erp"), time.perf_counter()
            await asyncio.sleep(self.args.quota_window_s)  # the measurement window
            s2, t2 = await self.twins.stats("erp"), time.perf_counter()
            mid = await self.counts()
            backlog = before["posted"] + len(entries) - mid["posted"]
            log(
                f"  window: {s2['served'] - s1['served']} ERP requests served in "
                f"{t2 - t1:.1f} s; backlog at its end {backlog} entries"
            )
            after = await self.wait_posted(
                before["posted"] + len(entries), timeout_s=self.args.phase_timeout_s, what="quota"
            )
            total = time.perf_counter() - t0
            final = await self.twins.stats("erp")
        finally:
            await self.twins.faults("erp", {})
        statuses = await self.pipeline_statuses(projects)
        counters: dict[str, int] = {}
        for st in statuses:
            for k, v in st.counters.items():
                counters[k] = counters.get(k, 0) + v
        achieved = (s2["served"] - s1["served"]) / (t2 - t1)
        return {
            "quota_rps": q,
            "entries": len(entries),
            "batch_size": defaults.batch_size,
            "window_s": round(t2 - t1, 2),
            "window_starts_after_s": round(t1 - t0, 2),
            "served_in_window": s2["served"] - s1["served"],
            "throttled_429_in_window": s2["throttled_429"] - s1["throttled_429"],
            "achieved_rps": round(achieved, 2),
            "utilization": round(achieved / q, 3),
            "backlog_at_window_end": backlog,
            "all_posted_after_s": round(total, 2),
            "erp_stats_phase": {k: final[k] for k in ("requests", "served", "throttled_429")},
            "throttled_429": final["throttled_429"],
            "entries_posted": after["posted"] - before["posted"],
            "entries_failed": len(entries) - (after["posted"] - before["posted"]),
            "exception_items": after["exception"] - before["exception"],
            "pipeline_counters": counters,
        }


# --------------------------------------------------------------------------- orchestration


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    wall_start = time.perf_counter()
    mach = machine()
    tmp = Path(tempfile.mkdtemp(prefix="pssync-bench-tti-"))
    home = tmp / ".pssync"
    settings = load_settings(
        home=home, erp_quota_rps=args.erp_quota_rps, time_sweep_interval_s=SWEEP_OUT_S
    )
    temporal_db: Path | None = None
    if args.temporal_db_dir:
        temporal_db = Path(args.temporal_db_dir) / f"pssync-bench-tti-{os.getpid()}.db"
        settings.temporal.db_filename = str(temporal_db)
    where = "its own process" if args.worker_process else "this process"
    log(f"home {home}; starting the stack (dev server, gateway, twins; the worker in {where})")
    async with starter.running_stack(
        settings, seed=SEED, ephemeral_ports=True, run_worker=False, twins_process=True
    ) as stack:
        runner = WorkerRunner(
            stack, in_process=not args.worker_process, log_path=home / "worker.log"
        )
        bench = Bench(stack, args, runner)
        try:
            base = runner.phase_settings(erp_quota_rps=args.erp_quota_rps, erp_rate_limit_rps=None)
            await runner.start(base)
            result = await measure(bench, args, base)
        finally:
            await bench.twins.aclose()
            await runner.stop()
    result["wall_s"] = round(time.perf_counter() - wall_start, 2)
    result["machine"] = mach
    if args.keep_home:
        log(f"kept {home}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
        if temporal_db is not None:
            for path in temporal_db.parent.glob(f"{temporal_db.name}*"):
                path.unlink(missing_ok=True)
    return result


async def measure(bench: Bench, args: argparse.Namespace, base: Settings) -> dict[str, Any]:
    phases = set(args.phases.split(","))
    unknown = phases - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))}")
    t_setup = time.perf_counter()
    n_quota_projects = args.quota_projects if "quota" in phases else 0
    log(f"set-up: provisioning {args.projects} + {n_quota_projects} projects (saga)")
    psa_ids = await bench.provision(args.projects + n_quota_projects)
    main = [Project(p) for p in psa_ids[: args.projects]]
    quota_projects = [Project(p) for p in psa_ids[args.projects :]]
    factory = await bench.entry_factory()
    n_through = args.entries if "throughput" in phases else 0
    n_naive = args.naive if "naive" in phases else 0
    n_naive_warm = args.naive_warmup if "naive" in phases else 0
    n_latency = int(args.latency_rps * args.latency_s) if "latency" in phases else 0
    n_quota = (
        args.quota_entries
        or math.ceil(
            args.quota_rps
            * args.quota_batch_size
            / args.quota_requests_per_batch
            * (args.quota_warm_s + args.quota_window_s)
            * 1.5
        )
        if "quota" in phases
        else 0
    )
    log(
        f"set-up: creating entries ({args.warmup} a project warm-up, {n_through} throughput, "
        f"{n_naive_warm} + {n_naive} naive, {n_latency} latency, {n_quota} quota)"
    )
    warm = await bench.make_entries(factory, main, args.warmup * len(main), approved=True)
    through = await bench.make_entries(factory, main, n_through, approved=True)
    naive_warm = await bench.make_entries(factory, main, n_naive_warm, approved=True)
    naive = await bench.make_entries(factory, main, n_naive, approved=True)
    quota = await bench.make_entries(factory, quota_projects, n_quota, approved=True)

    defaults = pipeline_input(base, "-")
    log(f"warm-up: {len(warm)} entries through {len(main)} pipelines")
    start_counts = await bench.counts()
    await bench.hand_over(warm, defaults, "bench-warm-up")
    await bench.wait_posted(start_counts["posted"] + len(warm), timeout_s=120, what="warm-up")
    setup_s = time.perf_counter() - t_setup

    projects = [p.psa_id for p in main]
    errors: dict[str, str] = {}

    async def phase(name: str, job: Callable[[], Awaitable[dict[str, Any]]]) -> Any:
        """One phase; a failure is reported (and the next phase runs) rather than raised."""
        try:
            return await job()
        except Exception as exc:
            log(f"{name} failed: {exc!r}")
            errors[name] = repr(exc)
            return None

    tp = (
        await phase("throughput", lambda: bench.throughput(through, projects, defaults))
        if through
        else None
    )
    nv = await phase("naive", lambda: bench.naive(naive, naive_warm)) if naive else None
    lt = (
        await phase("latency", lambda: bench.latency(factory, main, n_latency))
        if n_latency
        else None
    )
    qt = None
    if quota:
        log("quota: restarting the worker with the ERP quota settings")
        await bench.runner.restart(
            bench.runner.phase_settings(
                erp_quota_rps=args.quota_rps, erp_rate_limit_rps=args.quota_rps
            )
        )
        quota_defaults = defaults.model_copy(update={"batch_size": args.quota_batch_size})
        qt = await phase(
            "quota",
            lambda: bench.quota(quota, [p.psa_id for p in quota_projects], quota_defaults),
        )

    pipeline_rate = tp["entries_per_s"] if tp else None
    naive_rate = nv["entries_per_s"] if nv else None
    ratio = pipeline_rate / naive_rate if pipeline_rate and naive_rate else None
    p95 = lt["latency"].get("p95_s") if lt else None
    final = await bench.counts()
    return {
        "bench": "time_to_invoice",
        "entries": tp["entries"] if tp else 0,
        "pipeline_entries_per_s": pipeline_rate,
        "naive_entries_per_s": naive_rate,
        "ratio": round(ratio, 1) if ratio else None,
        "latency_p50_s": lt["latency"].get("p50_s") if lt else None,
        "latency_p95_s": p95,
        "quota_rps": qt["quota_rps"] if qt else None,
        "achieved_rps": qt["achieved_rps"] if qt else None,
        "quota_utilization": qt["utilization"] if qt else None,
        "throttled_429": qt["throttled_429"] if qt else None,
        "quota_entries_failed": qt["entries_failed"] if qt else None,
        "targets": {
            "pipeline_entries_per_s": 1000,
            "ratio": 20,
            "latency_p95_s": 3,
            "quota_utilization": 0.9,
        },
        "meets": {
            "pipeline_entries_per_s": pipeline_rate >= 1000 if pipeline_rate else None,
            "ratio": ratio >= 20 if ratio else None,
            "latency_p95_s": p95 <= 3 if p95 is not None else None,
            "quota_utilization": (
                qt["utilization"] >= 0.9
                and qt["entries_failed"] == 0
                and qt["exception_items"] == 0
                and qt["pipeline_counters"].get("batches_failed", 0) == 0
                if qt
                else None
            ),
        },
        "errors": errors,
        "throughput": tp,
        "naive": nv,
        "latency": lt,
        "quota": qt,
        "ledger_final": final,
        "setup_s": round(setup_s, 1),
        "config": {
            "entries": args.entries,
            "projects": args.projects,
            "workers": args.workers,
            "days": len(factory.days),
            "warmup_per_project": args.warmup,
            "naive": args.naive,
            "naive_warmup": args.naive_warmup,
            "naive_concurrency": args.naive_concurrency or args.naive,
            "latency_rps": args.latency_rps,
            "latency_s": args.latency_s,
            "latency_mode": args.latency_mode,
            "latency_per_call": args.latency_per_call if args.latency_mode == "bulk" else 1,
            "quota_rps": args.quota_rps,
            "quota_projects": args.quota_projects,
            "quota_batch_size": args.quota_batch_size,
            "quota_entries": n_quota,
            "quota_warm_s": args.quota_warm_s,
            "quota_window_s": args.quota_window_s,
            "erp_quota_rps_other_phases": args.erp_quota_rps,
            "time_batch_size": defaults.batch_size,
            "time_linger_ms": defaults.linger_ms,
            "time_batches_in_flight": defaults.max_batches_in_flight,
            "time_sweep_interval_s": SWEEP_OUT_S,
            "worker": "own process (pssync worker)" if args.worker_process else "in process",
            "twins": "own process (pssync sandbox), zero latency",
            "gateway": "in process",
            "temporal": "embedded dev server, SQLite file "
            + (f"in {args.temporal_db_dir}" if args.temporal_db_dir else "under the temp home"),
            "store": "SQLite file under the temp home",
            "phases": sorted(phases, key=PHASES.index),
            "seed": SEED,
        },
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--projects", type=int, default=8, help="pipelines for the throughput")
    parser.add_argument("--workers", type=int, default=50, help="active workers entering time")
    parser.add_argument("--warmup", type=int, default=25, help="warm-up entries per project")
    parser.add_argument("--naive", type=int, default=400, help="entries in the naive baseline")
    parser.add_argument("--naive-warmup", type=int, default=20)
    parser.add_argument(
        "--naive-concurrency",
        type=int,
        default=20,
        help="naive workflows in flight (0: all at once)",
    )
    parser.add_argument("--latency-rps", type=float, default=100.0)
    parser.add_argument("--latency-s", type=float, default=25.0)
    parser.add_argument(
        "--latency-mode",
        choices=("bulk", "api"),
        default="bulk",
        help="bulk: entries created approved by the PSA twin's bulk endpoint with webhooks, "
        "--latency-per-call a request; api: one PSA API approval request per entry",
    )
    parser.add_argument("--latency-per-call", type=int, default=10)
    parser.add_argument("--quota-rps", type=float, default=20.0)
    parser.add_argument("--quota-projects", type=int, default=4)
    parser.add_argument("--quota-batch-size", type=int, default=5)
    parser.add_argument("--quota-warm-s", type=float, default=3.0)
    parser.add_argument("--quota-window-s", type=float, default=25.0)
    parser.add_argument(
        "--quota-entries",
        type=int,
        default=0,
        help="default: enough for the window with a margin (about 4 ERP requests a batch)",
    )
    parser.add_argument("--quota-requests-per-batch", type=float, default=4.0)
    parser.add_argument(
        "--erp-quota-rps",
        type=float,
        default=50.0,
        help="settings.erp_quota_rps outside the quota phase (the shipped default)",
    )
    parser.add_argument(
        "--worker-process",
        action="store_true",
        help="run the pssync worker as `pssync worker` in its own process",
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help="which phases to run, comma-separated (default: all)",
    )
    parser.add_argument("--phase-timeout-s", type=float, default=180.0)
    parser.add_argument("--history-sample", type=int, default=40)
    parser.add_argument("--keep-home", action="store_true")
    parser.add_argument(
        "--temporal-db-dir",
        default=None,
        help="put the dev server's SQLite file there (e.g. /dev/shm) instead of the temp home",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(run(args))
    print(json.dumps(result))
    tp, nv = result["throughput"], result["naive"]
    ok = (
        not result["errors"]
        and (tp is None or (tp["erp_missing"] == 0 and tp["erp_duplicates"] == 0))
        and (nv is None or nv["failed"] == 0)
        and not result["quota_entries_failed"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
