"""The ERP port (`ErpPort`, split by use) and the canonical value types it answers with, plus
the canonical rules both adapters share (what a reversal is, posted totals). No vendor names."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from connectors.erp.rate_card_port import ErpRateCardsPort
from contracts.errors import ErrorInfo, NotFoundError
from contracts.money import Money
from contracts.systems import System
from contracts.v1.change_orders import ErpBudget
from contracts.v1.models import (
    CostPosting,
    Customer,
    Forecast,
    Invoice,
    InvoiceStatus,
    PostingKind,
    Project,
    ProjectStatus,
)

SYSTEM = str(System.ERP)


# --------------------------------------------------------------------------- port types


class CostCenterStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    UNKNOWN = "unknown"


class PostingResult(BaseModel):
    """The outcome of one cost posting: the ERP record id, or the error that refused it."""

    model_config = ConfigDict(frozen=True)

    idempotency_key: str
    erp_id: str | None = None
    error: ErrorInfo | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.erp_id is not None


class ErpProject(BaseModel):
    """A financial project as the ERP holds it."""

    model_config = ConfigDict(frozen=True)

    erp_id: str
    external_id: str | None = None
    enterprise_id: str | None = None
    name: str
    status: ProjectStatus
    customer_erp_id: str
    cost_center: str | None = None
    currency: str
    budget: Money
    budget_version: int


class ErpJobHeader(BaseModel):
    """A financial project as the ERP's list of a customer's projects shows it (no budget):
    for finding projects a person made outside pssync."""

    model_config = ConfigDict(frozen=True)

    erp_id: str
    name: str
    customer_erp_id: str
    enterprise_id: str | None = None
    """None: the project carries no enterprise ID (pssync did not make it)."""
    reference: str | None = None
    """The free text a person may note a deal in (e.g. the CRM opportunity id)."""
    status: ProjectStatus


class InvoiceHeader(BaseModel):
    """An invoice as the ERP's list of invoices shows it (no lines): for reconciliation."""

    model_config = ConfigDict(frozen=True)

    erp_id: str
    key: str | None = None
    """Its external id: pssync's idempotency key (`inv-...`) for an invoice pssync made."""
    project: str
    """The project as it was asked for."""
    milestone_code: str | None = None
    """`custbody_pssync_milestone`: the milestone pssync billed."""
    period: str | None = None
    """The T&M period pssync billed (the memo's first line, `period YYYY-MM`)."""
    invoice_date: date
    total: Money
    status: InvoiceStatus
    updated_at: datetime | None = None


class PostedTotal(BaseModel):
    """Posted labor and cost of one project in one period (for reconciliation)."""

    model_config = ConfigDict(frozen=True)

    project_erp_id: str
    period: str
    hours: Decimal
    cost_amount: Money
    postings: int


# --------------------------------------------------------------------------- the port, by use


class ErpProjectsPort(Protocol):
    """Customers and financial projects (the provisioning saga)."""

    async def upsert_customer(self, customer: Customer, *, enterprise_id: str) -> str:
        """Create or update the customer (by its CRM account id); the ERP internal id."""
        ...

    async def upsert_project(
        self, project: Project, *, enterprise_id: str, customer_erp_id: str, budget: Money
    ) -> str:
        """Create or update the financial project keyed by the enterprise project ID (written
        back to the ERP as well); sets the budget once, on creation. The ERP internal id."""
        ...

    async def close_project(self, erp_id: str, *, reason: str) -> None:
        """Close the project (the provisioning saga's compensation). Idempotent; a project
        that does not exist counts as closed."""
        ...

    async def get_project(self, erp_id_or_eid: str) -> ErpProject: ...

    async def jobs_of_customers(self, customers: Sequence[str]) -> dict[str, list[ErpJobHeader]]:
        """Every project of each customer (by its internal id), closed ones too; a customer
        the ERP does not hold has none. For reconciliation over many deals: a few list
        queries for them all, no request per project."""
        ...


class ErpPostingsPort(Protocol):
    """Cost postings and the reference data they are checked against (cost centers, periods,
    cost rates).

    `post_time_one`, `reverse_posting`, `posted_totals` and `list_postings_of` follow from
    `post_time` and `list_postings`: adapters that subclass the port inherit them."""

    async def post_time(self, postings: Sequence[CostPosting]) -> list[PostingResult]:
        """Post cost postings in batches; one result per posting, in order. A business refusal
        of one record is its result's `error`, not an exception."""
        ...

    async def post_time_one(self, posting: CostPosting) -> PostingResult:
        return (await self.post_time([posting]))[0]

    async def reverse_posting(
        self,
        original: CostPosting,
        *,
        idempotency_key: str | None = None,
        posting_date: date | None = None,
    ) -> PostingResult:
        """Post the reversal of `original` (negated hours and amounts, `reverses` set)."""
        reversal = reversal_of(original, idempotency_key=idempotency_key, posting_date=posting_date)
        return await self.post_time_one(reversal)

    async def list_postings(self, project: str) -> list[CostPosting]: ...

    async def list_postings_of(self, projects: Sequence[str]) -> dict[str, list[CostPosting]]:
        """The postings of each project (as `list_postings`), by the project as given; a
        project the ERP does not hold has none. For reconciliation over many projects: an
        adapter may answer them in a few queries instead of one per project."""
        found: dict[str, list[CostPosting]] = {}
        for project in dict.fromkeys(projects):
            try:
                found[project] = await self.list_postings(project)
            except NotFoundError:
                found[project] = []
        return found

    async def posted_totals(self, project: str) -> list[PostedTotal]:
        return _totals(await self.list_postings(project))

    async def cost_center_status(self, code: str) -> CostCenterStatus: ...

    async def period_open(self, period: str) -> bool: ...

    async def get_cost_rate(self, worker_id: str) -> Money | None:
        """The worker's labor cost per hour as the ERP holds it (None when unknown)."""
        ...


