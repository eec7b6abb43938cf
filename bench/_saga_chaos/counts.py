"""What the saga chaos bench counts once a scenario is quiet: per system and business key,
the records the twins' databases and the store hold against what the scenario asked for;
how the scenario's runs ended; the scenario's report."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from bench._harness import effect, marked, system_summary, tally
from bench._harness import log_stamped as log
from bench._saga_chaos.moves import ChangeOrderWork, TerminationWork, TimeWork, erp_budget
from bench._saga_chaos.world import (
    Context,
    Counts,
    Deal,
    cents,
    fault_report,
    in_list,
    set_faults,
)
from connectors.psa import DEMAND_MARKER, MILESTONE_MARKER, WBS_MARKER
from contracts.v1 import LineType

# --------------------------------------------------------------------------- deals


def expected_shape(deal: Deal) -> tuple[list[str], list[str], list[str]]:
    """WBS story codes, milestone codes and demand roles `project_from_opportunity` and
    `staffing_demand` make of the deal's lines."""
    stories, milestones, roles = [], [], set()
    for i, line in enumerate(deal.new.lines, start=1):
        if line.line_type is LineType.MILESTONE:
            milestones.append(f"M{i:02d}")
            continue
        stories.append(f"{i:02d}")
        if line.line_type is LineType.TIME_AND_MATERIALS and line.role and line.quantity > 0:
            roles.add(line.role)
    return stories, milestones, sorted(roles)


def count_deals(ctx: Context, deals: list[Deal]) -> Counts:
    """Per system, per kind: what the deals should have made against what is there."""
    tenant = ctx.settings.crm.tenant
    opp_ids = [d.opp_id for d in deals if d.opp_id]
    eid_of = {
        d.opp_id: ctx.db.store_rows(
            "SELECT enterprise_id FROM xref WHERE system = 'CRM' AND object_type = 'Opportunity' "
            "AND tenant = :t AND external_id = :o",
            t=tenant,
            o=d.opp_id,
        )
        for d in deals
        if d.opp_id
    }
    # Store: one enterprise ID per opportunity.
    store = {
        "project_enterprise_ids": tally(opp_ids, [o for o, rows in eid_of.items() for _ in rows]),
    }
    eid_single = {o: rows[0][0] for o, rows in eid_of.items() if rows}
    psa, workspaces = count_deal_workspaces(ctx, deals, eid_single)
    erp, jobs = count_deal_jobs(ctx, deals, eid_single)
    return {
        "crm": count_deal_opportunities(ctx, deals, eid_of),
        "psa": psa,
        "erp": erp,
        "store": store,
        "_detail": {
            "workspaces_archived": sum(1 for w in workspaces if w[2]),
            "jobs_closed": sum(1 for j in jobs if str(j[2]) != "2"),
            "deals_with_two_workspaces": [
                o for o, n in Counter(w[1] for w in workspaces).items() if n > 1
            ][:10],
        },
    }


def count_deal_opportunities(
    ctx: Context, deals: list[Deal], eid_of: dict[Any, list[Any]]
) -> dict[str, Any]:
    """CRM: one opportunity and one line item per key; the enterprise ID written back."""
    keys = [d.key for d in deals]
    opps = ctx.db.rows(
        "crm",
        "SELECT Pssync_Key__c, Id, Enterprise_Project_Id__c FROM crm_opportunity "
        f"WHERE Pssync_Key__c IN ({in_list(keys)})",
    )
    line_keys = [f"{d.key}:{n}" for d in deals for n in range(1, len(d.new.lines) + 1)]
    lines = ctx.db.rows(
        "crm",
        "SELECT Pssync_Key__c FROM crm_opportunity_line_item "
        f"WHERE Pssync_Key__c IN ({in_list(line_keys)})",
    )
    written = {row[1]: row[2] for row in opps}
    write_back_ok = sum(
        1
        for d in deals
        if d.opp_id
        and len(eid_of[d.opp_id]) == 1
        and written.get(d.opp_id) == eid_of[d.opp_id][0][0]
    )
    write_back_wrong = sum(
        1
        for d in deals
        if d.opp_id
        and written.get(d.opp_id) is not None
        and [r[0] for r in eid_of[d.opp_id]] != [written.get(d.opp_id)]
    )
    return {
        "opportunities": tally(keys, [row[0] for row in opps]),
        "line_items": tally(line_keys, [row[0] for row in lines]),
        "enterprise_id_written_back": effect(len(deals), write_back_ok, wrong=write_back_wrong),
    }


