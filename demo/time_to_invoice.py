"""The time-to-invoice scene: approved PSA time reaches the ERP in batches, a missing rate is
fixed through the exceptions API, an unapproval is reversed, and the period is invoiced."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from demo.checks import Check
from demo.deals import DealOutcome
from demo.waits import actor_token, wait_for_open_exception
from stack import Stack

if TYPE_CHECKING:
    import httpx

UNRATED_ROLE = "Apprentice"
"""A billing role no project's rate card has: an entry logged for it is a `MissingRateCard`."""
RATED_ROLE = "Consultant"
"""The role the rate cards have, which a `MissingRateCard` item is corrected to."""
UNRATED_MINUTES = 45
"""The unrated entry's length: three quarters of an hour."""


async def time_to_invoice_scene(stack: Stack, deal: DealOutcome, say: Any = print) -> list[Check]:
    """Time on a provisioned project: 24 entries approved in the PSA twin reach the ERP through
    the webhooks in batches; one with a role the rate card lacks is held and fixed through the
    exceptions API; one unapproved after posting is reversed; then finance closes the period
    and the ERP invoice covers what was posted, with the PSA entries marked invoiced."""
    import httpx

    day = date.today() - timedelta(days=1)
    async with open_time_run(stack, deal) as run:
        entries = await log_entries(run, day, 24)
        odd = await log_unrated_entry(run, day)
        say(f"24 entries approved on {deal.name}, plus one for a role its rate card lacks")
        await run.until(lambda: len(run.erp_rows(entries)) == 24, "24 postings in the ERP")
        item = await wait_for_open_exception(stack, run.workflow_id)
        say(f"exception {item.cause_code}: {item.detail}; billing it as a {RATED_ROLE}")
        async with httpx.AsyncClient(timeout=60) as gw:
            resolution = await _resolve_as_consultant(run, gw, item)
            # A timesheet approved by mistake is unapproved: the ERP gets a reversing posting.
            await run.http.put(
                f"{run.psa}/time_entries/{entries[0]}.json",
                json={"time_entry": {"approved": False}},
            )
            await run.until(
                lambda: sum(1 for r in run.erp_rows([entries[0]]) if r.kind == "reversal") == 1,
                "the reversal",
            )
            say("one entry unapproved after posting: reversed in the ERP, not edited")
            billing = await _bill(run, gw, f"{day:%Y-%m}", say)
        live = [*entries[1:], odd]
        approved_minutes = await _approved_minutes(run, live)
        await run.until(lambda: run.invoiced(live) == len(live), "the PSA entries marked invoiced")
    return _invoice_checks(run, [*entries, odd], live, approved_minutes, resolution, billing, say)


