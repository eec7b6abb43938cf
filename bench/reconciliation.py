"""Reconciliation benchmark: a full labor-actuals pass over 10,000 posted time entries on 200
projects, with a known set of drift injected through the twins' tamper endpoints — recall,
false positives, repairs, escalations, seconds and vendor calls — against a naive entry-by-entry
baseline in the same run; then a second pass that must find nothing new.

    python bench/reconciliation.py [--entries 10000] [--projects 200] [--per-kind 5]
        [--master-per-kind 2] [--workers 50] [--naive-sample 1000] [--naive-concurrency 16]
        [--quick] [--worker-process] [--keep-home]

What it runs on 127.0.0.1 (OS-assigned ports), in a fresh temp home: `running_stack` (embedded
Temporal dev server, the gateway, the seeded twins in their own process with zero latency and
default faults — no quota) and the pssync worker (`worker.run_workers` in this process, or
`pssync worker` with `--worker-process`), with the shipped ERP quota (`erp_quota_rps` 50).
Reconciliation's settle window is 0 (the drift is seconds old, not minutes); the sweep and the
HCM poller are pushed out a day so that only reconciliation finds what was lost.

0. set-up, not timed: `--projects` T&M projects linked as the provisioning saga leaves them
   (PSA shell, ERP customer and project, xref links), made through the connectors, 8 at a
   time; `--entries` approved entries spread over them (PSA twin's bulk endpoint, no
   webhooks), dated from the first of last month to yesterday, then **posted by the time
   pipelines themselves** (handed over as the sweep does; the ledger and the ERP hold what
   pssync posted, nothing seeded behind its back). The ERP is read back: one timebill each.
1. drift: every labor-actuals kind, `--per-kind` of each way of making it
   (`bench/_reconciliation/drifts.py`), each recorded with its keys and what a pass must do.
2. pass 1 through the gateway (`POST /api/reconciliations`, ops token): its report, every
   drift (paged), wall seconds, the twins' request counters before and after. Scored by key
   against what was injected: recall, false positives, repaired/escalated as expected.
3. the repairs read back from the ERP twin (posted once, reversed, posted at the new version).
4. pass 2: nothing new, the escalated kept, the repaired gone.
5. project master (`--master-per-kind`, 0 skips it): deals won in the CRM twin and provisioned
   by the real saga, ERP projects renamed and re-currencied by hand, deals won while the CRM
   drops their `opportunity.won` webhook; two passes (`bench/_reconciliation/master.py`).
6. naive baseline: one PSA GET and one ERP GET per entry, `--naive-concurrency` at a time,
   over `--naive-sample` entries, extrapolated to all of them.

`vendor_calls_per_1000_records`: the twins' requests (all four) while pass 1 ran, per 1,000
time entries in scope (`records`); the naive figure is per 1,000 entries too (2,000). Progress
goes to stderr; the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench._harness import (  # noqa: E402
    TempHome,
    WorkerRunner,
    add_flags,
    add_options,
    log,
    machine,
    print_json,
    run_cancellable,
)
from bench._reconciliation.drifts import Injector, Posted  # noqa: E402
from bench._reconciliation.master import project_master  # noqa: E402
from bench._reconciliation.passes import (  # noqa: E402
    live_by_entry,
    naive,
    requests_by_system,
    run_pass,
    score,
    wait_repairs,
)
from bench._reconciliation.world import (  # noqa: E402
    days_first_factory,
    link_projects,
    pipelines_idle,
    post_through_pipelines,
)
from bench._time_to_invoice.world import SEED, SWEEP_OUT_S, Bench, Entry, Project  # noqa: E402
from contracts.settings import Settings, load_settings  # noqa: E402
from stack import running_stack  # noqa: E402

QUICK = {"entries": 500, "projects": 20, "per_kind": 2, "naive_sample": 200, "master_per_kind": 1}
TARGET_SECONDS = 60.0
TARGET_NAIVE_RATIO = 20.0


def bench_settings(home: Path) -> Settings:
    # The Schedules that read the vendors on their own are out of the way, so a pass's window
    # holds the comparison's requests and the repairs' only.
    settings = load_settings(
        home=home,
        time_sweep_interval_s=SWEEP_OUT_S,
        hcm_poll_interval_s=int(SWEEP_OUT_S),
        rate_card_sweep_interval_s=int(SWEEP_OUT_S),
    )
    settings.reconcile = settings.reconcile.model_copy(update={"settle_s": 0.0, "enabled": False})
    return settings


async def run(args: argparse.Namespace) -> dict[str, Any]:
    wall0 = time.perf_counter()
    mach = machine()
    tmp = TempHome("pssync-bench-recon-")
    settings = bench_settings(tmp.home)
    where = "its own process" if args.worker_process else "this process"
    log(f"home {tmp.home}; starting the stack (twins in their own process, worker in {where})")
    try:
        async with running_stack(
            settings, seed=SEED, ephemeral_ports=True, run_worker=False, twins_process=True
        ) as stack:
            runner = WorkerRunner(
                stack,
                in_process=not args.worker_process,
                log_path=tmp.home / "worker.log",
                sweep_interval_s=SWEEP_OUT_S,
            )
            bench = Bench(stack, args, runner)
            await runner.start(stack.settings)
            try:
                result = await measure(bench, args)
            finally:
                await bench.twins.aclose()
                await runner.stop()
    finally:
        if args.keep_home:
            log(f"kept {tmp.home}")
        else:
            tmp.remove()
    result["wall_s"] = round(time.perf_counter() - wall0, 1)
    result["machine"] = mach
    return result


async def until_idle(bench: Bench, projects: list[str], timeout_s: float) -> None:
    t0 = time.perf_counter()
    while not await pipelines_idle(bench, projects):
        if time.perf_counter() - t0 > timeout_s:
            raise TimeoutError("the pipelines never went idle")
        await asyncio.sleep(0.5)


async def set_up(
    bench: Bench, deployment: Any, args: argparse.Namespace
) -> tuple[Injector, dict[str, Any]]:
    """Projects linked, entries approved and posted by the pipelines, the ERP read back; the
    injector ready. Returns it and the set-up's timings."""
    stack = bench.stack
    timings: dict[str, Any] = {}
    t0 = time.perf_counter()
    log(f"set-up: linking {args.projects} projects in PSA, ERP and the xref")
    linked = await link_projects(bench, deployment.psa, deployment.erp, args.projects, tag="b")
    timings["link_s"] = round(time.perf_counter() - t0, 1)
    projects = [Project(p.psa_id) for p in linked]
    factory = await days_first_factory(bench)
    specs = [factory.next_entry(projects[i % len(projects)]) for i in range(args.entries)]
    log(f"set-up: {len(specs)} approved entries (bulk, no webhooks), posted by the pipelines")
    t0 = time.perf_counter()
    ids = await bench.twins.bulk(specs, approved=True)
    entries = [Entry(str(s["workspace_id"]), i) for s, i in zip(specs, ids, strict=True)]
    day = {i: date.fromisoformat(s["date_performed"]) for s, i in zip(specs, ids, strict=True)}
    timings["entries_s"] = round(time.perf_counter() - t0, 1)
    timings["post_s"] = round(
        await post_through_pipelines(bench, stack.settings, entries, args.phase_timeout_s), 1
    )
    await until_idle(bench, [p.psa_id for p in projects], args.phase_timeout_s)
    rows = await bench.twins.timebills()
    live = live_by_entry(rows)
    timebill = {}
    for r in rows:
        entry = str(r.get("custcol_pssync_source_entry") or "")
        if entry and live.get(entry) == [str(r["externalid"])]:
            timebill[entry] = {"id": str(r["id"]), "externalid": str(r["externalid"])}
    missing = [e.entry_id for e in entries if e.entry_id not in timebill]
    if missing:
        raise RuntimeError(f"{len(missing)} set-up entries have no single live ERP posting")
    log(f"set-up: ERP read back, {len(timebill)} entries posted once each")
    injector = Injector(
        bench,
        deployment.erp,
        Posted(entries, day, timebill),
        projects,
        factory=factory,
        job_of={p.psa_id: f"eid:{p.enterprise_id}" for p in linked},
    )
    return injector, timings