def count_deal_workspaces(
    ctx: Context, deals: list[Deal], eid_single: dict[Any, Any]
) -> tuple[dict[str, Any], list[Any]]:
    """PSA: one workspace per deal; its stories, milestones and staffing demand once each.
    The kinds, and the workspaces found."""
    db = ctx.db
    opp_ids = [d.opp_id for d in deals if d.opp_id]
    workspaces = db.rows(
        "psa",
        "SELECT id, opportunity_ref, archived FROM psa_workspace "
        f"WHERE opportunity_ref IN ({in_list(opp_ids)})",
    )
    deal_of_ws = {int(w[0]): w[1] for w in workspaces}
    ws_ids = list(deal_of_ws)
    stories = db.rows(
        "psa", f"SELECT workspace_id, description FROM psa_story WHERE workspace_id IN "
        f"({in_list(ws_ids)})",
    )  # fmt: skip
    milestones = db.rows(
        "psa", f"SELECT workspace_id, description FROM psa_billing_milestone WHERE workspace_id "
        f"IN ({in_list(ws_ids)})",
    )  # fmt: skip
    requests = db.rows(
        "psa", f"SELECT workspace_id, role, notes FROM psa_resource_request WHERE workspace_id "
        f"IN ({in_list(ws_ids)})",
    )  # fmt: skip
    shapes = {d.opp_id: expected_shape(d) for d in deals if d.opp_id}
    psa = {
        "workspaces": tally(opp_ids, [w[1] for w in workspaces]),
        "stories": tally(
            [(o, c) for o, s in shapes.items() for c in s[0]],
            [(deal_of_ws[int(s[0])], marked(s[1], WBS_MARKER)) for s in stories],
        ),
        "billing_milestones": tally(
            [(o, c) for o, s in shapes.items() for c in s[1]],
            [(deal_of_ws[int(m[0])], marked(m[1], MILESTONE_MARKER)) for m in milestones],
        ),
        "resource_requests": tally(
            [(o, r, f"{eid_single.get(o)}:{r}") for o, s in shapes.items() for r in s[2]],
            [
                (deal_of_ws[int(r[0])], r[1], marked(r[2], DEMAND_MARKER))
                for r in requests
                if (marked(r[2], DEMAND_MARKER) or "").startswith(
                    f"{eid_single.get(deal_of_ws[int(r[0])])}:"
                )
            ],
        ),
    }
    return psa, workspaces


def count_deal_jobs(
    ctx: Context, deals: list[Deal], eid_single: dict[Any, Any]
) -> tuple[dict[str, Any], list[Any]]:
    """ERP: one job per deal (by name: a second enterprise ID would make a second job), the
    one carrying the deal's enterprise ID among them. The kinds, and the jobs found."""
    opp_ids = [d.opp_id for d in deals if d.opp_id]
    names = [d.name for d in deals]
    jobs = ctx.db.rows(
        "erp",
        "SELECT company_name, external_id, status FROM erp_job "
        f"WHERE company_name IN ({in_list(names)})",
    )
    job_eids = {row[1] for row in jobs}
    erp = {
        "jobs": tally(names, [row[0] for row in jobs]),
        "jobs_with_enterprise_id": effect(
            len(deals), sum(1 for o in opp_ids if eid_single.get(o) in job_eids)
        ),
    }
    return erp, jobs


def count_customers(ctx: Context, accounts: list[str], deals: list[Deal]) -> Counts:
    """ERP: one customer per CRM account pointing at the enterprise customer ID, every job of
    a pair on that customer; store: one enterprise ID per account."""
    db = ctx.db
    tenant = ctx.settings.crm.tenant
    erp_customers = db.rows(
        "erp",
        "SELECT external_id, id, enterprise_id FROM erp_customer "
        f"WHERE external_id IN ({in_list(accounts)})",
    )
    xrefs = db.store_rows(
        "SELECT external_id, enterprise_id FROM xref WHERE system = 'CRM' "
        "AND object_type = 'Account' AND tenant = :t AND external_id IN "
        f"({in_list(accounts)})",
        t=tenant,
    )
    eid_of = {acc: eid for acc, eid in xrefs}
    customer_of = {acc: (int(i), e) for acc, i, e in erp_customers}
    jobs = dict(
        db.rows(
            "erp",
            "SELECT company_name, customer_id FROM erp_job "
            f"WHERE company_name IN ({in_list([d.name for d in deals])})",
        )
    )
    names = {d.name for d in deals}
    wrong_eid = sum(1 for acc, (_i, e) in customer_of.items() if eid_of.get(acc) not in (None, e))
    on_customer = sum(
        1
        for d in deals
        if d.name in jobs
        and d.new.account_id in customer_of
        and int(jobs[d.name]) == customer_of[d.new.account_id][0]
    )
    return {
        "erp": {
            "customers": tally(accounts, [c[0] for c in erp_customers]),
            "customer_enterprise_id": effect(
                len(accounts), len(customer_of) - wrong_eid, wrong=wrong_eid
            ),
            "jobs_on_the_account_customer": effect(
                len(deals), on_customer, wrong=len(set(jobs) & names) - on_customer
            ),
        },
        "store": {
            "customer_enterprise_ids": tally(accounts, [x[0] for x in xrefs]),
        },
    }


