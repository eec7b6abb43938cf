"""The reconciliation scene: after time to invoice, real life drifts the systems apart behind
pssync's back — the PSA loses the webhook of one more approval, and a person edits an ERP
posting by hand — and a reconciliation pass of the project repairs the first (the entry is
posted) and raises an exception item for the second (the edited amount is left for a person)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

from temporalio.service import RPCError

from demo.checks import Check
from demo.deals import DealOutcome
from demo.time_to_invoice import _TimeRun
from demo.waits import actor_token
from stack import Stack

T = TypeVar("T")
APPROVED = "time_entry.approved"


async def reconciliation_scene(stack: Stack, deal: DealOutcome, say: Any = print) -> list[Check]:
    """On `deal`'s project: entry A approved and posted, then its ERP posting edited by hand
    (1 h -> 1.5 h); entry B approved while the PSA drops its `time_entry.approved` webhook.
    A labor-actuals pass of the project (started as `pssync reconcile --project` does, with no
    settle window: the drift is seconds old) must find exactly these two: B repaired through
    the time pipeline, A escalated as an exception item, the hand edit left in place."""
    import httpx

    from activities.reconciliation import start_reconciliation
    from contracts.naming import TASK_QUEUE, time_pipeline_workflow_id, time_sweep_schedule_id
    from contracts.v1.reconciliation import ReconciliationReport, reconciliation_input
    from sandbox.seed import build_firm

    assert stack.sandbox is not None and deal.psa_project_id is not None
    settings = stack.settings
    today = date.today()
    sandbox = stack.urls["sandbox"]
    # The sweep would find the lost approval too (every few minutes): paused for the scene,
    # so that what finds it here is reconciliation.
    sweep = stack.client.get_schedule_handle(time_sweep_schedule_id(settings.psa.tenant))
    with contextlib.suppress(RPCError):  # a stack without the Schedule has no sweep to pause
        await sweep.pause(note="demo: reconciliation scene")
    auth = {"Authorization": "Bearer dev-static-token"}
    try:
        async with httpx.AsyncClient(timeout=60, headers=auth) as http:
            run = _TimeRun(
                stack=stack,
                deal=deal,
                http=http,
                workflow_id=time_pipeline_workflow_id(settings.psa.tenant, deal.psa_project_id),
                psa=f"{sandbox}/psa/api/v1",
                erp=stack.sandbox.state("erp").engine,
            )
            worker = [
                w
                for w in build_firm(7).workers
                if w.status == "active" and w.termination_date is None and w.hire_date < today
            ][13]
            user = await run.user_of(worker.id)
            edited = await run.log_time(user, today, 50)
            await run.until(lambda: len(run.erp_rows([edited])) == 1, "entry A's posting")
            [(timebill_id,)] = _erp(
                run, f"SELECT id FROM erp_timebill WHERE source_entry = '{edited}'"
            )
            changed = await http.post(
                f"{sandbox}/erp/_admin/tamper/timebill/{timebill_id}/edit", json={"hours": "1.5"}
            )
            changed.raise_for_status()
            say(f"entry {edited} posted, then its ERP posting edited by hand: 0.83 h -> 1.5 h")
            dropped = await http.post(
                f"{sandbox}/psa/_admin/tamper/drop-webhooks", json={"type": APPROVED, "count": 1}
            )
            dropped.raise_for_status()
            lost = await run.log_time(user, today, 70)
            say(f"entry {lost} approved in the PSA; its webhook was dropped, the ERP never hears")

            request = reconciliation_input(
                settings, "labor_actuals", project=deal.psa_project_id, requested_by="demo"
            ).model_copy(update={"settle_s": 0.0})
            handle = await start_reconciliation(stack.client, request, task_queue=TASK_QUEUE)
            report: ReconciliationReport = await asyncio.wait_for(handle.result(), 120)
            say(
                f"reconciliation of project {deal.psa_project_id}: {report.found} found "
                f"{report.by_kind}, {report.repaired} repaired, {report.escalated} escalated"
            )
            ops = {"Authorization": f"Bearer {actor_token(stack, 'ops')}"}
            gw = stack.urls["gateway"]
            got = await http.get(f"{gw}/api/reconciliations/{report.run_id}", headers=ops)
            drifts = {d["keys"].get("entry"): d for d in got.json().get("drifts", [])}
            await run.until(lambda: _live(run, lost) == 1, "the lost entry's posting")

            async def item() -> list[dict[str, Any]]:
                r = await http.get(
                    f"{gw}/api/exceptions",
                    params={"process": "reconciliation", "status": "open"},
                    headers=ops,
                )
                # This run's item: a second demo on the same home finds the first one's too.
                return [
                    i
                    for i in r.json()["items"]
                    if i["cause_code"] == "amount_mismatch"
                    and ((i.get("context") or {}).get("keys") or {}).get("entry")
                    == f"time:{edited}"
                ]

            items = await _until(item, "the exception item")
    finally:
        with contextlib.suppress(RPCError):
            await sweep.unpause(note="demo: reconciliation scene done")
    hours = [Decimal(str(h)) for (h,) in _erp(run, _hours_sql(edited))]
    repaired, escalated = drifts.get(f"time:{lost}", {}), drifts.get(f"time:{edited}", {})
    say(f"entry {lost} posted by the repair; exception item {items[0]['id']} for entry {edited}")
    return [
        Check(
            "reconciliation: a dropped webhook's entry found and posted",
            repaired.get("kind") == "missing_in_erp" and repaired.get("state") == "repaired",
            f"{repaired.get('kind')} {repaired.get('state')}; 1 live posting in the ERP",
        ),
        Check(
            "reconciliation: an ERP posting edited by hand is an exception item",
            escalated.get("kind") == "amount_mismatch"
            and escalated.get("state") == "escalated"
            and len(items) == 1
            and hours == [Decimal("1.5")],
            f"{escalated.get('kind')} {escalated.get('state')}, {len(items)} open item, "
            f"ERP hours {', '.join(map(str, hours))} left as edited",
        ),
        Check(
            "reconciliation: nothing else drifted on the project",
            report.by_kind == {"amount_mismatch": 1, "missing_in_erp": 1},
            str(report.by_kind),
        ),
    ]


def _erp(run: _TimeRun, sql: str) -> list[Any]:
    from sqlalchemy import text

    with run.erp.connect() as conn:
        return list(conn.execute(text(sql)).all())


def _hours_sql(entry_id: str) -> str:
    return (
        f"SELECT hours FROM erp_timebill WHERE source_entry = '{entry_id}' AND kind <> 'reversal'"
    )


def _live(run: _TimeRun, entry_id: str) -> int:
    """Live postings of an entry: its postings net of reversals (each reversal cancels one)."""
    rows = run.erp_rows([entry_id])
    return sum(1 for r in rows if r.kind != "reversal") - sum(
        1 for r in rows if r.kind == "reversal"
    )


async def _until(
    check: Callable[[], Awaitable[list[T]]], what: str, timeout_s: float = 60
) -> list[T]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = await check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"reconciliation: {what} did not appear in {timeout_s}s")
        await asyncio.sleep(0.2)
