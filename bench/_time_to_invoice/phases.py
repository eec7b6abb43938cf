"""The time-to-invoice bench's timed phases through the pipelines: throughput (with the ERP
read back), approval-to-posting latency at a steady rate, and ERP quota use."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench._harness import cpu_budget, cpu_delta, log, percentile, process_cpu, summary
from bench._harness.histories import (
    batch_timings,
    entry_timeline,
    signals_between,
    workflow_task_time,
)
from bench._time_to_invoice.world import Bench, Entry, EntryFactory, Project
from contracts.v1.time_to_invoice import TimePipelineInput
from demo.waits import actor_token

APPROVERS = 16
"""Concurrent approving requests at most (the latency phase's load generator)."""


# --------------------------------------------------------------------------- throughput


async def throughput(
    bench: Bench, entries: list[Entry], projects: list[str], defaults: TimePipelineInput
) -> dict[str, Any]:
    before = await bench.counts()
    target = before["posted"] + len(entries)
    await bench.twins.reset_stats()
    cpu0 = process_cpu()
    log(f"throughput: handing {len(entries)} approved entries to {len(projects)} pipelines")
    wall0 = time.time()
    t0 = time.perf_counter()
    await bench.hand_over(entries, defaults, "bench")
    handed = time.perf_counter() - t0
    after = await bench.wait_posted(target, timeout_s=bench.args.phase_timeout_s, what="throughput")
    elapsed = time.perf_counter() - t0
    wall1 = time.time()
    cpu1 = process_cpu()
    twins = await bench.twins.all_stats()
    log(f"  {len(entries)} posted in {elapsed:.2f} s ({len(entries) / elapsed:.0f}/s)")
    per_entry = await erp_read_back(bench, entries)
    histories = await bench.pipeline_histories(projects)
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
        "erp_missing": len({e.entry_id for e in entries} - per_entry.keys()),
        "erp_duplicates": sum(1 for n in per_entry.values() if n > 1),
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
        "cpu": (cpu := cpu_delta(cpu0, cpu1, elapsed)),
        "cpu_per_entry": cpu_budget(cpu, len(entries)),
    }


async def erp_read_back(bench: Bench, entries: list[Entry]) -> dict[str, int]:
    """ERP read-back: live timebills per entry (one each, none twice, is right)."""
    rows = await bench.twins.timebills()
    wanted = {e.entry_id for e in entries}
    per_entry: dict[str, int] = {}
    for r in rows:
        src = str(r.get("custcol_pssync_source_entry") or "")
        if src in wanted and not r.get("reverses"):
            per_entry[src] = per_entry.get(src, 0) + 1
    return per_entry


# --------------------------------------------------------------------------- latency


@dataclass
class Approvals:
    """What the latency phase's load generator did: when each entry was approved (wall
    clock, by ledger key), the entries, each request's time and the failures."""

    sent: dict[str, float] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    api_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    approving_s: float = 0.0
    lag_max: float = 0.0


