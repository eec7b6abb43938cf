"""Billing of the time-to-invoice pipeline: what to bill (`time.prepare_invoice`), the ERP
invoice (`time.create_invoice`), the PSA marked invoiced (`time.mark_invoiced`) and the
compensation that voids the invoice (`time.void_invoice`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field
from temporalio import activity

from activities._errors import translate_errors
from activities.time_to_invoice._support import _today
from activities.time_to_invoice.caches import _Base
from contracts.errors import NotFoundError
from contracts.money import Money
from contracts.systems import System
from contracts.v1 import BillingRule, Invoice, InvoiceLine, MilestoneStatus
from contracts.v1.events import InvoiceChanged
from contracts.v1.time_to_invoice import (
    BillingRequest,
    BillingTrigger,
    EntryKind,
    invoice_key,
)
from store import TimePostingRow


class InvoicePlan(BaseModel):
    psa_project_id: str
    request: BillingRequest
    attempt: int = 0
    invoice: Invoice | None = None
    entry_keys: list[str] = Field(default_factory=list)
    time_entry_ids: list[str] = Field(default_factory=list)
    expense_ids: list[str] = Field(default_factory=list)
    milestone_codes: list[str] = Field(default_factory=list)
    status: str = "ready"
    """ready | nothing_to_bill | not_applicable"""
    detail: str = ""


class InvoiceRef(BaseModel):
    plan: InvoicePlan
    invoice_erp_id: str


class VoidInvoice(BaseModel):
    plan: InvoicePlan
    invoice_erp_id: str
    reason: str


class PrepareInvoice(BaseModel):
    psa_project_id: str
    request: BillingRequest
    attempt: int = 0


class _BillingMixin(_Base):
    # ------------------------------------------------------------------ billing

    @activity.defn(name="time.prepare_invoice")
    @translate_errors
    async def prepare_invoice(self, request: PrepareInvoice) -> InvoicePlan:
        """What to bill: posted, billable, not yet invoiced entries (and the milestone)."""
        plan = InvoicePlan(
            psa_project_id=request.psa_project_id,
            request=request.request,
            attempt=request.attempt,
        )
        project = await self.psa.get_project(request.psa_project_id)
        if not project.enterprise_id:
            plan.status, plan.detail = "not_applicable", "the PSA project has no ERP project"
            return plan
        trigger = request.request
        lines: list[InvoiceLine] = []
        period: str | None = None
        milestone_code: str | None = None
        if trigger.trigger is BillingTrigger.MILESTONE:
            milestones = await self.psa.list_milestones(request.psa_project_id)
            ms = next(
                (m for m in milestones if trigger.milestone_id in (m.external_id, m.code)), None
            )
            if ms is None:
                raise NotFoundError(
                    f"no billing milestone {trigger.milestone_id} in project "
                    f"{request.psa_project_id}",
                    system=System.PSA,
                )
            if ms.status is MilestoneStatus.INVOICED:
                # Billed already (by an earlier request, or by a person in the PSA): billing it
                # again would make a second ERP invoice the PSA then refuses to mark.
                plan.status = "nothing_to_bill"
                plan.detail = f"milestone {ms.code} is already invoiced in the PSA"
                return plan
            milestone_code = ms.code
            plan.milestone_codes = [ms.code]
            if project.billing_rule is not BillingRule.TIME_AND_MATERIALS:
                lines.append(
                    InvoiceLine(
                        description=f"Milestone {ms.code}: {ms.name}",
                        quantity=Decimal(1),
                        amount=ms.amount,
                    )
                )
            rows = await asyncio.to_thread(self.store.unbilled_time, request.psa_project_id, None)
        else:
            if project.billing_rule is not BillingRule.TIME_AND_MATERIALS:
                plan.status = "not_applicable"
                plan.detail = f"{project.billing_rule.value} projects are billed by milestone"
                return plan
            period = trigger.period
            rows = await asyncio.to_thread(self.store.unbilled_time, request.psa_project_id, period)
        if project.billing_rule is BillingRule.TIME_AND_MATERIALS:
            lines += _tm_lines(rows, project.currency)
        plan.entry_keys = [r.entry_key for r in rows]
        plan.time_entry_ids = [r.entry_id for r in rows if r.kind == EntryKind.TIME.value]
        plan.expense_ids = [r.entry_id for r in rows if r.kind == EntryKind.EXPENSE.value]
        if not lines:
            plan.status, plan.detail = "nothing_to_bill", "no billable, unbilled entries"
            return plan
        plan.invoice = Invoice(
            source_system=System.PSSYNC,
            idempotency_key=invoice_key(request.psa_project_id, trigger, request.attempt),
            project_id=f"eid:{project.enterprise_id}",
            customer_id=project.customer_id,
            period=period,
            milestone_code=milestone_code,
            invoice_date=_today(),
            lines=lines,
        )
        return plan

    @activity.defn(name="time.create_invoice")
    @translate_errors
    async def create_invoice(self, plan: InvoicePlan) -> str:
        """Create the ERP invoice (idempotent by its key), then record it in the store with
        its `invoice.created` event — and, for a milestone, when the milestone completed (the
        invoice trigger delay) — once, however often the activity runs."""
        assert plan.invoice is not None
        erp_id = await self.erp.create_invoice(plan.invoice)
        completed_at = None
        if plan.request.trigger is BillingTrigger.MILESTONE and plan.request.milestone_id:
            completed_at = await asyncio.to_thread(
                self.store.milestone_completed_at, plan.psa_project_id, plan.request.milestone_id
            )
        data = _invoice_data(plan, erp_id, milestone_completed_at=completed_at)
        row = {
            "invoice_ref": data.invoice_ref,
            "psa_project_id": plan.psa_project_id,
            "enterprise_id": data.enterprise_id,
            "erp_invoice_id": erp_id,
            "trigger": plan.request.trigger.value,
            "period": data.period,
            "milestone_code": data.milestone_code,
            "milestone_completed_at": completed_at,
            "total": data.total,
            "currency": data.currency,
            "entries": data.entries or 0,
        }
        await asyncio.to_thread(self.store.record_invoice, row, subject=_subject(plan), data=data)
        return erp_id

    @activity.defn(name="time.mark_invoiced")
    @translate_errors
    async def mark_invoiced(self, ref: InvoiceRef) -> str:
        """Mark the entries (and milestone) invoiced in the PSA, then in the ledger."""
        plan = ref.plan
        assert plan.invoice is not None
        psa_invoice = await self.psa.mark_invoiced(
            plan.time_entry_ids,
            invoice_ref=plan.invoice.idempotency_key,
            expense_ids=plan.expense_ids,
            project_id=plan.psa_project_id,
            milestone_codes=plan.milestone_codes,
        )
        await asyncio.to_thread(
            self.store.mark_time_billed, plan.entry_keys, plan.invoice.idempotency_key
        )
        return psa_invoice

    @activity.defn(name="time.void_invoice")
    @translate_errors
    async def void_invoice(self, request: VoidInvoice) -> None:
        """Compensation: the PSA could not be marked, so the ERP invoice must not stand."""
        assert request.plan.invoice is not None
        await self.erp.void_invoice(request.invoice_erp_id, reason=request.reason)
        data = _invoice_data(request.plan, request.invoice_erp_id, reason=request.reason)
        await asyncio.to_thread(
            self.store.record_invoice_voided,
            data.invoice_ref,
            subject=_subject(request.plan),
            data=data,
        )
        try:
            await self.psa.unmark_invoiced(invoice_ref=request.plan.invoice.idempotency_key)
        finally:
            await asyncio.to_thread(
                self.store.unmark_time_billed, request.plan.invoice.idempotency_key
            )


def _subject(plan: InvoicePlan) -> str:
    """The project's enterprise id (the invoice's ERP project is `eid:<id>`)."""
    assert plan.invoice is not None
    return plan.invoice.project_id.removeprefix("eid:") or plan.psa_project_id


def _invoice_data(
    plan: InvoicePlan,
    erp_id: str,
    *,
    milestone_completed_at: datetime | None = None,
    reason: str | None = None,
) -> InvoiceChanged:
    invoice = plan.invoice
    assert invoice is not None
    currencies = {line.amount.currency for line in invoice.lines}
    total = sum((line.amount.amount for line in invoice.lines), Decimal(0))
    return InvoiceChanged(
        enterprise_id=_subject(plan) if invoice.project_id.startswith("eid:") else None,
        psa_project_id=plan.psa_project_id,
        invoice_ref=invoice.idempotency_key,
        erp_invoice_id=erp_id,
        total=total if len(currencies) == 1 else None,
        currency=next(iter(currencies)) if len(currencies) == 1 else None,
        entries=len(plan.entry_keys),
        trigger=plan.request.trigger.value,
        period=invoice.period,
        milestone_code=invoice.milestone_code,
        milestone_completed_at=milestone_completed_at,
        reason=reason,
    )


def _tm_lines(rows: Sequence[TimePostingRow], currency: str) -> list[InvoiceLine]:
    """T&M invoice lines: one per period and kind, with the entries they cover."""
    grouped: dict[tuple[str, str], list[TimePostingRow]] = {}
    for r in rows:
        grouped.setdefault((r.period or "", r.kind), []).append(r)
    lines = []
    for (period, kind), group in sorted(grouped.items()):
        amount = sum((r.bill_amount or Decimal(0) for r in group), Decimal(0))
        quantity = (
            sum((r.hours for r in group), Decimal(0))
            if kind == EntryKind.TIME.value
            else Decimal(len(group))
        )
        label = "Time and materials" if kind == EntryKind.TIME.value else "Billable expenses"
        lines.append(
            InvoiceLine(
                description=f"{label} {period}".strip(),
                quantity=quantity,
                amount=Money(amount=amount, currency=currency),
                source_entry_ids=[r.entry_id for r in group],
            )
        )
    return lines