@dataclass
class _TimeRun:
    """One run of the scene: the stack, the deal, its time pipeline, the PSA API client (as
    the PSA's dev token) and the ERP twin's database."""

    stack: Stack
    deal: DealOutcome
    http: httpx.AsyncClient
    workflow_id: str
    psa: str
    erp: Any

    def erp_rows(self, entry_ids: list[str]) -> list[Any]:
        from sqlalchemy import text

        with self.erp.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT source_entry, kind, hours, bill_amount FROM erp_timebill "
                        "WHERE source_entry IN (" + ",".join(f"'{i}'" for i in entry_ids) + ")"
                    )
                ).all()
            )

    def invoiced(self, live: list[str]) -> int:
        from sqlalchemy import text

        with self.stack.sandbox.state("psa").engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM psa_time_entry WHERE is_invoiced = 1 AND id IN ("
                        + ",".join(live)
                        + ")"
                    )
                ).scalar_one()
            )

    async def until(self, check: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not check():
            if asyncio.get_running_loop().time() > deadline:
                status = await self.stack.client.get_workflow_handle(self.workflow_id).query(
                    "status"
                )
                raise RuntimeError(
                    f"time to invoice: {what} did not happen in {timeout_s}s; the pipeline: "
                    f"{status.get('counters')}, billing {status.get('billed')}"
                )
            await asyncio.sleep(0.2)

    async def user_of(self, worker_id: str) -> int:
        refs = await self.http.get(
            f"{self.psa}/external_references.json",
            params={"subject_type": "User", "service_model_ref": worker_id},
        )
        return int(next(iter(refs.json()["external_references"].values()))["subject_id"])

    async def log_time(self, user: int, on: date, minutes: int, role: str | None = None) -> str:
        body: dict[str, Any] = {
            "workspace_id": int(self.deal.psa_project_id or 0),
            "user_id": user,
            "date_performed": on.isoformat(),
            "time_in_minutes": minutes,
        }
        if role is not None:
            body["role"] = role
        created = await self.http.post(f"{self.psa}/time_entries.json", json={"time_entry": body})
        created.raise_for_status()
        entry_id = str(created.json()["results"][0]["id"])
        approved = await self.http.put(
            f"{self.psa}/time_entries/{entry_id}.json", json={"time_entry": {"approved": True}}
        )
        approved.raise_for_status()
        return entry_id


@asynccontextmanager
async def open_time_run(stack: Stack, deal: DealOutcome) -> AsyncIterator[_TimeRun]:
    """Time on a provisioned project's pipeline: the PSA API client (as the PSA's dev token)
    open for the block, the pipeline's workflow ID and the ERP twin's database."""
    import httpx

    from contracts.naming import time_pipeline_workflow_id

    assert stack.sandbox is not None and deal.psa_project_id is not None
    auth = {"Authorization": "Bearer dev-static-token"}
    async with httpx.AsyncClient(timeout=60, headers=auth) as http:
        yield _TimeRun(
            stack=stack,
            deal=deal,
            http=http,
            workflow_id=time_pipeline_workflow_id(stack.settings.psa.tenant, deal.psa_project_id),
            psa=f"{stack.urls['sandbox']}/psa/api/v1",
            erp=stack.sandbox.state("erp").engine,
        )


async def _logging_users(run: _TimeRun, day: date) -> list[int]:
    """The PSA users of three workers active on `day` (the same three every time)."""
    from sandbox.seed import build_firm

    workers = [
        w
        for w in build_firm(7).workers
        if w.status == "active" and w.termination_date is None and w.hire_date < day
    ][10:13]
    return [await run.user_of(w.id) for w in workers]


async def log_entries(run: _TimeRun, day: date, count: int) -> list[str]:
    """`count` approved entries by three active workers over the week up to `day` (in its
    month), each a quarter hour longer every three; returns their IDs."""
    users = await _logging_users(run, day)
    entries = []
    for i in range(count):
        on = day - timedelta(days=i % 8)
        if on.month != day.month:
            on = day
        entries.append(await run.log_time(users[i % 3], on, 60 + 15 * (i // 3)))
    return entries


async def log_unrated_entry(run: _TimeRun, day: date) -> str:
    """One approved entry of 45 minutes on `day` for a role the project's rate card lacks
    (`UNRATED_ROLE`): the pipeline holds it as a `MissingRateCard` item. Returns its ID."""
    users = await _logging_users(run, day)
    return await run.log_time(users[0], day, UNRATED_MINUTES, role=UNRATED_ROLE)


async def hold_missing_rate_card(stack: Stack, deal: DealOutcome) -> tuple[str, Any]:
    """Log one unrated entry on the deal's project (yesterday) and wait for the pipeline to
    hold it; returns the entry's ID and its open `MissingRateCard` exception item."""
    async with open_time_run(stack, deal) as run:
        odd = await log_unrated_entry(run, date.today() - timedelta(days=1))
        item = await wait_for_open_exception(stack, run.workflow_id)
    return odd, item


async def _resolve_as_consultant(
    run: _TimeRun, gw: httpx.AsyncClient, item: Any
) -> tuple[httpx.Response, Any]:
    """Resolve the MissingRateCard item through the exceptions API, billing it as a
    Consultant; returns the gateway's response and the outcome it reports."""
    ops = {"Authorization": f"Bearer {actor_token(run.stack, 'ops')}"}
    resolved = await gw.post(
        f"{run.stack.urls['gateway']}/api/exceptions/{item.id}/resolution",
        headers=ops,
        json={"action": "retry_with_data", "corrections": {"role": RATED_ROLE}},
    )
    return resolved, resolved.json().get("result", {}).get("outcome")


async def _bill(
    run: _TimeRun, gw: httpx.AsyncClient, period: str, say: Any
) -> tuple[bool, Decimal | None]:
    """Bill the project as its billing rule says: T&M through the gateway, milestone in the
    PSA; returns whether the request was taken and the milestone's amount (None for T&M)."""
    ws = await run.http.get(f"{run.psa}/workspaces/{run.deal.psa_project_id}.json")
    rule = next(iter(ws.json()["workspaces"].values())).get("billing_rule")
    expected: Decimal | None = None
    # Kantata's "Billing Rule" custom field holds the label ("Time and Materials")
    if str(rule or "").casefold().replace(" ", "_") == "time_and_materials":
        # T&M: finance closes the period through the gateway.
        finance = {"Authorization": f"Bearer {actor_token(run.stack, 'finance_controller')}"}
        billed = await gw.post(
            f"{run.stack.urls['gateway']}/api/projects/{run.deal.psa_project_id}/billing",
            headers=finance,
            json={"period": period},
        )
        billed_ok = billed.status_code == 202
        say(f"finance closes T&M period {period} through the gateway")
    else:
        # Milestone billing: completing a milestone in the PSA sends the webhook.
        listed = await run.http.get(
            f"{run.psa}/billing_milestones.json",
            params={"workspace_id": run.deal.psa_project_id, "state": "planned"},
        )
        milestone = next(iter(listed.json()["billing_milestones"].values()))
        done = await run.http.put(
            f"{run.psa}/billing_milestones/{milestone['id']}.json",
            json={"billing_milestone": {"state": "completed"}},
        )
        billed_ok = done.status_code == 200
        expected = Decimal(milestone["amount_in_cents"]) / 100
        say(f"milestone {milestone['title']!r} completed in the PSA")
    return billed_ok, expected


async def _approved_minutes(run: _TimeRun, live: list[str]) -> int:
    """The minutes of the entries in `live` that the PSA holds approved."""
    approved_minutes = 0
    for entry_id in live:
        got = await run.http.get(f"{run.psa}/time_entries/{entry_id}.json")
        obj = next(iter(got.json()["time_entries"].values()))
        approved_minutes += obj["time_in_minutes"] if obj["approved"] else 0
    return approved_minutes


def _invoice_checks(
    run: _TimeRun,
    all_entries: list[str],
    live: list[str],
    approved_minutes: int,
    resolution: tuple[httpx.Response, Any],
    billing: tuple[bool, Decimal | None],
    say: Any,
) -> list[Check]:
    """What the ERP and the PSA hold at the end, checked against what was approved (and the
    resolution's and the billing request's answers)."""
    from sqlalchemy import text

    resolved, outcome = resolution
    billed_ok, expected = billing
    rows = run.erp_rows(all_entries)
    net_hours = sum((Decimal(str(r.hours)) for r in rows), Decimal(0))
    with run.erp.connect() as conn:
        invoices = conn.execute(
            text("SELECT total FROM erp_invoice WHERE external_id LIKE :k"),
            {"k": f"inv-{run.deal.psa_project_id}-%"},
        ).all()
    bill = sum((Decimal(str(r.bill_amount or 0)) for r in rows), Decimal(0))
    expected = bill if expected is None else expected
    say(
        f"ERP invoice of {invoices[0].total if invoices else '?'} USD; "
        f"its {len(live)} entries are marked invoiced in the PSA"
    )
    return [
        Check(
            "time: the ERP holds the approved hours, once each",
            net_hours == Decimal(approved_minutes) / 60
            and len({(r.source_entry, r.kind) for r in rows}) == len(rows),
            f"{net_hours} h posted, {Decimal(approved_minutes) / 60} h approved",
        ),
        Check(
            "time: MissingRateCard fixed through the API, then posted",
            resolved.status_code == 200 and outcome == "posted",
            f"HTTP {resolved.status_code}, {outcome}",
        ),
        Check(
            "time: one ERP invoice (T&M period or milestone), for the right amount",
            billed_ok and len(invoices) == 1 and Decimal(str(invoices[0].total)) == expected,
            f"{len(invoices)} invoice(s), total {invoices[0].total if invoices else '-'}, "
            f"expected {expected}",
        ),
    ]