async def latency(
    bench: Bench, factory: EntryFactory, projects: list[Project], count: int
) -> dict[str, Any]:
    """Approvals at a steady rate, each announced by the PSA twin's signed webhook. `api`:
    entries created unapproved before the clock, then approved one request each (`PUT
    /api/v1/time_entries/{id}.json`); `bulk`: `--latency-per-call` entries a request,
    created approved by the bulk admin endpoint with `emit` (one webhook per entry)."""
    rate = bench.args.latency_rps
    mode = bench.args.latency_mode
    per_call = 1 if mode == "api" else bench.args.latency_per_call
    units: list[list[Any]] = []
    if mode == "api":
        made = await bench.make_entries(factory, projects, count, approved=False)
        units = [[e] for e in made]
    else:
        specs = [factory.next_entry(projects[i % len(projects)]) for i in range(count)]
        units = [specs[i : i + per_call] for i in range(0, len(specs), per_call)]
    before = await bench.counts()
    await bench.twins.reset_stats()
    in_gateway0 = await gateway_webhook_times(bench)
    cpu0 = process_cpu()
    how = (
        "one PSA API request each"
        if mode == "api"
        else f"{per_call} a bulk request (created approved, one webhook each)"
    )
    log(f"latency: approving {count} entries at {rate:g}/s, {how}")
    t0 = time.perf_counter()
    done = await approve_on_schedule(bench, units, rate / per_call, t0)
    approving = done.approving_s
    log(f"  approved in {approving:.1f} s ({len(done.entries) / approving:.1f}/s); waiting")
    if done.errors:
        raise RuntimeError(
            f"latency: {len(done.errors)} approving requests failed: {done.errors[0]}"
        )
    after = await bench.wait_posted(
        before["posted"] + len(done.entries),
        timeout_s=bench.args.phase_timeout_s,
        what="latency",
    )
    drained = time.perf_counter() - t0
    cpu1 = process_cpu()
    report = await latency_report(bench, done)
    twins = await bench.twins.all_stats()
    webhooks = await webhook_report(bench)
    webhooks["in_gateway"] = in_gateway(in_gateway0, await gateway_webhook_times(bench))
    return {
        "entries": len(done.entries),
        "approval_mode": mode,
        "entries_per_request": per_call,
        "approval_rate_target": rate,
        "approval_rate_achieved": round(len(done.entries) / approving, 2),
        "approval_schedule_lag_max_s": round(done.lag_max, 4),
        "approval_request": summary(done.api_s),
        "approval_errors": done.errors[:5],
        "posted": after["posted"] - before["posted"],
        **report,
        "approve_to_all_posted_s": round(drained, 2),
        "webhooks": webhooks,
        "twin_requests": twins,
        "cpu": (cpu := cpu_delta(cpu0, cpu1, drained)),
        "cpu_per_approval": cpu_budget(cpu, len(done.entries), rate=rate),
    }


async def approve_on_schedule(
    bench: Bench, units: list[list[Any]], call_rate: float, t0: float
) -> Approvals:
    """A fixed set of senders takes the requests in order, each at its due time: an
    open-loop schedule with few connections, so the load generator stays cheap."""
    done = Approvals()
    api = bench.args.latency_mode == "api"
    queue = iter(enumerate(units))

    async def approve(unit: list[Any]) -> None:
        wall = time.time()
        t = time.perf_counter()
        try:
            if api:
                await bench.twins.approve(unit[0].entry_id)
                made = list(unit)
            else:
                ids = await bench.twins.bulk(unit, approved=True, emit=True)
                made = [Entry(str(x["workspace_id"]), i) for x, i in zip(unit, ids, strict=True)]
        except Exception as exc:  # reported, not raised
            done.errors.append(repr(exc))
            return
        finally:
            done.api_s.append(time.perf_counter() - t)
        for e in made:
            done.sent[e.key] = wall
            done.entries.append(e)

    async def sender() -> None:
        for i, unit in queue:
            due = t0 + i / call_rate
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            else:
                done.lag_max = max(done.lag_max, now - due)
            await approve(unit)

    await asyncio.gather(*(sender() for _ in range(APPROVERS)))
    done.approving_s = time.perf_counter() - t0
    return done


async def latency_report(bench: Bench, done: Approvals) -> dict[str, Any]:
    """Each entry's latency (ledger row turned posted minus approval), split into legs with
    the pipelines' histories; what the pipelines did meanwhile."""
    sent, entries = done.sent, done.entries
    rows = await asyncio.to_thread(bench.stack.store.time_postings, list(sent))
    latencies = [
        rows[k].updated_at.timestamp() - sent[k]
        for k in sent
        if k in rows and rows[k].state == "posted"
    ]
    histories = await bench.pipeline_histories(bench.latency_projects(entries))
    timeline = entry_timeline(histories)
    w0, w1 = min(sent.values()), time.time()
    batches = [b for h in histories for b in batch_timings(h, w0, w1)]
    wft = [workflow_task_time(h, w0, w1) for h in histories]
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
    log(
        f"  p50 {percentile(latencies, 50):.3f} s, p95 {percentile(latencies, 95):.3f} s, "
        f"max {max(latencies):.3f} s"
    )
    return {
        "latency": summary(latencies),
        "latency_legs": {k: summary(v) for k, v in legs.items()},
        "pipelines": {
            "signals": signals_between(histories, w0, w1),
            "batches": len(batches),
            "entries_per_batch": round(len(entries) / len(batches), 1) if batches else None,
            "batch_run": summary([b["run"] for b in batches]),
            "workflow_tasks": sum(w["count"] for w in wft),
            "workflow_task_queue": round(sum(w["queue_s"] for w in wft), 2),
            "workflow_task_run": round(sum(w["run_s"] for w in wft), 2),
        },
    }


