"""The reconciliation bench's measured parts: a pass started through the gateway (as an operator
would: `POST /api/reconciliations`, then its report and drifts paged from
`GET /api/reconciliations/{id}`), the vendor requests it cost (the twins' own counters), the
repairs read back from the ERP twin, and the naive baseline (one PSA GET and one ERP GET per
entry)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from bench._harness import (
    SYSTEMS,
    Twins,
    cpu_delta,
    gather_limited,
    log,
    process_cpu,
    summary,
)
from bench._reconciliation.drifts import ESCALATED, REPAIRED, Injected, drift_key
from contracts.settings import DEV_TOKENS

OPS = {"Authorization": f"Bearer {DEV_TOKENS['ops']}"}
POLL_S = 0.2


async def requests_by_system(twins: Twins) -> dict[str, int]:
    stats = await twins.pick_stats("requests")
    return {system: int(stats[system]["requests"]) for system in SYSTEMS}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    out = {s: after[s] - before[s] for s in SYSTEMS}
    out["total"] = sum(out.values())
    return out


@dataclass
class Pass:
    report: dict[str, Any]
    drifts: list[dict[str, Any]]
    wall_s: float
    requests: dict[str, int]
    cpu: dict[str, Any]
    """CPU seconds and cores per process while the pass ran (bench = gateway + worker)."""


async def run_pass(
    gateway: httpx.AsyncClient, twins: Twins, *, timeout_s: float, domain: str = "labor_actuals"
) -> Pass:
    """One pass of `domain` over every project, through the gateway; its report, every drift
    it found (paged), the wall seconds from the request to the report, and the twins'
    requests in that time (the comparison's reads and whatever repairs ran meanwhile)."""
    before = await requests_by_system(twins)
    cpu0 = process_cpu()
    t0 = time.perf_counter()
    started = await gateway.post("/api/reconciliations", json={"domain": domain}, headers=OPS)
    if started.status_code != 202:
        raise RuntimeError(f"the gateway refused the run: {started.status_code} {started.text}")
    run_id = started.json()["run_id"]
    deadline = time.monotonic() + timeout_s
    while True:
        r = await gateway.get(f"/api/reconciliations/{run_id}", headers=OPS, params={"limit": 1})
        r.raise_for_status()
        if r.json()["run"].get("state") == "finished":
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"reconciliation {run_id} not finished after {timeout_s:.0f} s")
        await asyncio.sleep(POLL_S)
    wall = time.perf_counter() - t0
    cpu = cpu_delta(cpu0, process_cpu(), wall)
    after = await requests_by_system(twins)
    drifts: list[dict[str, Any]] = []
    offset: int | None = 0
    report: dict[str, Any] = {}
    while offset is not None:
        r = await gateway.get(
            f"/api/reconciliations/{run_id}", headers=OPS, params={"limit": 1000, "offset": offset}
        )
        r.raise_for_status()
        body = r.json()
        report = body["run"]
        drifts += body["drifts"]
        offset = body["next_offset"]
    log(
        f"  run {run_id}: {report.get('found')} found ({report.get('by_kind')}), "
        f"{report.get('repaired')} repaired, {report.get('escalated')} escalated, "
        f"{wall:.1f} s"
    )
    return Pass(report=report, drifts=drifts, wall_s=wall, requests=delta(before, after), cpu=cpu)


def score(
    injected: list[Injected],
    found: Pass,
    key_of: Callable[[dict[str, Any]], tuple[str, str, str]] = drift_key,
) -> dict[str, Any]:
    """Found against injected, by key: recall, false positives, and whether each drift got
    what it should (repaired or escalated)."""
    expected = {d.key: d for d in injected}
    by_key = {key_of(d): d for d in found.drifts}
    hits = [k for k in expected if k in by_key]
    false_positives = [by_key[k] for k in by_key if k not in expected]
    wrong_action = [
        {"kind": k[0], "where": k[2], "expected": expected[k].expect, "state": by_key[k]["state"]}
        for k in hits
        if by_key[k]["state"] != expected[k].expect
    ]
    per_kind: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for k, d in expected.items():
        row = per_kind[f"{d.kind}/{d.how}"]
        row["injected"] += 1
        if k in by_key:
            row["found"] += 1
            row[by_key[k]["state"]] += 1
    return {
        "drifts_injected": len(expected),
        "drifts_found": len(hits),
        "recall": round(len(hits) / len(expected), 4) if expected else None,
        "false_positives": len(false_positives),
        "false_positive_sample": false_positives[:5],
        "missed": [list(k) for k in expected if k not in by_key][:10],
        "wrong_action": wrong_action[:10],
        "repaired": sum(1 for k in hits if by_key[k]["state"] == REPAIRED),
        "escalated": sum(1 for k in hits if by_key[k]["state"] == ESCALATED),
        "per_kind": {k: dict(v) for k, v in sorted(per_kind.items())},
    }


