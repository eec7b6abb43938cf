"""Project master: every won CRM opportunity compared with its PSA and ERP projects and the xref
(`recon.compare.project_master`, ERP queue), and a person's "repair anyway" of one escalated
project drift (`project_force`, called by `recon.force_repair`).

Reads: the CRM's won opportunities (`opportunities_in_stage`, paged by the connector), the xref
(store), and per provisioned opportunity its PSA project (by its enterprise ID reference, and
the one the xref links when that is another: a duplicate if it is the deal's too) with its
budget, and its ERP project with its budget (by enterprise ID; the job the xref links only when
that is another): a handful of requests per project, none per field. Then, for the whole
chunk at once, the ERP projects of the deals' customers (`jobs_of_customers`: one SuiteQL
query per 100 customers, pages of 1,000), to find a job a person made for a deal by hand
(no enterprise ID, the deal's name or opportunity); the xref is asked only about the jobs that
match. The PSA has no list of a customer's workspaces to read so (Kantata's `GET /workspaces`
has no customer filter, its `search` matches keywords: one query per deal): there a duplicate
is found by its enterprise ID reference or the xref link, as above.
Safe repair: a lost xref link is written again. A won deal that was never provisioned is for a
person (it may predate pssync): their retry starts the provisioning saga (`OpportunityToProject`,
keyed by the opportunity: a run already there is joined, a completed one is not started again).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.common import SearchAttributePair

from activities._errors import translate_errors
from activities.reconciliation._base import (
    HEARTBEAT_EVERY_S,
    _CallCounter,
    _ReconBase,
    heartbeat_every,
)
from activities.reconciliation.project_rules import (
    CLOSED_STATUSES,
    ERP_PROJECT_OBJECT,
    PSA_PROJECT_OBJECT,
    Deal,
    FoundProject,
    OtherProject,
    ProjectContext,
    ProjectFinding,
    ProjectRepair,
    compare_project,
    duplicate_reason,
)
from connectors.erp import ErpProject
from connectors.erp.port import ErpJobHeader
from contracts.errors import BusinessRuleViolation, NotFoundError
from contracts.naming import opportunity_workflow_id
from contracts.systems import System
from contracts.v1 import Opportunity, Project
from contracts.v1.processes import (
    OPPORTUNITY_TO_PROJECT,
    PROCESS_OPPORTUNITY_TO_PROJECT,
    ProvisionProjectInput,
)
from contracts.v1.provisioning import CONTRACTED_STAGE
from contracts.v1.reconciliation import CompareChunk, DriftDecision, DriftKind, RunTotals
from plumbing.temporal import BUSINESS_PROCESS, CRM_OPPORTUNITY_ID, start_or_join
from store import XrefConflict

DEALS_AT_ONCE = 4


class _ProjectMasterMixin(_ReconBase):
    @activity.defn(name="recon.compare.project_master")
    @translate_errors
    async def compare_project_master(self, request: CompareChunk) -> RunTotals:
        """Compare every won opportunity of the scope with its projects and the xref."""
        ticker = asyncio.create_task(heartbeat_every(HEARTBEAT_EVERY_S))
        try:
            return await self._compare_projects(request)
        finally:
            ticker.cancel()

    async def _compare_projects(self, request: CompareChunk) -> RunTotals:
        counter = _CallCounter(self.crm, self.psa, self.erp)
        counter.note(self.crm)
        won = [o for o in await self.crm.opportunities_in_stage(CONTRACTED_STAGE) if o.is_won]
        only = {u.psa_project_id for u in request.units} - {"*"}
        limit = asyncio.Semaphore(DEALS_AT_ONCE)

        async def one(opp: Opportunity) -> Deal:
            async with limit:
                return await self._deal(opp, counter)

        deals = await asyncio.gather(*(one(o) for o in won))
        if only:
            deals = [
                d for d in deals if d.psa_link in only or (d.psa and d.psa.external_id in only)
            ]
        deals = await self._with_erp_others(deals, counter)
        ctx = ProjectContext(
            tenant=request.tenant,
            now=datetime.now(UTC),
            settle_s=request.settle_s,
            since=request.since,
        )
        findings = [f for d in deals for f in compare_project(ctx, d)]
        totals = await self._settle(request, findings, self._repair_projects)
        totals.records = len(won) + sum(bool(d.psa) + bool(d.erp) for d in deals)
        totals.projects = len(deals)
        totals.vendor_calls = counter.total()
        return totals

    async def _with_erp_others(self, deals: Sequence[Deal], counter: _CallCounter) -> list[Deal]:
        """The deals with the other ERP projects of their customers that may be copies made by
        hand (read for all the deals at once; the xref asked only about those)."""
        customers = sorted({d.erp.customer for d in deals if d.erp and d.erp.customer})
        if not customers:
            return list(deals)
        counter.note(self.erp, -(-len(customers) // 100))
        jobs = await self.erp.jobs_of_customers(customers)
        tenant = self.tenants.get(System.ERP.value, "default")
        out = []
        for deal in deals:
            if deal.erp is None or deal.erp.customer is None:
                out.append(deal)
                continue
            others = []
            for job in jobs.get(deal.erp.customer, []):
                other = _other(job)
                if duplicate_reason(deal, deal.erp, other, (deal.erp_link,)) is None:
                    continue
                linked = await asyncio.to_thread(
                    self.store.find_enterprise_id,
                    System.ERP.value,
                    tenant,
                    ERP_PROJECT_OBJECT,
                    other.external_id,
                )
                others.append(dataclasses.replace(other, linked_to=linked))
            out.append(dataclasses.replace(deal, erp_others=tuple(others)))
        return out

    def _crm_tenant(self) -> str:
        return self.tenants.get(System.CRM.value, "default")

    async def _deal(self, opp: Opportunity, counter: _CallCounter) -> Deal:
        eid = await asyncio.to_thread(
            self.store.find_enterprise_id,
            System.CRM.value,
            self._crm_tenant(),
            "Opportunity",
            opp.external_id,
        )
        eid = eid or opp.enterprise_id
        if eid is None:
            return Deal(
                opp.external_id, opp.name, updated_at=opp.updated_at, closed_on=opp.close_date
            )
        links = {
            (row.system, row.object_type): row.external_id
            for row in await asyncio.to_thread(self.store.xrefs_for, eid)
        }
        psa_link = links.get((System.PSA.value, PSA_PROJECT_OBJECT))
        erp_link = links.get((System.ERP.value, ERP_PROJECT_OBJECT))
        psa, psa_duplicates = await self._psa_side(eid, opp.external_id, psa_link, counter)
        erp, erp_duplicates = await self._erp_side(eid, erp_link, counter)
        activity.heartbeat()
        return Deal(
            opp.external_id,
            opp.name,
            opp.updated_at,
            opp.close_date,
            eid,
            psa_link,
            erp_link,
            psa,
            erp,
            psa_duplicates,
            erp_duplicates,
        )

    async def _psa_side(
        self, eid: str, opportunity_id: str, link: str | None, counter: _CallCounter
    ) -> tuple[FoundProject | None, tuple[str, ...]]:
        """The deal's PSA project (the one its enterprise ID reference leads to, else the one
        the xref links, if that one is the deal's) and, when both are there and differ, the
        linked one as a duplicate."""
        counter.note(self.psa)
        found_id = await self.psa.find_project_by_enterprise_id(eid)
        found = await self._psa_project(found_id, counter) if found_id is not None else None
        if link is None or link == found_id:
            return (found[0] if found else None), ()
        linked = await self._psa_project(link, counter)
        if linked is None or not _psa_of_deal(linked[1], eid, opportunity_id):
            return (found[0] if found else None), ()  # the link is gone or wrong
        if found is None:
            return linked[0], ()
        return found[0], (link,)

    async def _psa_project(
        self, psa_id: str, counter: _CallCounter
    ) -> tuple[FoundProject, Project] | None:
        """A workspace and its budget as compared (None: it is not there)."""
        counter.note(self.psa, 2)
        try:
            project = await self.psa.get_project(psa_id)
            budget = await self.psa.get_project_budget(psa_id)
        except NotFoundError:
            return None
        found = FoundProject(
            psa_id, project.name, project.currency, project.cost_center, budget, project.status
        )
        return found, project

    async def _erp_side(
        self, eid: str, link: str | None, counter: _CallCounter
    ) -> tuple[FoundProject | None, tuple[str, ...]]:
        """The ERP project keyed by the enterprise ID and, when the xref links another job
        that is there and carries the same enterprise ID, that one as a duplicate (read only
        then: one more request, rarely)."""
        found = await self._erp_project(f"eid:{eid}", counter)
        if found is None or link is None or link == found[0].external_id:
            return (found[0] if found else None), ()
        linked = await self._erp_project(link, counter)
        if linked is None or linked[1].enterprise_id != eid:
            return found[0], ()
        return found[0], (link,)

    async def _erp_project(
        self, ident: str, counter: _CallCounter
    ) -> tuple[FoundProject, ErpProject] | None:
        counter.note(self.erp)
        try:
            job = await self.erp.get_project(ident)
        except NotFoundError:
            return None
        budget = job.budget if job.budget_version > 0 else None
        found = FoundProject(
            job.erp_id,
            job.name,
            job.currency,
            job.cost_center,
            budget,
            job.status,
            job.customer_erp_id or None,
        )
        return found, job

    async def _repair_projects(self, request: CompareChunk, findings: Sequence[Any]) -> None:
        for finding in findings:
            if isinstance(finding, ProjectFinding) and finding.repair is not None:
                await self._project_repair(finding.repair, task_queue=request.task_queue)

    async def _project_repair(self, repair: ProjectRepair, *, task_queue: str) -> str:
        if repair.link is not None and repair.enterprise_id is not None:
            system, object_type, external_id = repair.link
            tenant = self.tenants.get(system, "default")
            try:
                await asyncio.to_thread(
                    self.store.link_xref,
                    repair.enterprise_id,
                    "project",
                    system,
                    tenant,
                    object_type,
                    external_id,
                )
            except XrefConflict as exc:
                raise BusinessRuleViolation("XREF_CONFLICT", str(exc), system="PSSYNC") from exc
            return f"linked {system} {object_type} {external_id} to {repair.enterprise_id}"
        if repair.provision:
            tenant = self._crm_tenant()
            result = await start_or_join(
                self._client(),
                OPPORTUNITY_TO_PROJECT,
                ProvisionProjectInput(crm_tenant=tenant, opportunity_id=repair.opportunity_id),
                id=opportunity_workflow_id(tenant, repair.opportunity_id),
                task_queue=task_queue,
                search_attributes=[
                    SearchAttributePair(CRM_OPPORTUNITY_ID, repair.opportunity_id),
                    SearchAttributePair(BUSINESS_PROCESS, PROCESS_OPPORTUNITY_TO_PROJECT),
                ],
                static_summary=f"Provision project for opportunity {repair.opportunity_id}",
                static_details="started by reconciliation: the won deal was never provisioned",
            )
            return f"provisioning of {repair.opportunity_id}: {result.outcome}"
        return "nothing to do"

    async def project_force(self, decision: DriftDecision) -> str:
        """A person asks for the repair of an escalated project drift anyway: only a won deal
        never provisioned can be (its saga is started); the others are fixed in the owning
        system, then acknowledged."""
        drift = decision.drift.drift
        if (
            drift.kind is DriftKind.PROJECT_MISSING_PSA_PROJECT
            and "enterprise_id" not in drift.keys
        ):
            repair = ProjectRepair(drift.keys["opportunity"], provision=True)
            return await self._project_repair(repair, task_queue=decision.task_queue)
        raise BusinessRuleViolation(
            "NOT_REPAIRABLE",
            f"pssync cannot repair {drift.kind.value}: fix it in the owning system "
            f"({drift.owner.value}), then acknowledge",
            system="PSSYNC",
        )


def _other(job: ErpJobHeader) -> OtherProject:
    return OtherProject(
        job.erp_id,
        job.name,
        job.enterprise_id,
        job.reference,
        job.status in CLOSED_STATUSES,
    )


def _psa_of_deal(project: Project, eid: str, opportunity_id: str) -> bool:
    """Whether a workspace is this deal's: it carries its enterprise ID, or no other one and
    the deal's opportunity (or no opportunity: a link pssync wrote is trusted then)."""
    if project.enterprise_id is not None:
        return project.enterprise_id == eid
    return project.opportunity_id in (None, opportunity_id)
