"""The reconciliation bench's world: many projects linked in PSA, ERP and the xref (as the
provisioning saga leaves them, made directly through the connectors so 200 take seconds, not a
minute of sagas), and approved time spread over them, posted through the time pipelines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from bench._harness import gather_limited, log
from bench._time_to_invoice.world import Bench, Entry, EntryFactory, Project
from connectors.erp import ErpPort
from connectors.psa import PsaPort
from contracts import Money, System
from contracts.settings import Settings
from contracts.v1 import BillingRule, Customer
from contracts.v1 import Project as CanonicalProject
from contracts.v1.time_to_invoice import pipeline_input
from sandbox.seed import Worker

RATE_CARD = "RC-STD-USD"
LINK_AT_ONCE = 8
"""Projects linked concurrently (each is four sequential PSA and ERP calls and more)."""


@dataclass
class Linked:
    psa_id: str
    job_id: str
    enterprise_id: str


class DaysFirst(EntryFactory):
    """Entries of one project spread over the days first, newest first, then over the workers
    (the time-to-invoice bench's factory fills one day with every worker first): each project
    gets time in the current month, and still no two entries of a project share worker, day
    and minutes."""

    def next_entry(self, project: Project) -> dict[str, Any]:
        k = project.made
        project.made += 1
        users, days = len(self.users), len(self.days)
        minutes = 60 + 15 * (k // (users * days))
        if minutes > 1440:
            raise ValueError("too many entries for the workers and days chosen")
        return {
            "workspace_id": int(project.psa_id),
            "user_id": int(self.users[(k // days) % users]),
            "date_performed": self.days[days - 1 - k % days].isoformat(),
            "time_in_minutes": minutes,
        }


def staffable(workers: Sequence[Worker], first: date) -> list[Worker]:
    return [
        w
        for w in workers
        if w.status == "active"
        and w.termination_date is None
        and w.hire_date < first - timedelta(days=7)
    ]


async def link_projects(
    bench: Bench, psa: PsaPort, erp: ErpPort, count: int, *, tag: str
) -> list[Linked]:
    """`count` T&M projects on the USD rate card, `LINK_AT_ONCE` at a time: the PSA shell, the
    ERP customer and project, and the xref links the saga writes (enterprise ID -> PSA
    workspace, ERP job). Each is managed by an active worker, cycling through them."""
    settings = bench.stack.settings
    today = date.today()
    first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    people = staffable(bench.firm.workers, first)

    async def one(n: int) -> Linked:
        boss = people[n % len(people)]
        eid = f"01JRB1{n:020d}"
        project = CanonicalProject(
            name=f"Reconciliation bench {tag} {n}",
            customer_id=f"ACC-RB-{tag}-{n}",
            billing_rule=BillingRule.TIME_AND_MATERIALS,
            contract_value=Money("500000.00", "USD"),
            start_date=first - timedelta(days=30),
            end_date=today + timedelta(days=180),
            cost_center=boss.cost_center,
            rate_card_id=RATE_CARD,
            delivery_manager=boss.id,
            source_system=System.CRM,
        )
        psa_id = await psa.create_project_shell(project, enterprise_id=eid)
        customer = await erp.upsert_customer(
            Customer(
                external_id=project.customer_id, name=f"RB {tag} {n}", source_system=System.CRM
            ),
            enterprise_id=f"01JRB2{n:020d}",
        )
        job = await erp.upsert_project(
            project, enterprise_id=eid, customer_erp_id=customer, budget=Money("500000", "USD")
        )

        def link() -> None:
            store = bench.stack.store
            store.link_xref(eid, "project", "PSA", settings.psa.tenant, "workspace", str(psa_id))
            store.link_xref(eid, "project", "ERP", settings.erp.tenant, "job", str(job))

        await asyncio.to_thread(link)
        return Linked(psa_id=str(psa_id), job_id=str(job), enterprise_id=eid)

    return await gather_limited(range(count), LINK_AT_ONCE, one)


async def days_first_factory(bench: Bench) -> DaysFirst:
    base = await bench.entry_factory()
    return DaysFirst(users=base.users, worker_of_user=base.worker_of_user, days=base.days)


async def post_through_pipelines(
    bench: Bench, settings: Settings, entries: list[Entry], timeout_s: float
) -> float:
    """Hand `entries` to their projects' pipelines as the sweep does and wait until the ledger
    holds them all posted; the seconds it took."""
    before = await bench.counts()
    t0 = time.perf_counter()
    await bench.hand_over(entries, pipeline_input(settings, "-"), "bench-setup")
    await bench.wait_posted(
        before["posted"] + len(entries), timeout_s=timeout_s, what="set-up postings"
    )
    seconds = time.perf_counter() - t0
    log(f"  {len(entries)} entries posted in {seconds:.1f} s")
    return seconds


async def pipelines_idle(bench: Bench, projects: list[str]) -> bool:
    """No pipeline of `projects` holds an entry it has not finished with."""
    statuses = await bench.pipeline_statuses(projects)
    return all(not s.pending and not s.in_flight for s in statuses)
