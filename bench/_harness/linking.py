"""Projects linked in PSA and ERP as the provisioning saga leaves them, with four active people
each and the standard rate card: the starting point of the time-to-invoice e2e test and the
Temporal outage bench."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from connectors.erp import NetSuiteErp
from connectors.psa import KantataPsa
from contracts import Money, System
from contracts.v1 import BillingRule, Customer, Project
from sandbox.seed import Worker

RATE_CARD = "RC-STD-USD"
STAFF_PER_PROJECT = 4


@dataclass
class LinkedProject:
    psa_id: int
    job_id: int
    enterprise_id: str
    users: list[int]
    """The PSA user ids of the project's people."""


async def link_projects(
    psa: KantataPsa,
    erp: NetSuiteErp,
    workers: Sequence[Worker],
    count: int,
    *,
    name: str,
    tag: str,
    ulid_prefix: str,
) -> list[LinkedProject]:
    """`count` projects, one after the other: the PSA shell, the ERP customer and project,
    each staffed with four people active since before last month. Project n is named
    `{name} {n}`, its customer `ACC-{tag}-{n}` (`{tag} {n}`); the enterprise ids are
    `{ulid_prefix}1...` (project) and `{ulid_prefix}2...` (customer)."""
    today = date.today()
    first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    people = [
        w
        for w in workers
        if w.status == "active"
        and w.termination_date is None
        and w.hire_date < first - timedelta(days=7)
    ]
    linked = []
    for n in range(count):
        staff = people[n * STAFF_PER_PROJECT : (n + 1) * STAFF_PER_PROJECT]
        eid = f"{ulid_prefix}1{n:020d}"
        project = Project(
            name=f"{name} {n}",
            customer_id=f"ACC-{tag}-{n}",
            billing_rule=BillingRule.TIME_AND_MATERIALS,
            contract_value=Money("500000.00", "USD"),
            start_date=first - timedelta(days=30),
            end_date=today + timedelta(days=180),
            cost_center=staff[0].cost_center,
            rate_card_id=RATE_CARD,
            delivery_manager=staff[0].id,
            source_system=System.CRM,
        )
        psa_id = await psa.create_project_shell(project, enterprise_id=eid)
        customer = await erp.upsert_customer(
            Customer(external_id=f"ACC-{tag}-{n}", name=f"{tag} {n}", source_system=System.CRM),
            enterprise_id=f"{ulid_prefix}2{n:020d}",
        )
        job = await erp.upsert_project(
            project, enterprise_id=eid, customer_erp_id=customer, budget=Money("500000", "USD")
        )
        users = [int(await psa._require_user(w.id)) for w in staff]
        linked.append(
            LinkedProject(psa_id=int(psa_id), job_id=int(job), enterprise_id=eid, users=users)
        )
    return linked
