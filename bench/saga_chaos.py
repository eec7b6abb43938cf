"""Saga chaos: the whole stack under vendor faults — every business key must end as exactly one
object in every system (no duplicate, nothing missing).

    python bench/saga_chaos.py [--quick] [--scenarios chaos,same_customer,psa_lost_30]
        [--deals 100] [--entries 500] [--time-projects 20] [--change-orders 10]
        [--terminations 5] [--pairs 20] [--psa-lost-deals 20] [--psa-lost-rate 0.3]
        [--error-rate 0.2] [--rate-limit-rate 0.1] [--lost-response-rate 0.05] [--seed 42]
        [--concurrency 20] [--time-currencies USD] [--stall-s 60] [--quiet-timeout-s 90]
        [--worker-in-process] [--keep-home]

What it runs on 127.0.0.1 (OS-assigned ports), in a fresh temp home: `running_stack`
with the twins in their own process (`pssync sandbox`, seeded firm 7, webhooks pointed at the
gateway), the Temporal dev server (its SQLite file under the temp home) and the gateway in this
process, and the worker as `pssync worker` in its own process (`tests._servers`, as
`bench/temporal_outage.py` runs it; `--worker-in-process` runs it in this one). The time sweep
is pushed out to a day, so approved time reaches the ERP through the webhooks only; the HCM
poll Schedule runs every `--hcm-poll-s` seconds. Everything travels the real path: twin ->
signed webhook -> gateway -> Temporal -> worker -> connectors -> twins over HTTP.

The bench's own moves are the ones the demo and the other benches make, imported from them:
deals are built with `deal_from_template` and won through `SalesforceCrm`
(`create_opportunity` keyed by a business key, then `set_stage("Closed Won")`: the CRM twin's
`opportunity.won` webhook starts the saga); approved time is inserted with the PSA twin's bulk
admin endpoint with one `time_entry.approved` webhook per entry (`bench.time_to_invoice.Twins`,
`EntryFactory`); change orders are submitted in the PSA twin (its `change_order.submitted`
webhook starts the saga) and approved through the gateway by the roles the run asks for (as
`change_order_scene`); terminations are entered with `WorkdayHcm.terminate`, effective
today with yesterday as the last day, on a worker staffed on a provisioned project with approved
time (as `termination_scene`), and found by the HCM poll Schedule. Under faults the
bench's own writes go through the connectors' lost-answer-safe creates (keyed upserts, or
look-up before re-send), so the bench never duplicates anything itself.

Scenarios (each on the same stack, one after the other, faults off in between):

1. `chaos`: every twin answers 20% of vendor requests 5xx and 10% 429 (`--error-rate`,
   `--rate-limit-rate`), and 5% are processed and then answered 504 (`--lost-response-rate`,
   lost responses, on every twin). `--deals` won deals (`--concurrency` in flight), then at
   the same time: `--entries` approved entries over `--time-projects` of the new projects,
   `--change-orders` change orders (alternately +5,000, which the delivery manager approves, and
   +25,000, which finance approves too) and `--terminations` terminations, each on projects of
   its own (`--time-currencies USD` gives time only to projects in those currencies). The
   time phase waits until every entry has an ERP posting, or none came for `--stall-s`.
2. `same_customer`: no faults. `--pairs` new CRM accounts (not yet in the ERP), two deals each;
   all deals are won at the same moment, so both sagas of a pair race to reserve the customer's
   enterprise ID and to create its ERP customer.
3. `psa_lost_30`: only the PSA twin loses `--psa-lost-rate` (30%) of its answers;
   `--psa-lost-deals` won deals.

After each scenario the faults are turned off and the bench waits until no workflow the
scenario started has an activity pending (at most `--quiet-timeout-s`; what is still pending is
reported under `quiesce.stuck` with its attempt and last failure), then reads the twins' own
databases (SQLite files of the twins process) and the store, and counts per business key:

- CRM: opportunities and line items per key; the enterprise ID written back to each won deal
  (the one the store links to it);
- PSA: workspaces per deal (archived ones too: a compensated duplicate is still one), WBS
  stories and billing milestones per (deal, line), provisioning resource requests per (deal,
  role); change orders: the submitted record, its `applied` state, the workspace budget moved by
  the delta exactly once, one resource request per `co:{id}:{role}`; terminations: the
  assignment ended on the last day, one backfill request per `backfill:{worker}:{assignment}`,
  time entry closed after the last day;
- ERP: jobs per deal (by name, and the one carrying the deal's enterprise ID), one customer per
  CRM account pointing at the enterprise customer ID, every job of a pair on that customer;
  live timebills per approved entry (not reversed; hours = minutes / 60, cost = the ERP labor
  cost x hours), the job budget moved by the change order's delta exactly once;
- HCM: one `terminate` event per leaver;
- store: one enterprise ID per opportunity and per account;
- runs: the sagas' Temporal statuses, open exception items.

`duplicates` counts records beyond one per key (and records moved twice), `missing` keys with
none (or an effect not applied), `wrong` amounts that are neither.

Progress goes to stderr; the last line of stdout is one JSON object: per scenario `systems`
{crm, psa, erp, hcm, store: {duplicates, missing, wrong, by_kind}}, `runs`, `faults` (what each
twin injected), `exceptions_open`, `wall_s`; the totals `duplicates`, `missing`, `ok`; `machine`,
`config`, `wall_s`. Exit status 0 when `ok`. Every process it starts is stopped by its id, also
on failure or Ctrl-C; a failed run keeps its temp home (logs, databases) and names it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench._harness import (  # noqa: E402
    SYSTEMS,
    TempHome,
    Twins,
    add_flags,
    add_options,
    load_average,
    machine,
    print_json,
    run_cancellable,
)
from bench._harness import log_stamped as log  # noqa: E402
from bench._saga_chaos.counts import (  # noqa: E402
    count_change_orders,
    count_customers,
    count_deals,
    count_terminations,
    count_time,
    deal_runs,
    finish,
)
from bench._saga_chaos.moves import (  # noqa: E402
    ChangeOrderWork,
    TerminationWork,
    approve_time,
    submit_change_order,
    terminate,
)
from bench._saga_chaos.world import (  # noqa: E402
    FIRM,
    SEED,
    TEMPLATES,
    Context,
    Databases,
    Deal,
    await_deal,
    begin_scenario,
    chaos_faults,
    create_deal,
    in_list,
    new_deal,
    pick_people,
    win_deal,
    win_many,
)
from connectors.crm import SalesforceCrm  # noqa: E402
from connectors.hcm import WorkdayHcm  # noqa: E402
from connectors.psa import KantataPsa  # noqa: E402
from contracts.settings import load_settings  # noqa: E402
from contracts.v1.worker_termination import HCM_SCHEDULE_ID  # noqa: E402
from stack import Stack, running_stack  # noqa: E402
from tests._servers import start_worker_process, stop_process  # noqa: E402

__all__ = ["FULL", "QUICK", "SCENARIOS", "main", "parse_args", "run"]

SCENARIOS = ("chaos", "same_customer", "psa_lost_30")
CRM_API = "/crm/services/data/v61.0"
FULL = {
    "deals": 100,
    "entries": 500,
    "time_projects": 20,
    "change_orders": 10,
    "terminations": 5,
    "pairs": 20,
    "psa_lost_deals": 20,
}
QUICK = {
    "deals": 10,
    "entries": 50,
    "time_projects": 4,
    "change_orders": 2,
    "terminations": 1,
    "pairs": 5,
    "psa_lost_deals": 8,
}
CO_SMALL, CO_LARGE = 5_000, 25_000
"""Change-order deltas: below the finance threshold (delivery manager only), and above it."""


# --------------------------------------------------------------------------- scenarios


async def scenario_chaos(ctx: Context) -> dict[str, Any]:
    a = ctx.args
    started = time.monotonic()
    lost_before = await begin_scenario(ctx, chaos_faults(a))
    log(
        f"chaos: every twin {a.error_rate:.0%} 5xx, {a.rate_limit_rate:.0%} 429, "
        f"{a.lost_response_rate:.0%} lost responses; {a.deals} deals, {a.concurrency} in flight"
    )
    deals = [new_deal("chaos", n) for n in range(a.deals)]
    deals_wall = await win_many(ctx, deals, a.concurrency)
    done = [d for d in deals if d.result is not None]
    log(f"chaos: {len(done)}/{len(deals)} provisioned in {deals_wall:.1f} s")
    time_deals, cos, terms = chaos_second_phase_work(ctx, done)
    log(
        f"chaos: {a.entries} entries over {len(time_deals)} projects, {len(cos)} change orders, "
        f"{len(terms)} termination(s), at the same time"
    )
    phase = time.monotonic()
    time_work, *_ = await asyncio.gather(
        approve_time(ctx, time_deals, a.entries),
        asyncio.gather(*(submit_change_order(ctx, c) for c in cos)),
        asyncio.gather(*(terminate(ctx, t) for t in terms)),
    )
    phase_s = time.monotonic() - phase
    log(f"chaos: time, change orders and terminations done in {phase_s:.1f} s")
    return await finish(
        ctx,
        "chaos",
        started,
        lost_before,
        [
            lambda: count_deals(ctx, deals),
            lambda: count_time(ctx, time_work),
            lambda: count_change_orders(ctx, cos),
            lambda: count_terminations(ctx, terms),
        ],
        {
            "deals": deal_runs(deals),
            "deals_phase_s": round(deals_wall, 1),
            "deals_per_s": round(len(done) / deals_wall, 2) if deals_wall else None,
            "time": {
                "entries": len(time_work.entries),
                "projects_by_currency": dict(Counter(d.new.currency for d in time_deals)),
                "all_posted_after_s": time_work.posted_s,
            },
            "change_orders": {
                "submitted": len(cos),
                "applied": sum(1 for c in cos if c.outcome == "applied"),
                "finance_required": sum(1 for c in cos if "finance_controller" in c.roles),
                "errors": [c.error for c in cos if c.error][:5],
            },
            "terminations": {
                "entered": len(terms),
                "reached_open_for_rescind": sum(1 for t in terms if t.reached),
                "errors": [t.error for t in terms if t.error][:5],
            },
            "second_phase_s": round(phase_s, 1),
        },
    )


def chaos_second_phase_work(
    ctx: Context, done: list[Deal]
) -> tuple[list[Deal], list[ChangeOrderWork], list[TerminationWork]]:
    """Projects of their own for time, change orders and terminations."""
    a = ctx.args
    wanted = {c for c in a.time_currencies.split(",") if c}
    priced = [d for d in done if not wanted or d.new.currency in wanted]
    time_deals = priced[: a.time_projects]
    rest = [d for d in done if d not in time_deals] or done
    co_deals = (rest * (1 + a.change_orders // max(1, len(rest))))[: a.change_orders]
    rest2 = rest[a.change_orders :] or rest
    term_deals = (rest2 * (1 + a.terminations // max(1, len(rest2))))[: a.terminations]
    cos = [
        ChangeOrderWork(
            deal=d, title=f"Saga chaos CO {n:03d} ({d.key})", delta=CO_SMALL if n % 2 else CO_LARGE
        )
        for n, d in enumerate(co_deals)
    ]
    yesterday = date.today() - timedelta(days=1)
    terms = [
        TerminationWork(deal=d, leaver=leaver, last_day=yesterday)
        for d, leaver in zip(term_deals, ctx.leavers, strict=False)
    ]
    return time_deals, cos, terms


async def scenario_same_customer(ctx: Context) -> dict[str, Any]:
    a = ctx.args
    started = time.monotonic()
    lost_before = await begin_scenario(ctx, {})
    tag = datetime.now(UTC).strftime("%H%M%S")
    log(f"same_customer: {a.pairs} new CRM accounts, two deals each, all won at once")
    accounts: list[str] = []
    deals: list[Deal] = []
    for n in range(a.pairs):
        currency = FIRM.opportunities[TEMPLATES[n % len(TEMPLATES)]].currency
        r = await ctx.twins.http.post(  # a new account: not in the ERP yet
            f"{ctx.twins.base}{CRM_API}/sobjects/Account",
            json={"Name": f"Twin Accounts {n} ({tag})", "CurrencyIsoCode": currency},
        )
        r.raise_for_status()
        account = str(r.json()["id"])
        accounts.append(account)
        # Both deals of the pair are shaped like the same seeded deal (its currency).
        deals += [new_deal("same-customer", k, n, account_id=account) for k in (2 * n, 2 * n + 1)]
    await asyncio.gather(*(create_deal(ctx, d) for d in deals))
    # Every deal of every pair won at the same moment.
    phase = time.monotonic()
    await asyncio.gather(*(win_deal(ctx, d) for d in deals))
    await asyncio.gather(*(await_deal(ctx, d) for d in deals))
    wall = time.monotonic() - phase
    ctx.workflows["OpportunityToProject"] = [d.workflow_id for d in deals if d.workflow_id]
    log(f"same_customer: {sum(1 for d in deals if d.result)}/{len(deals)} in {wall:.1f} s")
    return await finish(
        ctx,
        "same_customer",
        started,
        lost_before,
        [lambda: count_deals(ctx, deals), lambda: count_customers(ctx, accounts, deals)],
        {
            "deals": deal_runs(deals),
            "accounts": len(accounts),
            "projects": sum(1 for d in deals if d.result is not None),
            "customers": len(
                ctx.db.rows(
                    "erp",
                    f"SELECT id FROM erp_customer WHERE external_id IN ({in_list(accounts)})",
                )
            ),
            "deals_phase_s": round(wall, 1),
        },
    )


async def scenario_psa_lost(ctx: Context) -> dict[str, Any]:
    a = ctx.args
    started = time.monotonic()
    lost_before = await begin_scenario(
        ctx, {"psa": {"lost": {"rate": a.psa_lost_rate, "seed": a.seed}}}
    )
    log(
        f"psa_lost_30: the PSA loses {a.psa_lost_rate:.0%} of its answers, {a.psa_lost_deals} deals"
    )
    deals = [new_deal("psa-lost", n) for n in range(a.psa_lost_deals)]
    wall = await win_many(ctx, deals, a.concurrency)
    log(f"psa_lost_30: {sum(1 for d in deals if d.result)}/{len(deals)} in {wall:.1f} s")
    return await finish(
        ctx,
        "psa_lost_30",
        started,
        lost_before,
        [lambda: count_deals(ctx, deals)],
        {
            "deals": deal_runs(deals),
            "workspaces": len(
                ctx.db.rows(
                    "psa",
                    "SELECT id FROM psa_workspace WHERE opportunity_ref IN "
                    f"({in_list([d.opp_id for d in deals if d.opp_id])})",
                )
            ),
            "erp_jobs": len(
                ctx.db.rows(
                    "erp",
                    "SELECT id FROM erp_job WHERE company_name IN "
                    f"({in_list([d.name for d in deals])})",
                )
            ),
            "deals_phase_s": round(wall, 1),
        },
    )


RUNNERS = {
    "chaos": scenario_chaos,
    "same_customer": scenario_same_customer,
    "psa_lost_30": scenario_psa_lost,
}


# --------------------------------------------------------------------------- the stack


@contextlib.asynccontextmanager
async def chaos_stack(args: argparse.Namespace, home: Path) -> Any:
    """`running_stack` (twins in their own process) and the worker as `pssync worker`
    (or in this process); every process is stopped by its id on the way out."""
    settings = load_settings(
        home=home / ".pssync",
        time_sweep_interval_s=86_400.0,
        hcm_poll_interval_s=args.hcm_poll_s,
    )
    log(f"home {home}; starting the stack (dev server, gateway, twins process, worker process)")
    # The twins and worker processes import the project from their working directory.
    with contextlib.chdir(ROOT):
        async with running_stack(
            settings,
            seed=SEED,
            ephemeral_ports=True,
            run_worker=args.worker_in_process,
            twins_process=True,
        ) as stack:
            proc = None
            if not args.worker_in_process:
                proc = start_worker_process(
                    stack.settings,
                    stack.settings.home / "worker.log",
                    {
                        "PSSYNC_TIME_SWEEP_INTERVAL_S": "86400",
                        "PSSYNC_HCM_POLL_INTERVAL_S": str(args.hcm_poll_s),
                    },
                )
            try:
                yield stack
            finally:
                if proc is not None:
                    stop_process(proc)
                with contextlib.suppress(Exception):
                    await faults_off(stack)
                for schedule in ("time-to-invoice-sweep", HCM_SCHEDULE_ID):
                    with contextlib.suppress(Exception):
                        await stack.client.get_schedule_handle(schedule).delete()


async def faults_off(stack: Stack) -> None:
    """Every twin's faults off (on the way out, also after a failure)."""
    async with httpx.AsyncClient(timeout=10) as http:
        for system in SYSTEMS:
            await http.post(f"{stack.urls['sandbox']}/{system}/_admin/faults", json={})
            await http.post(f"{stack.urls['sandbox']}/{system}/_admin/lost-responses", json={})


