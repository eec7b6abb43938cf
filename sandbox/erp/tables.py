"""The ERP twin's SQLite tables (SQLModel), one per NetSuite record type (the custom record
types of pssync's tenant setup included) plus async jobs and the M2M certificate mappings."""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Field, SQLModel

from sandbox._twin import table_list
from sandbox.erp.common import INVOICE_OPEN, JOB_STATUS_IN_PROGRESS, _now
from sandbox.erp.labor_cost_tables import ErpLaborCostRateRow
from sandbox.erp.rate_card_tables import ErpRateCardRevisionRow


class _Record(SQLModel):
    """What every NetSuite record type's table has: the internal id, a unique external ID and
    the last-modified stamp."""

    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, unique=True, index=True)
    last_modified: datetime = Field(default_factory=_now)


class ErpCustomer(_Record, table=True):
    __tablename__ = "erp_customer"

    company_name: str
    email: str | None = None
    currency: str = "USD"
    credit_hold: str = "AUTO"
    """creditHoldOverride: AUTO, ON or OFF; ON refuses new projects."""
    is_inactive: bool = False
    enterprise_id: str | None = None


class ErpDepartment(_Record, table=True):
    """A cost center; its external ID is the firm's cost-center code."""

    __tablename__ = "erp_department"

    name: str
    is_inactive: bool = False


class ErpEmployee(_Record, table=True):
    """An employee with the labor cost (cost rate per hour) the ERP owns."""

    __tablename__ = "erp_employee"

    first_name: str
    last_name: str
    email: str | None = None
    labor_cost: str | None = None
    currency: str = "USD"
    department_id: int | None = None
    is_inactive: bool = False
    hire_date: date | None = None


class ErpAccountingPeriod(_Record, table=True):
    __tablename__ = "erp_accounting_period"

    period_name: str = Field(unique=True, index=True)
    start_date: date
    end_date: date
    closed: bool = False
    all_locked: bool = False


class ErpJob(_Record, table=True):
    """A financial project."""

    __tablename__ = "erp_job"

    entity_id: str | None = None
    company_name: str
    customer_id: int = Field(index=True)
    status: str = JOB_STATUS_IN_PROGRESS
    start_date: date | None = None
    projected_end_date: date | None = None
    currency: str = "USD"
    department_id: int | None = None
    estimated_revenue: str | None = None
    enterprise_id: str | None = None
    practice: str | None = None
    comments: str | None = None


class ErpJobBudget(_Record, table=True):
    """A `customrecord_pssync_budget` entry: a project's budget, in the custom record type the
    tenant creates for pssync (NetSuite has no REST object for it). Empty fields are None."""

    __tablename__ = "erp_job_budget"

    name: str | None = None
    job_id: int | None = Field(default=None, index=True)
    """custrecord_pssync_budget_project"""
    amount: str | None = None
    currency: str | None = None
    budget_version: int | None = None


class ErpLaborForecast(_Record, table=True):
    """A `customrecord_pssync_labor_forecast` entry: a project's labor forecast for a month."""

    __tablename__ = "erp_labor_forecast"

    name: str | None = None
    job_id: int | None = Field(default=None, index=True)
    """custrecord_pssync_lf_project"""
    period_name: str | None = None
    hours: str | None = None
    labor_cost: str | None = None
    currency: str | None = None
    status: str | None = None
    version: int | None = None


class ErpTimebill(_Record, table=True):
    """A cost posting (time, expense or a reversal); never edited, only reversed."""

    __tablename__ = "erp_timebill"

    job_id: int = Field(index=True)
    employee: str | None = None
    """As referenced: an internal id, or `eid:` + external ID."""
    tran_date: date
    period_id: int | None = None
    period_name: str | None = None
    hours: str = "0"
    rate: str | None = None
    cost_amount: str = "0"
    bill_amount: str | None = None
    currency: str = "USD"
    department_id: int
    memo: str | None = None
    is_billable: bool = True
    reverses_id: int | None = Field(default=None, index=True)
    kind: str | None = None
    source_entry: str | None = None


class ErpInvoice(_Record, table=True):
    __tablename__ = "erp_invoice"

    customer_id: int
    job_id: int | None = None
    tran_date: date
    period_id: int | None = None
    period_name: str | None = None
    currency: str = "USD"
    memo: str | None = None
    milestone: str | None = None
    lines_json: str = "[]"
    total: str = "0"
    status: str = INVOICE_OPEN


class ErpAsyncJob(SQLModel, table=True):
    __tablename__ = "erp_async_job"

    id: int | None = Field(default=None, primary_key=True)
    method: str
    path: str
    pending_polls: int = 0
    tasks_json: str = "[]"
    """[{"id", "progress", "status", "result"}] in submission order."""
    start_time: datetime = Field(default_factory=_now)
    end_time: datetime = Field(default_factory=_now)


class ErpIdempotencyKey(SQLModel, table=True):
    __tablename__ = "erp_idempotency_key"

    key: str = Field(primary_key=True)
    job_id: int
    created: datetime = Field(default_factory=_now)


class ErpM2MCertificate(SQLModel, table=True):
    """A mapping of the account's OAuth 2.0 Client Credentials (M2M) Setup: the public part of a
    certificate, for one application (client ID); the certificate ID is the `kid` of the client
    assertions it verifies (`sandbox.erp.m2m`)."""

    __tablename__ = "erp_m2m_certificate"

    certificate_id: str = Field(primary_key=True)
    client_id: str = Field(index=True)
    certificate_pem: str
    valid_until: float
    """Seconds since the epoch: the certificate's end, at most two years after the upload."""
    revoked: bool = False
    created: datetime = Field(default_factory=_now)


TABLES = table_list(
    ErpCustomer,
    ErpDepartment,
    ErpEmployee,
    ErpAccountingPeriod,
    ErpJob,
    ErpJobBudget,
    ErpLaborForecast,
    ErpTimebill,
    ErpInvoice,
    ErpAsyncJob,
    ErpIdempotencyKey,
    ErpM2MCertificate,
    ErpRateCardRevisionRow,
    ErpLaborCostRateRow,
)