# --------------------------------------------------------------------------- the ERP read back


def live_by_entry(rows: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """Entry id -> the external ids of its live timebills (neither reversal nor reversed)."""
    rows = list(rows)
    reversed_ids = {str(r["reverses"]) for r in rows if r.get("reverses")}
    live: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r.get("reverses") or str(r["id"]) in reversed_ids:
            continue
        entry = r.get("custcol_pssync_source_entry")
        if entry:
            live[str(entry)].append(str(r["externalid"]))
    return live


def repairs_hold(injected: list[Injected], live: dict[str, list[str]]) -> list[str]:
    """What the ERP does not show yet of the repairs: an empty list once every safe drift is
    repaired (posted once; reversed; posted at its new version)."""
    wrong = []
    for d in injected:
        if d.expect != REPAIRED or d.entry is None:
            continue
        entry_id = d.entry.split(":", 1)[1]
        keys = live.get(entry_id, [])
        if d.kind == "missing_in_erp":
            ok = len(keys) == 1
        elif d.kind == "posted_not_approved":
            ok = not keys
        else:  # stale_version: one live posting, not the version it had (v2)
            ok = len(keys) == 1 and not keys[0].endswith("-v2")
        if not ok:
            wrong.append(f"{d.kind}/{d.how} {entry_id}: {keys}")
    return wrong


async def wait_repairs(
    twins: Twins, injected: list[Injected], *, timeout_s: float
) -> tuple[float, list[str]]:
    """Poll the ERP twin until every repair shows; the seconds it took, and what still does
    not show at the deadline."""
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    while True:
        wrong = repairs_hold(injected, live_by_entry(await twins.timebills()))
        if not wrong or time.monotonic() > deadline:
            return time.perf_counter() - t0, wrong
        await asyncio.sleep(0.5)


# --------------------------------------------------------------------------- naive baseline


async def naive(
    twins: Twins, entry_ids: list[str], *, total: int, concurrency: int
) -> dict[str, Any]:
    """Entry by entry, as a reconciler without list APIs would: GET the PSA entry, then GET
    the ERP posting of its current version (`timebill/eid:psa-time-<id>-v<lock_version>`),
    `concurrency` entries at a time, over `entry_ids` (a sample); extrapolated to `total`."""
    base = twins.base
    http = twins.http
    statuses: dict[str, int] = defaultdict(int)
    latencies: list[float] = []

    async def one(entry_id: str) -> None:
        t = time.perf_counter()
        r = await http.get(f"{base}/psa/api/v1/time_entries/{entry_id}.json")
        statuses[f"psa_{r.status_code}"] += 1
        version = "0"
        if r.status_code == 200:
            version = str(next(iter(r.json()["time_entries"].values()))["lock_version"])
        r = await http.get(
            f"{base}/erp/services/rest/record/v1/timebill/eid:psa-time-{entry_id}-v{version}"
        )
        statuses[f"erp_{r.status_code}"] += 1
        latencies.append(time.perf_counter() - t)

    before = await requests_by_system(twins)
    t0 = time.perf_counter()
    await gather_limited(entry_ids, concurrency, one)
    elapsed = time.perf_counter() - t0
    requests = delta(before, await requests_by_system(twins))
    per_entry = requests["total"] / len(entry_ids)
    log(
        f"  naive: {len(entry_ids)} entries, {requests['total']} requests in {elapsed:.1f} s "
        f"({len(entry_ids) / elapsed:.0f} entries/s)"
    )
    return {
        "sample_entries": len(entry_ids),
        "concurrency": concurrency,
        "sample_seconds": round(elapsed, 2),
        "sample_requests": requests,
        "statuses": dict(sorted(statuses.items())),
        "entry_latency": summary(latencies),
        "vendor_calls_per_1000_records": round(per_entry * 1000, 1),
        "extrapolated_to": total,
        "extrapolated_seconds": round(elapsed * total / len(entry_ids), 1),
        "extrapolated_calls": round(per_entry * total),
    }