def connector_settings(settings: Any) -> Any:
    """The bench's own connectors: room for its concurrency, a longer retry budget."""
    return settings.model_copy(update={"max_concurrency": 32, "retry_budget_s": 120})


async def run_scenarios(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Every scenario of `args` in order, on `stack`: their reports by name."""
    twins = Twins(stack)
    s = stack.settings
    crm = SalesforceCrm(connector_settings(s.crm))
    psa = KantataPsa(connector_settings(s.psa))
    hcm = WorkdayHcm(connector_settings(s.hcm))
    db = Databases(s)
    reports: dict[str, Any] = {}
    try:
        users = await twins.worker_users()  # before any fault
        time_workers, leavers = pick_people(users, args)
        today = date.today()
        first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
        ctx = Context(
            stack=stack,
            args=args,
            db=db,
            twins=twins,
            crm=crm,
            psa=psa,
            hcm=hcm,
            users=users,
            time_workers=time_workers,
            leavers=leavers,
            days=[first + timedelta(days=d) for d in range((today - first).days)],
        )
        for name in args.scenarios:
            reports[name] = await RUNNERS[name](ctx)
    finally:
        for closing in (crm, psa, hcm, twins):
            with contextlib.suppress(Exception):
                await closing.aclose()
        db.close()
    return reports


async def run(args: argparse.Namespace, home: Path | None = None) -> dict[str, Any]:
    """The scenarios of `args` on one stack; the report. `home` (kept) instead of a temp home
    (removed when the run is ok, kept otherwise)."""
    started = time.monotonic()
    load = load_average()
    temp = None
    if home is None:
        temp = TempHome("pssync-saga-chaos-")
        home = temp.root
    report: dict[str, Any] = {"bench": "saga_chaos", "scenarios": {}}
    ok = False
    try:
        async with chaos_stack(args, home) as stack:
            report["scenarios"] = scenarios = await run_scenarios(stack, args)
        report["duplicates"] = sum(r["duplicates"] for r in scenarios.values())
        report["missing"] = sum(r["missing"] for r in scenarios.values())
        report["wrong"] = sum(r["wrong"] for r in scenarios.values())
        report["failed_runs"] = sum(r["failed_runs"] for r in scenarios.values())
        ok = all(r["ok"] for r in scenarios.values()) and len(scenarios) == len(args.scenarios)
    finally:
        report["ok"] = ok
        report["wall_s"] = round(time.monotonic() - started, 1)
        report["machine"] = machine(cores_key="cores", load=False) | {"load_average_at_start": load}
        report["config"] = {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(vars(args).items())
        } | {
            "twins": "own process (pssync sandbox), zero latency",
            "worker": "in process" if args.worker_in_process else "own process (pssync worker)",
            "temporal": "embedded dev server, SQLite file under the temp home",
            "time_sweep": "pushed out to a day (webhooks only)",
        }
        report["date"] = datetime.now(UTC).isoformat(timespec="seconds")
        if ok and temp is not None and not args.keep_home:
            temp.remove()
        else:
            report["home"] = str(home)
            log(f"kept {home} (worker.log, twins.log, the twins' and the store's databases)")
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_flags(parser, {"--quick": f"smaller sizes: {QUICK}"})
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, run in this order (default {','.join(SCENARIOS)})",
    )
    add_options(
        parser, [(f"--{n.replace('_', '-')}", int, None, f"default {FULL[n]}") for n in FULL]
    )
    add_options(
        parser,
        [
            ("--time-workers", int, 20, "workers entering time"),
            ("--psa-lost-rate", float, 0.3),
            ("--error-rate", float, 0.2),
            ("--rate-limit-rate", float, 0.1),
            ("--lost-response-rate", float, 0.05),
            ("--seed", int, 42),
            ("--concurrency", int, 20, "deals in flight"),
            ("--deal-timeout-s", float, 300.0),
            ("--settle-timeout-s", float, 300.0, "longest wait for the postings"),
            ("--stall-s", float, 60.0, "stop waiting once no posting came for this"),
            (
                "--quiet-timeout-s",
                float,
                90.0,
                "longest wait for the scenario's runs to have no activity pending",
            ),
            (
                "--time-currencies",
                None,
                "",
                "only projects in these currencies get time (e.g. USD); default: any",
            ),
            ("--hcm-poll-s", int, 5, "HCM poll Schedule interval"),
        ],
    )
    add_flags(
        parser,
        {
            "--worker-in-process": "run the worker in this process instead of as `pssync worker`",
            "--keep-home": None,
        },
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    for name, value in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}")
    return args


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    report = run_cancellable(run(args))
    print_json(report, default=str)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