async def measure(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    import worker

    deployment = worker.Deployment.from_settings(bench.stack.settings)
    try:
        injector, timings = await set_up(bench, deployment, args)
        log(f"drift: {args.per_kind} of each way of making each labor-actuals kind")
        await injector.labor(args.per_kind)
        injected = injector.injected
        records = args.entries + sum(
            1 for d in injected if d.how in ("webhook_dropped", "closed_period")
        )
        async with httpx.AsyncClient(base_url=bench.stack.urls["gateway"], timeout=60) as gateway:
            log("pass 1: a full labor-actuals pass through the gateway")
            first = await run_pass(gateway, bench.twins, timeout_s=args.phase_timeout_s)
            scored = score(injected, first)
            log("repairs: waiting for the pipelines, then reading the ERP back")
            before_tail = await requests_by_system(bench.twins)
            t0 = time.perf_counter()
            await until_idle(bench, [p.psa_id for p in injector.projects], args.phase_timeout_s)
            idle_s = time.perf_counter() - t0
            tail = await requests_by_system(bench.twins)
            read_s, not_repaired = await wait_repairs(
                bench.twins, injected, timeout_s=args.phase_timeout_s
            )
            repair_s = idle_s + read_s
            # A repair shows in the ERP before its batch has finished (the ledger, the PSA):
            # the second pass's window holds the comparison's own requests only once the
            # pipelines are idle again.
            await until_idle(bench, [p.psa_id for p in injector.projects], args.phase_timeout_s)
            log("pass 2: again, nothing new expected")
            second = await run_pass(gateway, bench.twins, timeout_s=args.phase_timeout_s)
            master = None
            if args.master_per_kind:
                master = await project_master(
                    bench, gateway, args.master_per_kind, timeout_s=args.phase_timeout_s
                )
        log("naive baseline: entry-by-entry GETs")
        step = max(1, len(injector.posted.entries) // args.naive_sample)
        sample = [e.entry_id for e in injector.posted.entries[::step]][: args.naive_sample]
        baseline = await naive(
            bench.twins, sample, total=records, concurrency=args.naive_concurrency
        )
    finally:
        await deployment.aclose()
    return result(args, records, injected_summary=injector.summary(), scored=scored,
                  first=first, second=second, baseline=baseline, timings=timings,
                  repair=(repair_s, not_repaired, before_tail, tail), master=master)  # fmt: skip


def result(
    args: argparse.Namespace,
    records: int,
    *,
    injected_summary: dict[str, Any],
    scored: dict[str, Any],
    first: Any,
    second: Any,
    baseline: dict[str, Any],
    timings: dict[str, Any],
    repair: tuple[float, list[str], dict[str, int], dict[str, int]],
    master: dict[str, Any] | None,
) -> dict[str, Any]:
    from bench._reconciliation.passes import delta

    repair_s, not_repaired, before_tail, tail = repair
    calls = first.requests["total"]
    per_1000 = round(calls * 1000 / records, 1)
    naive_per_1000 = baseline["vendor_calls_per_1000_records"]
    r1, r2 = first.report, second.report
    second_ok = r2.get("new") == 0 and r2.get("repaired") == 0 and r2.get("escalated") == 0
    meets = {
        "recall": scored["recall"] == 1.0,
        "false_positives": scored["false_positives"] == 0,
        "safe_drifts_repaired": not not_repaired
        and scored["repaired"] == injected_summary["to_repair"],
        "seconds": first.wall_s <= TARGET_SECONDS,
        "vendor_calls_vs_naive": per_1000 * TARGET_NAIVE_RATIO <= naive_per_1000,
        "second_pass_nothing_new": second_ok,
    }
    if master is not None:
        m2 = master["second_pass"]
        meets["project_master"] = (
            master["recall"] == 1.0
            and master["false_positives"] == 0
            and (m2["new"], m2["escalated"]) == (0, 0)
        )
    return {
        "bench": "reconciliation",
        "domain": "labor_actuals",
        "records": records,
        "projects": args.projects,
        "drifts_injected": scored["drifts_injected"],
        "drifts_found": scored["drifts_found"],
        "recall": scored["recall"],
        "false_positives": scored["false_positives"],
        "repaired": scored["repaired"],
        "escalated": scored["escalated"],
        "seconds": round(first.wall_s, 2),
        "run_seconds": r1.get("seconds"),
        "records_compared": r1.get("records"),
        "run_vendor_calls": r1.get("vendor_calls"),
        "vendor_calls": calls,
        "vendor_calls_per_1000_records": per_1000,
        "naive_vendor_calls_per_1000_records": naive_per_1000,
        "naive_seconds_extrapolated": baseline["extrapolated_seconds"],
        "calls_ratio_to_naive": round(calls / baseline["extrapolated_calls"], 4),
        "second_pass": {
            k: r2.get(k)
            for k in ("found", "new", "repaired", "escalated", "kept", "gone", "unrepaired")
        }
        | {
            "seconds": round(second.wall_s, 2),
            "vendor_calls": second.requests["total"],
            "vendor_calls_by_system": {k: v for k, v in second.requests.items() if k != "total"},
            "run_vendor_calls": r2.get("vendor_calls"),
        },
        "targets": {
            "recall": 1.0,
            "false_positives": 0,
            "seconds": TARGET_SECONDS,
            "vendor_calls_vs_naive": f"<= 1/{TARGET_NAIVE_RATIO:.0f}",
        },
        "meets": meets,
        "ok": all(meets.values()),
        "scored": scored,
        "injected": injected_summary,
        "pass_1": {"report": r1, "requests": first.requests, "cpu": first.cpu},
        "pass_2": {"report": r2, "requests": second.requests, "cpu": second.cpu},
        "repairs": {
            "seconds_after_pass_1": round(repair_s, 1),
            "not_shown_in_erp": not_repaired,
            "requests": delta(before_tail, tail),
            "requests_note": "made by the pipelines' repairs once pass 1 had finished",
        },
        "naive": baseline,
        "project_master": master,
        "setup": timings,
        "config": config(args),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "entries": args.entries,
        "projects": args.projects,
        "workers": args.workers,
        "per_kind": args.per_kind,
        "master_per_kind": args.master_per_kind,
        "quick": args.quick,
        "naive_sample": args.naive_sample,
        "naive_concurrency": args.naive_concurrency,
        "settle_s": 0,
        "page_size": 25,
        "erp_quota_rps": 50,
        "twins": "own process (pssync sandbox), zero latency, no quota (their defaults)",
        "worker": "own process (pssync worker)" if args.worker_process else "in process",
        "gateway": "in process",
        "temporal": "embedded dev server, SQLite file under the temp home",
        "posted_by": "the time pipelines (set-up)",
        "seed": SEED,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_options(
        parser,
        [
            ("--entries", int, 10_000, "approved time entries posted in the set-up"),
            ("--projects", int, 200),
            ("--workers", int, 50, "active workers entering time"),
            ("--per-kind", int, 5, "drifts of each way of making each kind"),
            ("--naive-sample", int, 1000, "entries the naive baseline reads (extrapolated)"),
            ("--naive-concurrency", int, 16),
            ("--master-per-kind", int, 2, "project-master drifts of each way (0: none)"),
            ("--phase-timeout-s", float, 300.0),
        ],
    )
    add_flags(
        parser,
        {
            "--quick": "500 entries over 20 projects, 2 drifts of each, naive sample 200",
            "--worker-process": "run the pssync worker as `pssync worker` in its own process",
            "--keep-home": None,
        },
    )
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run_cancellable(run(args))
    print_json(result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
