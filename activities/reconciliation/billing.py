"""Billing status: a chunk of projects compared (`recon.compare.billing_status`, ERP queue) and a
person's "repair anyway" of one escalated billing drift (`billing_force`, called by
`recon.force_repair`).

Per chunk of projects: each project from the PSA (its billing rule and ERP project), its billing
milestones and its approved time and expenses (their invoiced flags; paged by the connector),
the ERP's invoices of them all at once (`list_invoices_of`: SuiteQL `transaction` rows of type
`CustInvc` whose lines are the projects', pages of 1,000) and the time-posting ledger (which
entries went on which invoice); `billing_rules` compares them. Safe repairs go through the time
pipeline (`TimeToInvoice`): a missing invoice is a `BillingRequest` signalled to the project's
pipeline (source `reconciliation`), which bills through its ledger and invoice keys; the PSA's
lost invoiced flags are marked again under the invoice's key (`mark_invoiced` adds only what the
PSA's invoice of that key does not cover yet, as the pipeline's own re-mark does).
Invoices themselves — voided, duplicated, edited, without a source — are for a person: pssync
never voids or edits an invoice on its own.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from temporalio import activity

from activities._errors import translate_errors
from activities.reconciliation._base import (
    HEARTBEAT_EVERY_S,
    _CallCounter,
    _ReconBase,
    heartbeat_every,
)
from activities.reconciliation.billing_rules import (
    CENTS,
    REQUESTED_BY,
    BillingContext,
    BillingFinding,
    BillingRepair,
    ErpInvoice,
    LedgerLine,
    PsaItem,
    PsaMilestone,
    compare_billing,
    invoice_source,
)
from activities.time_to_invoice import signal_pipeline
from connectors.erp import InvoiceHeader
from contracts.errors import BusinessRuleViolation, NotFoundError
from contracts.v1 import BillingRule, MilestoneStatus, Project
from contracts.v1.reconciliation import CompareChunk, DriftDecision, DriftKind, RunTotals
from contracts.v1.time_to_invoice import (
    BILLING_SIGNAL,
    BillingRequest,
    BillingTrigger,
    TimePipelineInput,
    period_of,
)
from store import TimePostingRow

PROJECTS_AT_ONCE = 4
"""Projects whose systems a chunk reads concurrently (the connectors pace their requests)."""


class _BillingSides:
    def __init__(
        self,
        psa_project_id: str,
        time_and_materials: bool,
        milestones: list[PsaMilestone],
        items: list[PsaItem],
        ledger: list[LedgerLine],
        invoices: list[ErpInvoice],
    ) -> None:
        self.psa_project_id = psa_project_id
        self.time_and_materials = time_and_materials
        self.milestones = milestones
        self.items = items
        self.ledger = ledger
        self.invoices = invoices


class _BillingStatusMixin(_ReconBase):
    @activity.defn(name="recon.compare.billing_status")
    @translate_errors
    async def compare_billing_status(self, request: CompareChunk) -> RunTotals:
        """Compare a chunk of projects, repair what is safe, escalate the rest, record all."""
        ticker = asyncio.create_task(heartbeat_every(HEARTBEAT_EVERY_S))
        try:
            return await self._compare_billing(request)
        finally:
            ticker.cancel()

    async def _compare_billing(self, request: CompareChunk) -> RunTotals:
        counter = _CallCounter(self.psa, self.erp)
        now = datetime.now(UTC)
        since = period_of(request.since) if request.since else None
        limit = asyncio.Semaphore(PROJECTS_AT_ONCE)

        async def project_of(psa_project_id: str) -> Project | None:
            async with limit:
                counter.note(self.psa)
                try:
                    return await self.psa.get_project(psa_project_id)
                except NotFoundError:
                    return None

        projects = await asyncio.gather(*(project_of(u.psa_project_id) for u in request.units))
        erp_projects = [
            u.erp_project or (f"eid:{p.enterprise_id}" if p and p.enterprise_id else None)
            for u, p in zip(request.units, projects, strict=True)
        ]
        # Every project's invoices at once: a few SuiteQL queries for the whole chunk.
        counter.note(self.erp)
        invoices = await self.erp.list_invoices_of([e for e in erp_projects if e])

        async def read(psa_project_id: str, project: Project, erp: str | None) -> _BillingSides:
            async with limit:
                found = invoices.get(erp, []) if erp else []
                return await self._billing_sides(psa_project_id, project, found, counter)

        sides = await asyncio.gather(
            *(
                read(u.psa_project_id, p, e)
                for u, p, e in zip(request.units, projects, erp_projects, strict=True)
                if p is not None  # gone from the PSA: project master's business
            )
        )
        findings = [
            finding
            for side in sides
            for finding in compare_billing(
                BillingContext(
                    tenant=request.tenant,
                    psa_project_id=side.psa_project_id,
                    now=now,
                    time_and_materials=side.time_and_materials,
                    settle_s=request.settle_s,
                    since_period=since,
                ),
                side.milestones,
                side.items,
                side.ledger,
                side.invoices,
            )
        ]
        totals = await self._settle(request, findings, self._repair_billing)
        totals.records = sum(len(s.milestones) + len(s.items) + len(s.invoices) for s in sides)
        totals.projects = len(request.units)
        totals.vendor_calls = counter.total()
        return totals

    async def _billing_sides(
        self,
        psa_project_id: str,
        project: Project,
        invoices: list[InvoiceHeader],
        counter: _CallCounter,
    ) -> _BillingSides:
        counter.note(self.psa, 3)
        milestones = [
            PsaMilestone(
                code=m.code,
                milestone_id=m.external_id,
                amount=m.amount.amount,
                currency=m.amount.currency,
                status=m.status.value,
            )
            for m in await self.psa.list_milestones(psa_project_id)
        ]
        items: list[PsaItem] = []
        async for t in self.psa.list_approved_time(project_id=psa_project_id):
            items.append(
                PsaItem("time", t.external_id, period_of(t.date_performed), t.invoiced,
                        t.updated_at)
            )  # fmt: skip
        async for x in self.psa.list_approved_expenses(project_id=psa_project_id):
            items.append(
                PsaItem("expense", x.external_id, period_of(x.date_incurred), x.invoiced,
                        x.updated_at)
            )  # fmt: skip
        activity.heartbeat()
        rows = await asyncio.to_thread(self.store.ledger_rows, psa_project_id)
        return _BillingSides(
            psa_project_id,
            project.billing_rule is BillingRule.TIME_AND_MATERIALS,
            milestones,
            items,
            [_ledger_line(r) for r in rows],
            [_erp_invoice(i) for i in invoices],
        )

    # ------------------------------------------------------------------ repairs

    async def _repair_billing(self, request: CompareChunk, findings: Sequence[Any]) -> None:
        """Missing invoices: the billing requests to their projects' pipelines (a milestone
        only while the PSA still says completed, not invoiced: the pipeline may have billed it
        since the comparison read it). Lost invoiced flags: marked again in the PSA."""
        repairs: list[tuple[str, BillingRepair]] = [
            (f.drift.keys["psa_project_id"], f.repair)
            for f in findings
            if isinstance(f, BillingFinding) and f.repair is not None
        ]
        bills: dict[str, list[BillingRequest]] = defaultdict(list)
        for project, repair in repairs:
            if repair.action == "bill" and repair.request is not None:
                bills[project].append(repair.request)
            elif repair.action == "remark":
                try:
                    await self._remark(project, repair)
                except (BusinessRuleViolation, NotFoundError) as err:
                    # Left to the next run, which escalates once repairs do not hold.
                    activity.logger.warning(
                        "re-marking %s invoiced in the PSA was refused: %s",
                        repair.invoice_ref,
                        err,
                    )
        for project, requests in sorted(bills.items()):
            await self._bill(project, requests, task_queue=request.task_queue)

    async def _bill(
        self, project: str, requests: Sequence[BillingRequest], *, task_queue: str
    ) -> None:
        if any(r.trigger is BillingTrigger.MILESTONE for r in requests):
            completed = {
                ref
                for m in await self.psa.list_milestones(project)
                if m.status is MilestoneStatus.COMPLETED
                for ref in (m.code, m.external_id)
                if ref
            }
            requests = [
                r
                for r in requests
                if r.trigger is not BillingTrigger.MILESTONE or r.milestone_id in completed
            ]
        defaults = self.pipeline_defaults or TimePipelineInput(psa_tenant="-", psa_project_id="-")
        for billing in requests:
            await signal_pipeline(
                self._client(), defaults, project, BILLING_SIGNAL, billing, task_queue=task_queue
            )
            activity.heartbeat()

    async def _remark(self, project: str, repair: BillingRepair) -> None:
        """Mark the invoice's entries (and milestone) invoiced in the PSA again, under the
        invoice's key (the PSA adds what its invoice of that key does not cover yet). A
        refusal (an entry no longer approved, a milestone not completed) is raised."""
        assert repair.invoice_ref is not None
        await self.psa.mark_invoiced(
            list(repair.time_ids),
            invoice_ref=repair.invoice_ref,
            expense_ids=list(repair.expense_ids),
            project_id=project,
            milestone_codes=list(repair.milestone_codes),
        )
        activity.heartbeat()

    # ------------------------------------------------------------------ repair anyway

    async def billing_force(self, decision: DriftDecision) -> str:
        """A person asked for the repair of an escalated billing drift anyway: a missing
        invoice is billed by the pipeline (milestone or period, from the drift's keys); an
        invoice's entries are marked invoiced again. Returns what was done, in words."""
        drift = decision.drift.drift
        project = drift.keys["psa_project_id"]
        if drift.kind is DriftKind.BILLING_INVOICE_MISSING and "invoice" not in drift.keys:
            if "milestone" in drift.keys:
                code = drift.keys["milestone"]
                found = [m for m in await self.psa.list_milestones(project) if m.code == code]
                billing = BillingRequest(
                    trigger=BillingTrigger.MILESTONE,
                    milestone_id=(found[0].external_id if found else None) or code,
                    requested_by=REQUESTED_BY,
                )
            else:
                billing = BillingRequest(
                    trigger=BillingTrigger.PERIOD_CLOSE,
                    period=drift.keys["period"],
                    requested_by=REQUESTED_BY,
                )
            defaults = self.pipeline_defaults or TimePipelineInput(
                psa_tenant="-", psa_project_id="-"
            )
            await signal_pipeline(
                self._client(),
                defaults,
                project,
                BILLING_SIGNAL,
                billing,
                task_queue=decision.task_queue,
            )
            return f"billing {billing.key} handed to the time pipeline"
        if drift.kind is DriftKind.BILLING_INVOICED_FLAG_MISMATCH and "invoice" in drift.keys:
            key = drift.keys["invoice"]
            rows = [
                r
                for r in await asyncio.to_thread(self.store.ledger_rows, project)
                if r.invoice_ref == key
            ]
            time_ids = {r.entry_id for r in rows if r.kind == "time"}
            expense_ids = {r.entry_id for r in rows if r.kind == "expense"}
            marked_time = {
                t.external_id for t in await self.psa.get_time_entries(sorted(time_ids))
                if t.invoiced
            }  # fmt: skip
            marked_exp = {
                x.external_id for x in await self.psa.get_expenses(sorted(expense_ids))
                if x.invoiced
            }  # fmt: skip
            header = ErpInvoice(erp_id="-", key=key, milestone_code=None, period=None,
                                total=Decimal(0), currency="", status="open")  # fmt: skip
            source = invoice_source(project, header)
            ref = source.milestone if source is not None else None
            codes = tuple(
                m.code
                for m in await self.psa.list_milestones(project)
                if m.status is MilestoneStatus.COMPLETED and ref and ref in (m.code, m.external_id)
            )
            repair = BillingRepair(
                "remark",
                invoice_ref=key,
                time_ids=tuple(sorted(time_ids - marked_time)),
                expense_ids=tuple(sorted(expense_ids - marked_exp)),
                milestone_codes=codes,
            )
            await self._remark(project, repair)
            return f"{key}'s entries marked invoiced in the PSA again"
        raise BusinessRuleViolation(
            "NOT_REPAIRABLE",
            f"{drift.kind.value} is fixed in the ERP, not by pssync",
            system="PSSYNC",
        )


def _ledger_line(row: TimePostingRow) -> LedgerLine:
    return LedgerLine(
        entry_key=row.entry_key,
        period=row.period,
        state=row.state,
        billable=row.billable,
        bill=row.bill_amount.quantize(CENTS) if row.bill_amount is not None else None,
        invoice_ref=row.invoice_ref,
        updated_at=row.updated_at,
    )


def _erp_invoice(header: InvoiceHeader) -> ErpInvoice:
    return ErpInvoice(
        erp_id=header.erp_id,
        key=header.key,
        milestone_code=header.milestone_code,
        period=header.period,
        total=Decimal(header.total.amount),
        currency=header.total.currency,
        status=header.status.value,
        updated_at=header.updated_at,
    )