def merge_systems(*parts: Counts) -> dict[str, dict[str, Any]]:
    systems: dict[str, dict[str, dict[str, int]]] = {}
    for part in parts:
        for system, kinds in part.items():
            systems.setdefault(system, {}).update(kinds)
    return {name: system_summary(kinds) for name, kinds in systems.items()}


def deal_runs(deals: list[Deal]) -> dict[str, Any]:
    seconds = sorted(d.seconds for d in deals if d.seconds is not None)
    return {
        "won": len(deals),
        "provisioned": sum(1 for d in deals if d.result is not None),
        "failed": sum(1 for d in deals if d.result is None),
        "won_to_provisioned_p50_s": round(seconds[len(seconds) // 2], 2) if seconds else None,
        "won_to_provisioned_max_s": round(seconds[-1], 2) if seconds else None,
        "errors": [f"{d.key}: {d.error}" for d in deals if d.error][:5],
    }


# --------------------------------------------------------------------------- time


def count_time(ctx: Context, work: TimeWork) -> Counts:
    """ERP: one live timebill per approved entry, hours = minutes / 60, cost = labor cost x
    hours (the ERP's own labor cost for the worker)."""
    if not work.entries:
        return {}
    ids = list(work.entries)
    rows = ctx.db.rows(
        "erp",
        "SELECT id, source_entry, hours, cost_amount, reverses_id FROM erp_timebill "
        f"WHERE source_entry IN ({in_list(ids)})",
    )
    reversed_ids = {r[4] for r in rows if r[4] is not None}
    live = [r for r in rows if r[4] is None and r[0] not in reversed_ids]
    worker_of = {u: w for w, u in ctx.users.items()}
    rates = dict(ctx.db.rows("erp", "SELECT external_id, labor_cost FROM erp_employee"))
    wrong = 0
    hours_expected = hours_posted = Decimal(0)
    for spec in work.entries.values():
        hours_expected += Decimal(spec["time_in_minutes"]) / 60
    for r in live:
        spec = work.entries[str(r[1])]
        hours = Decimal(str(r[2]))
        hours_posted += hours
        expected_hours = Decimal(spec["time_in_minutes"]) / 60
        rate = rates.get(worker_of.get(str(spec["user_id"]), ""))
        expected_cost = cents(Decimal(str(rate)) * expected_hours) if rate is not None else None
        if hours != expected_hours or (expected_cost is not None and cents(r[3]) != expected_cost):
            wrong += 1
    counts = Counter(str(r[1]) for r in live)
    totals = effect(len(live), len(live) - wrong, wrong=wrong)
    return {
        "erp": {
            "time_postings": tally(ids, [str(r[1]) for r in live]),
            # every live posting: hours and cost as the entry and the ERP's labor cost say
            "time_posting_amounts": totals
            | {"hours_expected": float(hours_expected), "hours_posted": float(hours_posted)},
            # a reversal is a record the ledger should not hold here (nothing was unapproved)
            "time_reversals": {**effect(0, 0), "unexpected": len(reversed_ids)},
        },
        "_detail": {"entries_posted_twice": [e for e, n in counts.items() if n > 1][:10]},
    }


# --------------------------------------------------------------------------- change orders


def moved_by(moved: Decimal, delta: Decimal) -> str:
    """How a budget moved against the change order's delta: once, twice or more, not at all,
    or by something else."""
    if moved == delta:
        return "once"
    if moved == 0:
        return "not at all"
    if moved % delta == 0 and moved / delta > 1:
        return "twice or more"
    return "wrong"


def count_change_orders(ctx: Context, works: list[ChangeOrderWork]) -> Counts:
    if not works:
        return {}
    titles = [w.title for w in works]
    cos = ctx.db.rows(
        "psa", f"SELECT title, state, id FROM psa_change_order WHERE title IN ({in_list(titles)})"
    )
    state_of = {str(c[2]): c[1] for c in cos}
    erp_moves: Counter[str] = Counter()
    psa_moves: Counter[str] = Counter()
    versions: list[int] = []
    for w in works:
        if w.deal.result is None:
            continue
        after = erp_budget(ctx, w.deal.result.enterprise_id)
        if after is not None and w.erp_before is not None:
            erp_moves[moved_by(after[0] - w.erp_before[0], Decimal(w.delta))] += 1
            versions.append(after[1] - w.erp_before[1])
        [(budget,)] = ctx.db.rows(
            "psa",
            "SELECT budget_in_cents FROM psa_workspace WHERE id = :w",
            {"w": int(w.deal.result.psa_project_id)},
        )
        if w.psa_before is not None:
            psa_moves[moved_by(Decimal(int(budget) - w.psa_before), Decimal(w.delta * 100))] += 1
    keys = [f"co:{w.co_id}:Consultant" for w in works if w.co_id]
    requests = ctx.db.rows(
        "psa",
        "SELECT notes, status FROM psa_resource_request WHERE notes LIKE :m",
        {"m": f"%{DEMAND_MARKER}co:%"},
    )
    found = [marked(r[0], DEMAND_MARKER) for r in requests]
    return {
        "_detail": {"erp_budget_versions_moved": versions},
        "psa": {
            "change_orders_submitted": tally(titles, [c[0] for c in cos]),
            "change_orders_applied": effect(
                len(works), sum(1 for w in works if state_of.get(str(w.co_id)) == "applied")
            ),
            "change_order_budgets": effect(
                len(works), psa_moves["once"], psa_moves["twice or more"], psa_moves["wrong"]
            ),
            "change_order_resource_requests": tally(keys, [k for k in found if k in set(keys)]),
        },
        "erp": {
            "change_order_budget_revisions": effect(
                len(works), erp_moves["once"], erp_moves["twice or more"], erp_moves["wrong"]
            ),
        },
    }


# --------------------------------------------------------------------------- terminations


def count_terminations(ctx: Context, works: list[TerminationWork]) -> Counts:
    if not works:
        return {}
    db = ctx.db
    leavers = [w.leaver.id for w in works]
    wid_of = dict(  # worker id -> WID (the HCM's events name the WID)
        db.rows(
            "hcm",
            f"SELECT worker_id, wid FROM hcm_worker WHERE worker_id IN ({in_list(leavers)})",
        )
    )
    events = db.rows(
        "hcm",
        "SELECT worker_wid, type, effective_date FROM hcm_event WHERE type = 'terminate' "
        f"AND worker_wid IN ({in_list(list(wid_of.values()))})",
    )
    ended = closed = 0
    assignments: list[tuple[str, str]] = []
    for w in works:
        if w.deal.result is None:
            continue
        user = ctx.users[w.leaver.id]
        rows = db.rows(
            "psa",
            "SELECT id, end_date FROM psa_assignment WHERE workspace_id = :w AND user_id = :u",
            {"w": int(w.deal.result.psa_project_id), "u": int(user)},
        )
        assignments += [(w.leaver.id, str(r[0])) for r in rows]
        ended += any(str(r[1]) == w.last_day.isoformat() for r in rows)
        [(after,)] = db.rows(
            "psa", "SELECT time_entry_closed_after FROM psa_user WHERE id = :u", {"u": int(user)}
        )
        closed += str(after) == w.last_day.isoformat()
    backfill_keys = [f"backfill:{w.leaver.id}:{w.assignment_id}" for w in works if w.assignment_id]
    requests = db.rows(
        "psa",
        "SELECT notes FROM psa_resource_request WHERE notes LIKE :m",
        {"m": f"%{DEMAND_MARKER}backfill:%"},
    )
    found = [marked(r[0], DEMAND_MARKER) for r in requests]
    entries = [w.entry_id for w in works if w.entry_id]
    postings = db.rows(
        "erp",
        "SELECT id, source_entry, reverses_id FROM erp_timebill "
        f"WHERE source_entry IN ({in_list(entries)})",
    )
    reversed_ids = {r[2] for r in postings if r[2] is not None}
    return {
        "hcm": {
            "terminations": tally([wid_of.get(x) for x in leavers], [e[0] for e in events]),
        },
        "psa": {
            "leaver_assignments": tally(
                [w.leaver.id for w in works if w.assignment_id], [a[0] for a in assignments]
            ),
            "assignments_ended_on_last_day": effect(len(works), ended),
            "backfill_requests": tally(
                backfill_keys, [k for k in found if k in set(backfill_keys)]
            ),
            "time_entry_closed_after_last_day": effect(len(works), closed),
        },
        "erp": {
            "leaver_time_postings": tally(
                entries,
                [str(r[1]) for r in postings if r[2] is None and r[0] not in reversed_ids],
            ),
        },
    }


# --------------------------------------------------------------------------- quiet, report


async def quiesce(ctx: Context, since: datetime, timeout_s: float) -> dict[str, Any]:
    """Wait until no running workflow the scenario started (start time after `since`) has an
    activity pending (twice in a row), so nothing still in flight can add a record after the
    count. The HCM poller and the time sweep run on their own and are left out. What is
    still pending at the deadline is reported with its attempt and last failure: an activity
    that retries forever is a finding of its own."""
    skip = {"HcmChangesPoller", "TimeToInvoiceSweep"}
    started = time.monotonic()
    calm = 0
    stuck: list[dict[str, Any]] = []
    while True:
        stuck = []
        async for wf in ctx.client.list_workflows("ExecutionStatus = 'Running'"):
            if wf.workflow_type in skip or wf.start_time < since:
                continue
            with contextlib.suppress(Exception):
                desc = await ctx.client.get_workflow_handle(wf.id, run_id=wf.run_id).describe()
                for act in desc.raw_description.pending_activities:
                    stuck.append(
                        {
                            "workflow_id": wf.id,
                            "activity": act.activity_type.name,
                            "attempt": act.attempt,
                            "last_failure": act.last_failure.message[:300],
                        }
                    )
        calm = calm + 1 if not stuck else 0
        if calm >= 2 or time.monotonic() - started > timeout_s:
            break
        await asyncio.sleep(1.0)
    for s in stuck[:10]:
        log(
            f"  still pending: {s['workflow_id']} {s['activity']} attempt {s['attempt']}: "
            f"{s['last_failure'][:160]}"
        )
    return {
        "seconds": round(time.monotonic() - started, 1),
        "pending_activities": len(stuck),
        "stuck": stuck[:10],
    }


async def run_statuses(ctx: Context, workflow_ids: list[str]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for wid in workflow_ids:
        try:
            desc = await ctx.client.get_workflow_handle(wid).describe()
            out[desc.status.name if desc.status else "UNKNOWN"] += 1
        except Exception:
            out["NOT_FOUND"] += 1
    return dict(out)


def open_exceptions(ctx: Context, workflow_ids: list[str]) -> list[dict[str, Any]]:
    wanted = set(workflow_ids)
    return [
        {"workflow_id": i.workflow_id, "cause": i.cause_code, "detail": (i.detail or "")[:160]}
        for i in ctx.stack.store.list_exceptions(status="open")
        if i.workflow_id in wanted
    ]


async def finish(
    ctx: Context,
    name: str,
    started: float,
    lost_before: dict[str, int],
    parts: list[Callable[[], Counts]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Faults off, wait for quiet, count, report."""
    faults = await fault_report(ctx, lost_before)
    await set_faults(ctx, {})
    quiet = await quiesce(ctx, ctx.since, ctx.args.quiet_timeout_s)
    log(f"{name}: quiet after {quiet['seconds']} s; counting")
    counted = [count() for count in parts]
    details = {k: v for c in counted for k, v in c.pop("_detail", {}).items()}
    systems = merge_systems(*counted)
    wids = [w for ws in ctx.workflows.values() for w in ws]
    runs = {kind: await run_statuses(ctx, ids) for kind, ids in ctx.workflows.items()}
    exceptions = open_exceptions(ctx, wids)
    blocking = [e for e in exceptions if not e["workflow_id"].startswith("termination/")]
    failed_runs = sum(
        n
        for kind, statuses in runs.items()
        for status, n in statuses.items()
        if status != ("RUNNING" if kind == "WorkerTermination" else "COMPLETED")
    )
    report = {
        "ok": all(s["ok"] for s in systems.values()) and failed_runs == 0 and not blocking,
        "duplicates": sum(s["duplicates"] for s in systems.values()),
        "missing": sum(s["missing"] for s in systems.values()),
        "wrong": sum(s["wrong"] for s in systems.values()),
        "failed_runs": failed_runs,
        "systems": systems,
        "runs": runs,
        "exceptions_open": exceptions[:20],
        "faults": faults,
        "quiesce": quiet,
        **extra,
        "details": details,
        "wall_s": round(time.monotonic() - started, 1),
    }
    for system, s in systems.items():
        log(
            f"{name}: {system}: {s['duplicates']} duplicates, {s['missing']} missing, "
            f"{s['wrong']} wrong"
        )
    log(f"{name}: runs {runs}; open exception items {len(exceptions)}; wall {report['wall_s']} s")
    return report