async def gateway_webhook_times(bench: Bench) -> dict[str, float] | None:
    """The gateway's `pssync_gateway_webhook_seconds` histogram (PSA deliveries), cumulative:
    upper bound -> count, and `sum`; None when the gateway is not in its own process."""
    if bench.gateway is None:
        return None
    token = actor_token(bench.stack, "ops")
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(
            f"{bench.gateway.url}/metrics", headers={"Authorization": f"Bearer {token}"}
        )
    response.raise_for_status()
    found: dict[str, float] = {}
    for line in response.text.splitlines():
        if not line.startswith("pssync_gateway_webhook_seconds") or 'source="psa"' not in line:
            continue
        name, _, value = line.rpartition(" ")
        if "_bucket" in name:
            found[name.split('le="')[1].split('"')[0]] = float(value)
        elif name.startswith("pssync_gateway_webhook_seconds_sum"):
            found["sum"] = float(value)
    return found


def in_gateway(
    before: dict[str, float] | None, after: dict[str, float] | None
) -> dict[str, Any] | None:
    """Time from a delivery reaching the gateway to its answer, during the phase: how many,
    the mean, and the share answered within each bucket's bound (the rest of approval ->
    signal is the PSA twin's sending and the network)."""
    if before is None or after is None:
        return None
    delta = {k: v - before.get(k, 0.0) for k, v in after.items()}
    count = delta.get("+Inf", 0.0)
    if not count:
        return {"count": 0}
    return {
        "count": int(count),
        "mean_s": round(delta["sum"] / count, 4),
        "share_within_s": {
            k: round(v / count, 3) for k, v in delta.items() if k not in ("sum", "+Inf")
        },
    }


async def webhook_report(bench: Bench) -> dict[str, Any]:
    deliveries = await bench.twins.webhook_deliveries()
    approved_events = [d for d in deliveries if d["event_type"] == "time_entry.approved"]
    return {
        "sent": len(approved_events),
        "retried": sum(1 for d in approved_events if d["attempts"] > 1),
        "undelivered": sum(1 for d in approved_events if not d["delivered"]),
    }


# --------------------------------------------------------------------------- quota


async def quota(
    bench: Bench, entries: list[Entry], projects: list[str], defaults: TimePipelineInput
) -> dict[str, Any]:
    q = bench.args.quota_rps
    before = await bench.counts()
    await bench.twins.faults("erp", {"quota_rps": q})
    await bench.twins.reset_stats()
    log(
        f"quota: ERP twin quota {q:g} rps, worker paced at {q:g} rps; {len(entries)} entries "
        f"in batches of {defaults.batch_size} to {len(projects)} fresh pipelines"
    )
    try:
        t0 = time.perf_counter()
        await bench.hand_over(entries, defaults, "bench")
        await asyncio.sleep(max(0.0, bench.args.quota_warm_s - (time.perf_counter() - t0)))
        s1, t1 = await bench.twins.stats("erp"), time.perf_counter()
        await asyncio.sleep(bench.args.quota_window_s)  # the measurement window
        s2, t2 = await bench.twins.stats("erp"), time.perf_counter()
        mid = await bench.counts()
        backlog = before["posted"] + len(entries) - mid["posted"]
        log(
            f"  window: {s2['served'] - s1['served']} ERP requests served in "
            f"{t2 - t1:.1f} s; backlog at its end {backlog} entries"
        )
        after = await bench.wait_posted(
            before["posted"] + len(entries), timeout_s=bench.args.phase_timeout_s, what="quota"
        )
        total = time.perf_counter() - t0
        final = await bench.twins.stats("erp")
    finally:
        await bench.twins.faults("erp", {})
    counters: dict[str, int] = {}
    for st in await bench.pipeline_statuses(projects):
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
