"""Connector chaos benchmark: ERP time postings through `NetSuiteErp` into the ERP twin while
the twin answers 20% of requests with a 5xx and 10% with a 429.

    python bench/connector_chaos.py [--postings 500] [--batch-size 20] [--seed 42]

The twin runs in process on 127.0.0.1 (an OS-assigned port) and is stopped at the end. The run
posts the same number of postings twice: once without faults (the baseline), once with them.
Besides the 5xx and 429 answers, 5% of requests (`--lost-response-rate`) are processed and then
answered 504, as if the response were lost: the case where a naive retry duplicates records.
It then reads the ERP back through its REST API and checks that every posting is there exactly
once. Progress goes to stderr; the last line of stdout is one JSON object:

    requested, records_in_erp, duplicates, missing, failed_results, retries (connector-level),
    activity_retries (whole post_time calls retried, as a Temporal activity would be),
    lost_responses, idempotency_replays (400 IDEMPOTENCY_ERROR answers the connector followed),
    seconds, baseline_seconds, chaos_over_baseline, erp_stats, machine, config, ok

The exit status is 0 when `ok` (records_in_erp == requested, no duplicates, nothing failed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import uvicorn

from connectors.erp import NetSuiteErp
from contracts.errors import PssyncError
from contracts.money import Money
from contracts.settings import SystemSettings
from contracts.systems import System
from contracts.v1.models import (
    BillingRule,
    CostPosting,
    Customer,
    PostingKind,
    Project,
)
from sandbox import erp as erp_twin
from sandbox.seed import Firm, build_firm

TODAY = date(2025, 6, 15)
PROJECTS = 5
ACTIVITY_ATTEMPTS = 5
RECORD = "/services/rest/record/v1"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="error", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the ERP twin did not start")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


async def provision(erp: NetSuiteErp, firm: Firm) -> list[tuple[str, str]]:
    """Five projects on the firm's active cost centers: (ERP id, cost center)."""
    customers = [c for c in firm.customers if not c.credit_hold]
    centers = [c.id for c in firm.cost_centers if c.active]
    projects = []
    for n in range(PROJECTS):
        account = customers[n % len(customers)]
        customer_id = await erp.upsert_customer(
            Customer(
                source_system=System.CRM,
                external_id=account.id,
                name=account.name,
                currency=account.currency,
            ),
            enterprise_id=f"01JBENCHCUST00000000000{n:03d}",
        )
        cost_center = centers[n % len(centers)]
        enterprise_id = f"01JBENCHPRJ000000000000{n:03d}"
        erp_id = await erp.upsert_project(
            Project(
                source_system=System.PSA,
                name=f"Chaos bench project {n}",
                customer_id=account.id,
                billing_rule=BillingRule.TIME_AND_MATERIALS,
                contract_value=Money("250000", "USD"),
                start_date=TODAY - timedelta(days=30),
                cost_center=cost_center,
            ),
            enterprise_id=enterprise_id,
            customer_erp_id=customer_id,
            budget=Money("200000", "USD"),
        )
        projects.append((erp_id, cost_center))
    return projects


def make_postings(
    prefix: str, count: int, firm: Firm, projects: list[tuple[str, str]], seed: int
) -> list[CostPosting]:
    rng = random.Random(seed)
    open_days = [
        p.start + timedelta(days=d)
        for p in firm.periods
        if not p.closed
        for d in range((p.end - p.start).days + 1)
        if p.start + timedelta(days=d) <= TODAY
    ]
    workers = [w for w in firm.workers if w.status == "active"]
    postings = []
    for i in range(count):
        project_id, cost_center = projects[i % len(projects)]
        worker = rng.choice(workers)
        day = rng.choice(open_days)
        hours = Decimal(rng.choice([2, 4, 6, 7, 8])) + Decimal(rng.choice([0, 25, 50, 75])) / 100
        postings.append(
            CostPosting(
                source_system=System.PSSYNC,
                idempotency_key=f"{prefix}-{i:05d}",
                kind=PostingKind.TIME,
                project_id=project_id,
                worker_id=worker.id,
                source_entry_id=f"TE-{prefix}-{i:05d}",
                posting_date=day,
                period=f"{day.year:04d}-{day.month:02d}",
                hours=hours,
                cost_amount=Money(worker.cost_rate * hours, worker.currency).rounded(),
                cost_center=cost_center,
            )
        )
    return postings


async def post_all(
    erp: NetSuiteErp, postings: list[CostPosting], batch_size: int
) -> tuple[int, int]:
    """Post concurrently in batches; retry a failed call whole (it is idempotent).
    (failed results, whole-call retries)."""
    failed = 0
    call_retries = 0

    async def one_batch(batch: list[CostPosting]) -> None:
        nonlocal failed, call_retries
        for attempt in range(1, ACTIVITY_ATTEMPTS + 1):
            try:
                results = await erp.post_time(batch)
            except PssyncError as exc:
                if not exc.retryable or attempt == ACTIVITY_ATTEMPTS:
                    raise
                call_retries += 1
                log(f"  post_time gave up after its retry budget ({exc}); retrying the call")
                continue
            failed += sum(1 for r in results if not r.ok)
            for r in results:
                if not r.ok:
                    log(f"  refused: {r.idempotency_key}: {r.error}")
            return

    batches = [postings[i : i + batch_size] for i in range(0, len(postings), batch_size)]
    await asyncio.gather(*(one_batch(b) for b in batches))
    return failed, call_retries