class ErpBillingPort(Protocol):
    """Invoices (the time-to-invoice pipeline)."""

    async def create_invoice(self, invoice: Invoice) -> str:
        """Create the invoice once per `invoice.idempotency_key`; the ERP internal id.

        The key names that invoice for good: once it is voided, creating an invoice with the
        same key returns the voided one. A new attempt after a void needs a new key."""
        ...

    async def void_invoice(self, erp_id: str, *, reason: str) -> None:
        """Void the invoice (the compensation for `create_invoice`). It stays in the ledger,
        status `VOID`, with the reason in its memo. Idempotent; a voided invoice stays
        voided. `erp_id` is the internal id (or `eid:` + the idempotency key). A paid invoice
        is refused (`BusinessRuleViolation`), an unknown one is `NotFoundError`."""
        ...

    async def get_invoice(self, erp_id: str) -> Invoice: ...

    async def list_invoices_of(self, projects: Sequence[str]) -> dict[str, list[InvoiceHeader]]:
        """The invoices of each project (voided ones too), by the project as given; a project
        the ERP does not hold has none. For reconciliation over many projects: a few list
        queries for them all, no request per invoice."""
        ...


class ErpBudgetPort(Protocol):
    """Project budgets under optimistic concurrency (the change-order saga)."""

    async def get_budget(self, project: str) -> ErpBudget: ...

    async def revise_budget(
        self, project: str, *, amount: Money, expected_version: int
    ) -> ErpBudget:
        """Set the budget if it is still at `expected_version`, else `StaleVersionError`."""
        ...


class ErpForecastPort(Protocol):
    """Labor forecasts per project and period (assignment sync)."""

    async def get_forecast(self, project: str, period: str) -> Forecast | None: ...

    async def list_forecasts_of(
        self, projects: Sequence[str], periods: Sequence[str] | None = None
    ) -> dict[str, dict[str, Forecast]]:
        """The labor forecasts of each project the ERP holds, by the project as given, then by
        period (only `periods` when given, every month it holds otherwise); a month without
        a forecast is absent, a project the ERP does not hold is left out. For reconciliation
        over many projects: a few list queries for them all, no request per month."""
        ...

    async def put_forecast(self, forecast: Forecast, *, project: str | None = None) -> Forecast:
        """Write a draft forecast; an approved or locked one is refused with
        `BusinessRuleViolation` (FORECAST_APPROVED / FORECAST_LOCKED), an older version with
        `StaleVersionError`."""
        ...


class ErpPort(
    ErpProjectsPort,
    ErpPostingsPort,
    ErpBillingPort,
    ErpBudgetPort,
    ErpForecastPort,
    ErpRateCardsPort,
    Protocol,
):
    """What pssync needs from the ERP, in canonical types."""


# --------------------------------------------------------------------------- canonical rules


def reversal_of(
    original: CostPosting, *, idempotency_key: str | None = None, posting_date: date | None = None
) -> CostPosting:
    """The posting that reverses `original`: same project, worker and cost center, negated
    hours and amounts. The default key is derived from the original's."""
    on = posting_date or original.posting_date
    return CostPosting(
        source_system=System.PSSYNC,
        idempotency_key=idempotency_key or f"{original.idempotency_key}-reversal",
        kind=PostingKind.REVERSAL,
        project_id=original.project_id,
        worker_id=original.worker_id,
        source_entry_id=original.source_entry_id,
        posting_date=on,
        period=f"{on.year:04d}-{on.month:02d}",
        hours=-original.hours,
        cost_amount=-original.cost_amount,
        bill_amount=-original.bill_amount if original.bill_amount is not None else None,
        cost_center=original.cost_center,
        reverses=original.idempotency_key,
    )


def _month(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def _totals(postings: Iterable[CostPosting]) -> list[PostedTotal]:
    grouped: dict[tuple[str, str], list[CostPosting]] = {}
    for posting in postings:
        grouped.setdefault((posting.project_id, posting.period), []).append(posting)
    totals = []
    for (project, period), group in sorted(grouped.items()):
        currency = group[0].cost_amount.currency
        totals.append(
            PostedTotal(
                project_erp_id=project,
                period=period,
                hours=sum((p.hours for p in group), Decimal(0)),
                cost_amount=sum((p.cost_amount for p in group), Money.zero(currency)),
                postings=len(group),
            )
        )
    return totals
