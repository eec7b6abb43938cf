"""`FakeErp`: the `ErpPort` in memory, with the twin's business rules (unit and workflow
tests)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from connectors.erp.fake_employees import FakeEmployeesMixin
from connectors.erp.fake_labor_cost import FakeLaborCostMixin
from connectors.erp.fake_rate_cards import FakeErpRateCardsMixin
from connectors.erp.port import (
    SYSTEM,
    CostCenterStatus,
    ErpJobHeader,
    ErpPort,
    ErpProject,
    InvoiceHeader,
    PostingResult,
    _month,
)
from contracts.errors import BusinessRuleViolation, NotFoundError, StaleVersionError
from contracts.money import Money
from contracts.systems import System
from contracts.v1.change_orders import ErpBudget
from contracts.v1.models import (
    CostPosting,
    Customer,
    Forecast,
    ForecastStatus,
    Invoice,
    InvoiceStatus,
    Project,
    ProjectStatus,
)

# --------------------------------------------------------------------------- in-memory fake


@dataclass
class _FakeJob:
    erp_id: str
    external_id: str | None
    enterprise_id: str | None
    """None: a project a person made by hand (pssync's carry their enterprise ID)."""
    name: str
    customer_erp_id: str
    cost_center: str
    currency: str
    status: ProjectStatus = ProjectStatus.ACTIVE
    budget: Money | None = None
    budget_version: int = 0
    close_reason: str | None = None
    reference: str | None = None
    """Free text a person noted (NetSuite's `comments`)."""


@dataclass
class _FakeCustomer:
    erp_id: str
    external_id: str
    name: str
    currency: str
    enterprise_id: str
    credit_hold: bool = False


class FakeErp(FakeErpRateCardsMixin, FakeLaborCostMixin, FakeEmployeesMixin, ErpPort):
    """`ErpPort` in memory, with the twin's business rules: closed projects, unknown or
    inactive cost centers, closed periods, credit holds, single reversals, upserts by key.

        erp = FakeErp(cost_centers=["CC-110"], open_periods=["2025-06"])
    """

    def __init__(
        self,
        *,
        cost_centers: Iterable[str] = (),
        inactive_cost_centers: Iterable[str] = (),
        open_periods: Iterable[str] = (),
        closed_periods: Iterable[str] = (),
        cost_rates: dict[str, Money] | None = None,
    ) -> None:
        self.cost_centers: dict[str, bool] = dict.fromkeys(cost_centers, True)
        self.cost_centers |= dict.fromkeys(inactive_cost_centers, False)
        self.periods: dict[str, bool] = dict.fromkeys(open_periods, True)
        self.periods |= dict.fromkeys(closed_periods, False)
        self.cost_rates: dict[str, Money] = dict(cost_rates or {})
        self.customers: dict[str, _FakeCustomer] = {}
        self.jobs: dict[str, _FakeJob] = {}
        self.postings: dict[str, tuple[str, CostPosting]] = {}
        """idempotency key -> (erp id, posting as stored, project = ERP internal id)."""
        self.invoices: dict[str, Invoice] = {}
        self.void_reasons: dict[str, str] = {}
        """Invoice erp id -> why it was voided."""
        self.forecasts: dict[tuple[str, str], Forecast] = {}
        self._next = 0

    # -- test set-up ------------------------------------------------------------------------

    def set_cost_center(self, code: str, *, active: bool = True) -> None:
        self.cost_centers[code] = active

    def set_period(self, period: str, *, is_open: bool = True) -> None:
        self.periods[period] = is_open

    def set_credit_hold(self, customer_external_id: str, on: bool = True) -> None:
        self._customer(customer_external_id).credit_hold = on

    def add_job_by_hand(
        self, customer: str, name: str, *, cost_center: str = "", reference: str | None = None
    ) -> str:
        """A project a person makes in the ERP for `customer` (internal or external id),
        without pssync: no external or enterprise ID. Its internal id."""
        owner = self._customer(customer)
        job = _FakeJob(
            erp_id=self._id(),
            external_id=None,
            enterprise_id=None,
            name=name,
            customer_erp_id=owner.erp_id,
            cost_center=cost_center,
            currency=owner.currency,
            reference=reference,
        )
        self.jobs[job.erp_id] = job
        return job.erp_id

    def set_forecast_status(self, project: str, period: str, status: ForecastStatus) -> None:
        key = (self._job(project).erp_id, period)
        self.forecasts[key] = self.forecasts[key].model_copy(update={"status": status})

    # -- internals --------------------------------------------------------------------------

    def _id(self) -> str:
        self._next += 1
        return str(self._next)

    def _customer(self, ident: str) -> _FakeCustomer:
        ident = ident.removeprefix("eid:")
        for c in self.customers.values():
            if c.erp_id == ident or c.external_id == ident:
                return c
        raise NotFoundError(f"{SYSTEM} no customer {ident}", system=SYSTEM)

    def _job(self, ident: str) -> _FakeJob:
        ident = ident.removeprefix("eid:")
        if ident in self.jobs:
            return self.jobs[ident]
        for job in self.jobs.values():
            if job.external_id == ident:
                return job
        raise NotFoundError(f"{SYSTEM} no project {ident}", system=SYSTEM)

    @staticmethod
    def _refuse(code: str, detail: str, field: str) -> BusinessRuleViolation:
        return BusinessRuleViolation(code, detail, field=field, system=SYSTEM)

    def _customer_ref(self, ident: str, field: str) -> _FakeCustomer:
        """The customer a record refers to in `field`; an unknown one is a refusal."""
        try:
            return self._customer(ident)
        except NotFoundError:
            raise self._refuse("INVALID_KEY_OR_REF", f"no customer {ident}", field) from None

    def _job_ref(self, ident: str, field: str) -> _FakeJob:
        """The project a record refers to in `field`; an unknown one is a refusal."""
        try:
            return self._job(ident)
        except NotFoundError:
            raise self._refuse("INVALID_KEY_OR_REF", f"no project {ident}", field) from None

    def _cost_center_known(self, code: str) -> None:
        if code not in self.cost_centers:
            raise self._refuse("INVALID_COST_CENTER", f"unknown cost center {code}", "department")

    def _cost_center_active(self, code: str) -> None:
        if not self.cost_centers.get(code, False):
            raise self._refuse("INVALID_COST_CENTER", f"cost center {code} inactive", "department")

    def _period_open(self, day: date) -> None:
        if not self.periods.get(_month(day), False):
            raise self._refuse("PERIOD_CLOSED", f"period {_month(day)} is closed", "tranDate")

    # -- customers and projects ---------------------------------------------------------------

    async def upsert_customer(self, customer: Customer, *, enterprise_id: str) -> str:
        try:
            existing = self._customer(customer.external_id)
        except NotFoundError:
            existing = _FakeCustomer(
                erp_id=self._id(),
                external_id=customer.external_id,
                name=customer.name,
                currency=customer.currency,
                enterprise_id=enterprise_id,
            )
            self.customers[existing.erp_id] = existing
        existing.name, existing.currency = customer.name, customer.currency
        existing.enterprise_id = enterprise_id
        return existing.erp_id

    async def upsert_project(
        self, project: Project, *, enterprise_id: str, customer_erp_id: str, budget: Money
    ) -> str:
        self._cost_center_known(project.cost_center)
        customer = self._customer_ref(customer_erp_id, "customer")
        try:
            job = self._job(enterprise_id)
        except NotFoundError:
            if customer.credit_hold:
                raise self._refuse(
                    "CUSTOMER_CREDIT_HOLD", f"{customer.name} is on credit hold", "customer"
                ) from None
            self._cost_center_active(project.cost_center)
            job = _FakeJob(
                erp_id=self._id(),
                external_id=enterprise_id,
                enterprise_id=enterprise_id,
                name=project.name,
                customer_erp_id=customer.erp_id,
                cost_center=project.cost_center,
                currency=project.currency,
                budget=budget,
                budget_version=1,
            )
            self.jobs[job.erp_id] = job
            return job.erp_id
        if job.cost_center != project.cost_center:
            self._cost_center_active(project.cost_center)
        job.name, job.cost_center = project.name, project.cost_center
        job.customer_erp_id = customer.erp_id
        if job.budget_version == 0:
            job.budget, job.budget_version = budget, 1
        return job.erp_id

    async def close_project(self, erp_id: str, *, reason: str) -> None:
        try:
            job = self._job(erp_id)
        except NotFoundError:
            return
        job.status, job.close_reason = ProjectStatus.CLOSED, reason

    async def get_project(self, erp_id_or_eid: str) -> ErpProject:
        job = self._job(erp_id_or_eid)
        return ErpProject(
            erp_id=job.erp_id,
            external_id=job.external_id,
            enterprise_id=job.enterprise_id,
            name=job.name,
            status=job.status,
            customer_erp_id=job.customer_erp_id,
            cost_center=job.cost_center,
            currency=job.currency,
            budget=job.budget or Money.zero(job.currency),
            budget_version=job.budget_version,
        )

    async def jobs_of_customers(self, customers: Sequence[str]) -> dict[str, list[ErpJobHeader]]:
        found: dict[str, list[ErpJobHeader]] = {c: [] for c in dict.fromkeys(customers)}
        for job in sorted(self.jobs.values(), key=lambda j: int(j.erp_id)):
            if job.customer_erp_id in found:
                found[job.customer_erp_id].append(
                    ErpJobHeader(
                        erp_id=job.erp_id,
                        name=job.name,
                        customer_erp_id=job.customer_erp_id,
                        enterprise_id=job.enterprise_id,
                        reference=job.reference or job.close_reason,
                        status=job.status,
                    )
                )
        return found

    # -- budget and forecast ---------------------------------------------------------------

    async def get_budget(self, project: str) -> ErpBudget:
        job = self._job(project)
        return ErpBudget(
            project_erp_id=job.erp_id,
            amount=job.budget or Money.zero(job.currency),
            version=job.budget_version,
        )

    async def revise_budget(
        self, project: str, *, amount: Money, expected_version: int
    ) -> ErpBudget:
        job = self._job(project)
        if job.budget_version != expected_version:
            raise StaleVersionError(
                f"{SYSTEM} budget of {project} is at version {job.budget_version}", system=SYSTEM
            )
        if job.status is ProjectStatus.CLOSED:
            raise self._refuse("PROJECT_CLOSED", f"project {job.erp_id} is closed", "job")
        job.budget, job.budget_version = amount, job.budget_version + 1
        return await self.get_budget(project)

    async def get_forecast(self, project: str, period: str) -> Forecast | None:
        found = self.forecasts.get((self._job(project).erp_id, period))
        return found.model_copy(update={"project_id": project}) if found else None

    async def list_forecasts_of(
        self, projects: Sequence[str], periods: Sequence[str] | None = None
    ) -> dict[str, dict[str, Forecast]]:
        wanted = None if periods is None else set(periods)
        found: dict[str, dict[str, Forecast]] = {}
        for project in dict.fromkeys(projects):
            try:
                job = self._job(project).erp_id
            except NotFoundError:
                continue
            found[project] = {
                period: forecast.model_copy(update={"project_id": project})
                for (job_id, period), forecast in sorted(self.forecasts.items())
                if job_id == job and (wanted is None or period in wanted)
            }
        return found

    async def put_forecast(self, forecast: Forecast, *, project: str | None = None) -> Forecast:
        project = project or forecast.project_id
        key = (self._job(project).erp_id, forecast.period)
        current = self.forecasts.get(key)
        if current is not None and current.status is not ForecastStatus.DRAFT:
            raise self._refuse(
                f"FORECAST_{current.status.value.upper()}",
                f"the forecast for {forecast.period} is {current.status.value}",
                "status",
            )
        if current is not None and forecast.version < current.version:
            raise StaleVersionError(f"{SYSTEM} forecast is newer", system=SYSTEM)
        stored = forecast.model_copy(update={"source_system": System.ERP, "project_id": project})
        self.forecasts[key] = stored
        return stored

    # -- cost postings --------------------------------------------------------------------

    def _post(self, posting: CostPosting) -> str:
        job = self._job_ref(posting.project_id, "customer")
        self._cost_center_known(posting.cost_center)
        reversed_id: str | None = None
        if posting.reverses is not None:
            if posting.reverses not in self.postings:
                raise self._refuse(
                    "INVALID_KEY_OR_REF", f"no posting {posting.reverses}", "reverses"
                )
            reversed_id = self.postings[posting.reverses][0]
        stored = posting.model_copy(update={"project_id": job.erp_id})
        existing = self.postings.get(posting.idempotency_key)
        if existing is not None and _same_posting(existing[1], stored):
            # An idempotent retry: no rule runs again (the project may have closed since).
            return existing[0]
        if job.status is ProjectStatus.CLOSED:
            raise self._refuse("PROJECT_CLOSED", f"project {job.erp_id} is closed", "customer")
        self._cost_center_active(posting.cost_center)
        self._period_open(posting.posting_date)
        if reversed_id is not None:
            for key, (_erp, other) in self.postings.items():
                if other.reverses == posting.reverses and key != posting.idempotency_key:
                    raise self._refuse(
                        "ALREADY_REVERSED", f"{posting.reverses} is already reversed", "reverses"
                    )
        erp_id = existing[0] if existing is not None else self._id()
        self.postings[posting.idempotency_key] = (erp_id, stored)
        return erp_id

    async def post_time(self, postings: Sequence[CostPosting]) -> list[PostingResult]:
        results = []
        for posting in postings:
            try:
                erp_id = self._post(posting)
            except BusinessRuleViolation as exc:
                results.append(
                    PostingResult(idempotency_key=posting.idempotency_key, error=exc.info())
                )
            else:
                results.append(
                    PostingResult(idempotency_key=posting.idempotency_key, erp_id=erp_id)
                )
        return results

    async def list_postings(self, project: str) -> list[CostPosting]:
        erp_id = self._job(project).erp_id
        return [p for _id, p in self.postings.values() if p.project_id == erp_id]

    async def cost_center_status(self, code: str) -> CostCenterStatus:
        if code not in self.cost_centers:
            return CostCenterStatus.UNKNOWN
        return CostCenterStatus.ACTIVE if self.cost_centers[code] else CostCenterStatus.INACTIVE

    async def period_open(self, period: str) -> bool:
        return self.periods.get(period, False)

    async def get_cost_rate(self, worker_id: str) -> Money | None:
        return self.cost_rates.get(worker_id)

    # -- invoices ---------------------------------------------------------------------------

    async def create_invoice(self, invoice: Invoice) -> str:
        for erp_id, existing in self.invoices.items():
            if existing.idempotency_key == invoice.idempotency_key:
                return erp_id
        customer = self._customer_ref(invoice.customer_id, "entity")
        job = self._job_ref(invoice.project_id, "job")
        self._period_open(invoice.invoice_date)
        erp_id = self._id()
        self.invoices[erp_id] = invoice.model_copy(
            update={
                "source_system": System.ERP,
                "external_id": erp_id,
                "customer_id": customer.erp_id,
                "project_id": job.erp_id,
                "status": InvoiceStatus.OPEN,
            }
        )
        return erp_id

    async def void_invoice(self, erp_id: str, *, reason: str) -> None:
        key = erp_id.removeprefix("eid:")
        found = erp_id if erp_id in self.invoices else None
        if found is None:
            found = next((i for i, v in self.invoices.items() if v.idempotency_key == key), None)
        if found is None:
            raise NotFoundError(f"{SYSTEM} no invoice {erp_id}", system=SYSTEM)
        invoice = self.invoices[found]
        if invoice.status is InvoiceStatus.VOID:
            return
        if invoice.status is InvoiceStatus.PAID:
            raise self._refuse(
                "INVALID_TRANSACTION_STATE", f"invoice {found} is paid in full", "status"
            )
        self.invoices[found] = invoice.model_copy(update={"status": InvoiceStatus.VOID})
        self.void_reasons[found] = reason

    async def get_invoice(self, erp_id: str) -> Invoice:
        if erp_id not in self.invoices:
            raise NotFoundError(f"{SYSTEM} no invoice {erp_id}", system=SYSTEM)
        return self.invoices[erp_id]

    async def list_invoices_of(self, projects: Sequence[str]) -> dict[str, list[InvoiceHeader]]:
        found: dict[str, list[InvoiceHeader]] = {}
        for project in dict.fromkeys(projects):
            try:
                job = self._job(project).erp_id
            except NotFoundError:
                found[project] = []
                continue
            found[project] = [
                InvoiceHeader(
                    erp_id=erp_id,
                    key=invoice.idempotency_key,
                    project=project,
                    milestone_code=invoice.milestone_code,
                    period=invoice.period,
                    invoice_date=invoice.invoice_date,
                    total=invoice.total,
                    status=invoice.status,
                    updated_at=invoice.updated_at,
                )
                for erp_id, invoice in self.invoices.items()
                if invoice.project_id == job
            ]
        return found


def _same_posting(a: CostPosting, b: CostPosting) -> bool:
    volatile = {"updated_at", "source_system", "source_version", "enterprise_id"}
    return a.model_dump(exclude=volatile) == b.model_dump(exclude=volatile)


def _check_port() -> ErpPort:  # pragma: no cover - a static check for mypy
    return FakeErp()