async def read_back(erp: NetSuiteErp, projects: list[tuple[str, str]], prefix: str) -> Counter[str]:
    """Keys of the prefix's postings found in the ERP, with their multiplicity."""
    keys: Counter[str] = Counter()
    for project_id, _cc in projects:
        for posting in await erp.list_postings(project_id):
            if posting.idempotency_key.startswith(f"{prefix}-"):
                keys[posting.idempotency_key] += 1
    return keys


async def run(args: argparse.Namespace) -> dict[str, Any]:
    firm = build_firm(args.seed, workers=40, today=TODAY)
    app = erp_twin.create_app(async_pending_polls=1)
    erp_twin.load_firm(app, firm)
    async with serve(app) as base_url:
        settings = SystemSettings(
            base_url=base_url,
            max_concurrency=args.max_concurrency,
            timeout_s=10,
            retry_budget_s=30,
        )
        async with (
            NetSuiteErp(
                settings, backoff_base_s=0.02, backoff_cap_s=1.0, poll_interval_s=0.01
            ) as erp,
            httpx.AsyncClient(
                base_url=base_url, headers={"Authorization": "Bearer dev-static-token"}
            ) as admin,
        ):
            projects = await provision(erp, firm)
            log(f"provisioned {len(projects)} projects; baseline: {args.postings} postings")

            baseline = make_postings("base", args.postings, firm, projects, args.seed)
            started = time.perf_counter()
            base_failed, _ = await post_all(erp, baseline, args.batch_size)
            baseline_seconds = time.perf_counter() - started
            log(f"baseline took {baseline_seconds:.2f}s ({base_failed} refused)")

            (await admin.post("/_admin/stats/reset")).raise_for_status()
            faults = {
                "error_rate": args.error_rate,
                "rate_limit_rate": args.rate_limit_rate,
                "seed": args.seed,
            }
            (await admin.post("/_admin/faults", json=faults)).raise_for_status()
            lost = {"rate": args.lost_response_rate, "seed": args.seed}
            (await admin.post("/_admin/erp/lost-responses", json=lost)).raise_for_status()
            retries_before = erp.retries
            chaos = make_postings("chaos", args.postings, firm, projects, args.seed + 1)
            log(f"chaos: {args.postings} postings with {faults}, lost responses {lost}")
            started = time.perf_counter()
            failed, call_retries = await post_all(erp, chaos, args.batch_size)
            seconds = time.perf_counter() - started
            retries = erp.retries - retries_before
            stats = (await admin.get("/_admin/stats")).json()
            (await admin.post("/_admin/faults", json={})).raise_for_status()
            dropped = (await admin.post("/_admin/erp/lost-responses", json={})).json()["dropped"]
            log(f"chaos took {seconds:.2f}s with {retries} connector retries")

            found = await read_back(erp, projects, "chaos")
            listed = await admin.get(f"{RECORD}/timebill", params={"limit": 1})
            total_timebills = int(listed.json()["totalResults"])

    requested = len({p.idempotency_key for p in chaos})
    records = sum(found.values())
    duplicates = sum(n - 1 for n in found.values() if n > 1)
    # Anything beyond the two runs' postings would be an extra (duplicate) record too.
    extra = max(0, total_timebills - requested - len(baseline))
    missing = requested - len(found)
    ok = records == requested and duplicates == 0 and extra == 0 and failed == 0
    return {
        "requested": requested,
        "records_in_erp": records,
        "duplicates": duplicates + extra,
        "missing": missing,
        "failed_results": failed,
        "retries": retries,
        "activity_retries": call_retries,
        "seconds": round(seconds, 3),
        "baseline_seconds": round(baseline_seconds, 3),
        "chaos_over_baseline": round(seconds / baseline_seconds, 2) if baseline_seconds else None,
        "timebills_in_erp": total_timebills,
        "lost_responses": dropped,
        "idempotency_replays": stats["by_status"].get("400", 0),
        "erp_stats": stats,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
        "config": {
            "error_rate": args.error_rate,
            "rate_limit_rate": args.rate_limit_rate,
            "lost_response_rate": args.lost_response_rate,
            "seed": args.seed,
            "batch_size": args.batch_size,
            "max_concurrency": args.max_concurrency,
            "batches": -(-args.postings // args.batch_size),
        },
        "ok": ok,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--postings", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--max-concurrency", type=int, default=8)
    parser.add_argument("--error-rate", type=float, default=0.2)
    parser.add_argument("--rate-limit-rate", type=float, default=0.1)
    parser.add_argument(
        "--lost-response-rate",
        type=float,
        default=0.05,
        help="requests processed whose response is then lost (504); 0 to turn off",
    )
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, sort_keys=True))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
