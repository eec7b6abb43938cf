"""ERP twin: a subset of NetSuite's REST web services (record, async and SuiteQL services).

Mount it anywhere; its paths are NetSuite's, relative to the app's root:

- `GET|POST /services/rest/record/v1/{type}` — list (`limit` <= 1000, `offset`, `q`) and create
  (204 + `Location`). Types: `customer`, `job`, `department` (cost center), `employee` (with
  its `laborCost`), `accountingPeriod`, `timebill`, `invoice`.
- `GET|PATCH|PUT /services/rest/record/v1/{type}/{id}` — `{id}` is an internal id or
  `eid:VALUE`; `PUT .../eid:VALUE` is an upsert (create or update, never a second record).
- `Prefer: respond-async` on a create or upsert -> 202 + `Location: /services/rest/async/v1/job/
  {id}`; `X-NetSuite-Idempotency-Key` (a UUID) makes a repeated request answer 400
  `IDEMPOTENCY_ERROR` with a `Location` of the earlier job. A POST body `{"items": [...]}` (at
  most 200 records, each with an `externalId`) is a batch upsert, one task per record, the way
  SOAP's asyncUpsertList reports one write response per record.
- `GET /services/rest/async/v1/job/{id}`, `.../task`, `.../task/{t}`, `.../task/{t}/result`.
  Twin extension: `.../task?expandSubResources=true` embeds each task's result, so a batch is
  read back in one request.
- `POST /services/rest/query/v1/suiteql` — `SELECT cols FROM table [WHERE col = v [AND ..]]
  [ORDER BY col [ASC|DESC]]` over the twin's records; values are text, like SuiteQL's.
- `GET|PATCH /services/rest/record/v1/job/{id}/budget` — the project budget with a
  `budgetVersion`; writes need `If-Match` (or `budgetVersion` in the body); a stale one is
  answered 412 `RCRD_HAS_BEEN_CHANGED`.
- `GET|PUT /services/rest/record/v1/job/{id}/laborForecast/{YYYY-MM}` — labor forecast per
  period (draft / approved / locked); approved or locked ones are never overwritten.
- `POST /services/rest/record/v1/invoice/{id}/!transform/void` `{"memo": reason}` — voids an
  invoice, styled as a NetSuite record transform (204 + `Location` of the invoice, which
  stays: the ledger is append-only). Its status becomes `Voided` and `Voided: <reason>` is
  added to its memo. Voiding a voided invoice changes nothing (204 again); a `Paid In Full`
  one is refused (`INVALID_TRANSACTION_STATE`). A voided invoice is final: an edit is refused
  with `INVALID_TRANSACTION_STATE`, and an upsert by its externalId finds it as it is (a new
  invoice needs a new externalId).

Business rules answer 400 in NetSuite's error shape (`o:errorDetails` with `o:errorCode` and
`o:errorPath`): `PROJECT_CLOSED`, `INVALID_COST_CENTER`, `PERIOD_CLOSED`,
`CUSTOMER_CREDIT_HOLD`, `ALREADY_REVERSED`, `INVALID_KEY_OR_REF`, `INVALID_FIELD` (unknown field),
`INVALID_CONTENT` (wrong type), `USER_ERROR` (missing mandatory field), `DUP_RCRD`; unknown ids
are 404 `NONEXISTENT_ID`.

Faults: the shared ones (`/_admin/faults`: 5xx, 429, latency, outage, quotas, hangs) and the
shared lost-response fault, `POST /_admin/erp/lost-responses {"rate", "seed"}` (or
`/_admin/lost-responses`): that fraction of requests is processed and then answered 504, as if
the response had been lost — what idempotency keys and external-ID upserts are for.

Simplifications, said once: currencies are referenced by their ISO code (`{"id": "USD"}`);
a timebill's `employee` reference is stored as given, not checked (HCM owns who works); cost
postings of every kind are timebills; async jobs run when they are submitted and report
`pending` on their first poll(s) (`async_pending_polls`), which keeps tests deterministic.
Handlers are `async def` and touch SQLite synchronously, so writes never interleave.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal, cast

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from pydantic_core import PydanticUndefined
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, defer
from sqlmodel import Field, Session, SQLModel, col, func, select

from contracts.settings import DEV_WEBHOOK_SECRET
from sandbox._twin import TwinError, TwinState, create_twin_app, make_twin_engine

if TYPE_CHECKING:
    from sandbox.seed import Firm

SYSTEM = "erp"
RECORD = "/services/rest/record/v1"
ASYNC = "/services/rest/async/v1"
MAX_LIMIT = 1000
MAX_BATCH = 200
IDEMPOTENCY_HEADER = "X-NetSuite-Idempotency-Key"

# Invoice statuses (the twin's subset of NetSuite's).
INVOICE_OPEN = "Open"
INVOICE_PAID = "Paid In Full"
INVOICE_VOIDED = "Voided"

# NetSuite's default project (job) statuses: entityStatus internal id -> name.
JOB_STATUS_CLOSED = "1"
JOB_STATUS_IN_PROGRESS = "2"
JOB_STATUSES = {
    "1": "Closed",
    "2": "In Progress",
    "3": "Not Awarded",
    "4": "Pending",
    "5": "Awarded",
}

_RFC9110 = {
    400: "15.5.1",
    401: "15.5.2",
    403: "15.5.4",
    404: "15.5.5",
    405: "15.5.6",
    408: "15.5.9",
    409: "15.5.10",
    412: "15.5.13",
    415: "15.5.16",
    500: "15.6.1",
    502: "15.6.3",
    503: "15.6.4",
    504: "15.6.5",
}
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    412: "Precondition Failed",
    415: "Unsupported Media Type",
    428: "Precondition Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def error_body(status: int, code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """NetSuite's REST error shape."""
    if status in _RFC9110:
        kind = f"https://www.rfc-editor.org/rfc/rfc9110.html#section-{_RFC9110[status]}"
    else:
        kind = "https://www.rfc-editor.org/rfc/rfc6585.html"
    detail: dict[str, Any] = {"detail": message, "o:errorCode": code}
    if field:
        detail["o:errorPath"] = field
    return {
        "type": kind,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "o:errorDetails": [detail],
    }


def _now() -> datetime:
    return datetime.now(UTC)


def _dec(value: Decimal | None) -> str | None:
    """Decimals are stored as normalised text: exact, and equal values compare equal."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _num(text: str | None) -> float | int | None:
    """A stored decimal as a JSON number (what NetSuite sends)."""
    if text is None:
        return None
    value = Decimal(text)
    return int(value) if value == value.to_integral_value() else float(value)


def _int_id(text: str) -> int | None:
    """An internal id, or None for anything that cannot be one (SQLite's ints are 64-bit)."""
    return int(text) if text.isdigit() and len(text) <= 18 else None


def _stamp(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- tables


class ErpCustomer(SQLModel, table=True):
    __tablename__ = "erp_customer"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, unique=True, index=True)
    company_name: str
    email: str | None = None
    currency: str = "USD"
    credit_hold: str = "AUTO"
    """creditHoldOverride: AUTO, ON or OFF; ON refuses new projects."""
    is_inactive: bool = False
    enterprise_id: str | None = None
    last_modified: datetime = Field(default_factory=_now)


class ErpDepartment(SQLModel, table=True):
    """A cost center; its external ID is the firm's cost-center code."""

    __tablename__ = "erp_department"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, unique=True, index=True)
    name: str
    is_inactive: bool = False
    last_modified: datetime = Field(default_factory=_now)


class ErpEmployee(SQLModel, table=True):
    """An employee with the labor cost (cost rate per hour) the ERP owns."""

    __tablename__ = "erp_employee"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, unique=True, index=True)
    first_name: str
    last_name: str
    email: str | None = None
    labor_cost: str | None = None
    currency: str = "USD"
    department_id: int | None = None
    is_inactive: bool = False
    last_modified: datetime = Field(default_factory=_now)


class ErpAccountingPeriod(SQLModel, table=True):
    __tablename__ = "erp_accounting_period"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, unique=True, index=True)
    period_name: str = Field(unique=True, index=True)
    start_date: date
    end_date: date
    closed: bool = False
    all_locked: bool = False
    last_modified: datetime = Field(default_factory=_now)


class ErpJob(SQLModel, table=True):
    """A financial project."""

    __tablename__ = "erp_job"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, unique=True, index=True)
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
    last_modified: datetime = Field(default_factory=_now)


class ErpJobBudget(SQLModel, table=True):
    __tablename__ = "erp_job_budget"

    job_id: int = Field(primary_key=True)
    amount: str = "0"
    currency: str = "USD"
    budget_version: int = 0
    last_modified: datetime = Field(default_factory=_now)


class ErpLaborForecast(SQLModel, table=True):
    __tablename__ = "erp_labor_forecast"

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(index=True)
    period_name: str
    hours: str = "0"
    labor_cost: str = "0"
    currency: str = "USD"
    status: str = "draft"
    version: int = 0
    last_modified: datetime = Field(default_factory=_now)


class ErpTimebill(SQLModel, table=True):
    """A cost posting (time, expense or a reversal); never edited, only reversed."""

    __tablename__ = "erp_timebill"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, unique=True, index=True)
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
    last_modified: datetime = Field(default_factory=_now)


class ErpInvoice(SQLModel, table=True):
    __tablename__ = "erp_invoice"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, unique=True, index=True)
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
    last_modified: datetime = Field(default_factory=_now)


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


TABLES = [
    m.__table__  # type: ignore[attr-defined]
    for m in (
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
    )
]

# --------------------------------------------------------------------------- request bodies


class Ref(BaseModel):
    """A reference to another record: `{"id": "12"}` (or `{"externalId": "..."}`)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    externalId: str | None = None
    refName: str | None = None
    links: list[Any] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _int_ids(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @model_validator(mode="after")
    def _needs_key(self) -> Ref:
        if not self.id and not self.externalId:
            raise ValueError("a reference needs an id or an externalId")
        return self


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    externalId: str | None = None
    links: list[Any] | None = None
    id: str | None = None
    """Read-only; accepted (and ignored) so a GET body can be sent back."""


class CustomerBody(_Body):
    companyName: str | None = None
    email: str | None = None
    currency: Ref | None = None
    creditHoldOverride: Literal["AUTO", "ON", "OFF"] | None = None
    isInactive: bool | None = None
    custentity_pssync_enterprise_id: str | None = None
    lastModifiedDate: str | None = None


class DepartmentBody(_Body):
    name: str | None = None
    isInactive: bool | None = None
    lastModifiedDate: str | None = None


class EmployeeBody(_Body):
    firstName: str | None = None
    lastName: str | None = None
    email: str | None = None
    laborCost: Decimal | None = None
    currency: Ref | None = None
    department: Ref | None = None
    isInactive: bool | None = None
    lastModifiedDate: str | None = None


class AccountingPeriodBody(_Body):
    periodName: str | None = None
    startDate: date | None = None
    endDate: date | None = None
    closed: bool | None = None
    allLocked: bool | None = None
    lastModifiedDate: str | None = None


class JobBody(_Body):
    entityId: str | None = None
    companyName: str | None = None
    customer: Ref | None = None
    entityStatus: Ref | None = None
    startDate: date | None = None
    projectedEndDate: date | None = None
    currency: Ref | None = None
    department: Ref | None = None
    estimatedRevenue: Decimal | None = None
    custentity_pssync_enterprise_id: str | None = None
    custentity_pssync_practice: str | None = None
    comments: str | None = None
    lastModifiedDate: str | None = None


class TimebillBody(_Body):
    customer: Ref | None = None
    """The project (NetSuite puts the job in a timebill's customer field)."""
    employee: Ref | None = None
    tranDate: date | None = None
    hours: Decimal | None = None
    rate: Decimal | None = None
    costAmount: Decimal | None = None
    billAmount: Decimal | None = None
    currency: Ref | None = None
    department: Ref | None = None
    memo: str | None = None
    isBillable: bool | None = None
    reverses: Ref | None = None
    custcol_pssync_kind: Literal["time", "expense", "reversal"] | None = None
    custcol_pssync_source_entry: str | None = None
    postingPeriod: Ref | None = None
    """Read-only (derived from tranDate); accepted and ignored."""
    lastModifiedDate: str | None = None


class InvoiceLineBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    quantity: Decimal = Decimal(1)
    rate: Decimal | None = None
    amount: Decimal


class InvoiceItems(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[InvoiceLineBody]


class InvoiceBody(_Body):
    entity: Ref | None = None
    job: Ref | None = None
    tranDate: date | None = None
    currency: Ref | None = None
    memo: str | None = None
    custbody_pssync_milestone: str | None = None
    item: InvoiceItems | None = None
    total: Decimal | None = None
    """Read-only (sum of the lines); accepted and ignored."""
    status: str | None = None
    postingPeriod: Ref | None = None
    lastModifiedDate: str | None = None


class VoidBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    memo: str | None = None
    """Why: kept in the invoice's memo."""


class BudgetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Decimal
    currency: Ref | None = None
    budgetVersion: int | None = None


class ForecastBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hours: Decimal
    laborCost: Decimal
    currency: Ref | None = None
    status: Literal["draft", "approved", "locked"] = "draft"
    version: int = 0


class SuiteQLBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: str


def _validate(model: type[BaseModel], raw: Any) -> BaseModel:
    """Vendor-shaped 400s for bad bodies: INVALID_FIELD names an unknown field."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in err["loc"]) or None
        if err["type"] == "extra_forbidden":
            raise TwinError(400, "INVALID_FIELD", f"Invalid field name: {path}", path) from None
        raise TwinError(
            400, "INVALID_CONTENT", f"Invalid value for {path or 'the body'}: {err['msg']}", path
        ) from None


# --------------------------------------------------------------------------- record types

Url = Callable[[str], str]
Row = Any


def _ref(value: Any, name: str | None = None) -> dict[str, Any] | None:
    if value is None:
        return None
    ref: dict[str, Any] = {"id": str(value)}
    if name:
        ref["refName"] = name
    return ref


def _currency(ref: Ref | None, path: str) -> str | None:
    if ref is None:
        return None
    code = (ref.id or ref.refName or "").upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise TwinError(400, "INVALID_KEY_OR_REF", f"Invalid currency reference {ref.id}", path)
    return code


# -- batches ----------------------------------------------------------------------------------
#
# A batch of up to 200 records runs in one session (one transaction), and its records mostly
# name the same few projects, departments and periods. While it runs, `s.info[_BATCH]` holds a
# `_Batch`: lookups are memoised (holding the rows strongly: the session's identity map is weak
# and would reload them from the database each time), the batch's external IDs are read in one
# query, and new records are written by one executemany at the end instead of an ORM flush
# each (from drafts, see `_draft`). The rules are the same as for a single write;
# `write_record` keeps the memo true.

_BATCH = "erp_twin_batch"


@dataclass
class _Batch:
    rows: dict[tuple[str, Any, Any], Any] = dc_field(default_factory=dict)
    """("id", table, id) -> row; ("eid", table, external id) -> row, or None when absent."""
    periods: list[Any] | None = None
    next_ids: dict[Any, int] = dc_field(default_factory=dict)
    inserts: dict[int, tuple[Any, SimpleNamespace]] = dc_field(default_factory=dict)
    """New records not written yet (table, draft) by the draft's `id()`: `_write_inserts`
    writes them before any query."""


def _batch(s: Session) -> _Batch | None:
    batch: _Batch | None = s.info.get(_BATCH)
    return batch


def _write_inserts(s: Session) -> None:
    """Write the batch's new rows (one executemany per table) and forget them in the memo:
    from now on the database has them."""
    batch = _batch(s)
    if batch is None or not batch.inserts:
        return
    drafts, batch.inserts = list(batch.inserts.values()), {}
    by_table: dict[Any, list[dict[str, Any]]] = {}
    for table, draft in drafts:
        by_table.setdefault(table, []).append(vars(draft))
        batch.rows.pop(("id", table, draft.id), None)
        if draft.external_id is not None:
            batch.rows.pop(("eid", table, draft.external_id), None)
    connection = s.connection()
    for table, values in by_table.items():
        connection.execute(table.__table__.insert(), values)


def _before_query(context: ORMExecuteState) -> None:
    """Autoflush for the batch's new rows: a query sees them."""
    _write_inserts(context.session)  # type: ignore[arg-type]


def _get_row(s: Session, table: Any, ident: int | None) -> Any:
    """`s.get(table, ident)`, memoised during a batch (misses are not: a row may be created)."""
    if ident is None:
        return None
    batch = _batch(s)
    if batch is None:
        return s.get(table, ident)
    key = ("id", table, ident)
    row = batch.rows.get(key)
    if row is None:
        row = s.get(table, ident)
        if row is not None:
            batch.rows[key] = row
    return row


def _lookup(s: Session, table: type[SQLModel], ref: Ref, path: str) -> Any:
    if ref.id is not None and ref.id.startswith("eid:"):
        row = _by_eid(s, table, ref.id[4:])
    elif ref.id is not None:
        row = _get_row(s, table, _int_id(ref.id))
    else:
        row = _by_eid(s, table, ref.externalId or "")
    if row is None:
        key = ref.id or f"eid:{ref.externalId}"
        raise TwinError(
            400,
            "INVALID_KEY_OR_REF",
            f"Invalid {path} reference key {key}.",
            path,
        )
    return row


def _by_eid(s: Session, table: Any, external_id: str) -> Any:
    batch = _batch(s)
    if batch is None:
        return s.exec(select(table).where(table.external_id == external_id)).first()
    key = ("eid", table, external_id)
    if key not in batch.rows:
        # A miss is remembered too: every record the batch creates goes through
        # `write_record`, which records it here.
        batch.rows[key] = s.exec(select(table).where(table.external_id == external_id)).first()
    return batch.rows[key]


def _remember(s: Session, table: Any, row: Any, old_external_id: str | None = None) -> None:
    """Keep the batch memo true after `row` was created or its external ID changed."""
    batch = _batch(s)
    if batch is None:
        return
    if old_external_id is not None:
        batch.rows[("eid", table, old_external_id)] = None
    if row.external_id is not None:
        batch.rows[("eid", table, row.external_id)] = row
    batch.rows[("id", table, row.id)] = row


def _next_id(s: Session, batch: _Batch, table: Any) -> int:
    """The id SQLite would give the next new row: max + 1 (rows of these tables are never
    deleted, and writes never interleave: handlers touch SQLite synchronously)."""
    if table not in batch.next_ids:
        batch.next_ids[table] = (s.exec(select(func.max(table.id))).one() or 0) + 1
    ident = batch.next_ids[table]
    batch.next_ids[table] = ident + 1
    return ident


def _prefetch(s: Session, table: Any, external_ids: list[str]) -> None:
    """Read a batch's records by external ID in one query (and remember which are new)."""
    batch = _batch(s)
    if batch is None:
        return
    wanted = set(external_ids)
    ordered = sorted(wanted)
    for i in range(0, len(ordered), 500):
        chunk = ordered[i : i + 500]
        for row in s.exec(select(table).where(table.external_id.in_(chunk))).all():
            batch.rows[("eid", table, row.external_id)] = row
            wanted.discard(row.external_id)
    for external_id in wanted:
        batch.rows[("eid", table, external_id)] = None


def _period_for(s: Session, day: date) -> ErpAccountingPeriod | None:
    batch = _batch(s)
    if batch is None:
        return s.exec(
            select(ErpAccountingPeriod)
            .where(ErpAccountingPeriod.start_date <= day)
            .where(ErpAccountingPeriod.end_date >= day)
            .order_by(ErpAccountingPeriod.end_date)
        ).first()
    if batch.periods is None:  # a few dozen rows: read them once per batch
        batch.periods = list(
            s.exec(select(ErpAccountingPeriod).order_by(col(ErpAccountingPeriod.end_date))).all()
        )
    return next((p for p in batch.periods if p.start_date <= day <= p.end_date), None)


def _open_period(s: Session, day: date) -> ErpAccountingPeriod:
    period = _period_for(s, day)
    if period is None or period.closed or period.all_locked:
        what = (
            f"The accounting period {period.period_name} is closed"
            if period
            else "No accounting period is open"
        )
        raise TwinError(400, "PERIOD_CLOSED", f"{what}; cannot post on {day}.", "tranDate")
    return period


class RecordType:
    """How one NetSuite record type maps to its table, body and business rules."""

    name: str
    table: Any
    body: type[_Body]
    required: tuple[str, ...] = ()
    filters: dict[str, str] = {}
    """q-filter field -> column."""

    def values(self, s: Session, body: _Body) -> dict[str, Any]:
        """Column values for the fields the body set (references resolved)."""
        raise NotImplementedError

    def check(self, s: Session, row: Any, changed: set[str] | None) -> None:
        """Business rules on the record as it would be after the write (`changed` is None
        when creating, else the columns the write changes)."""

    def after_write(self, s: Session, row: Any, creating: bool) -> None:
        """Side effects of a write (e.g. a new job gets its budget)."""

    def final(self, row: Any) -> str | None:
        """Why the record can no longer change (e.g. a voided invoice), or None."""
        return None

    def render(self, s: Session, row: Any, url: Url) -> dict[str, Any]:
        raise NotImplementedError


def _base(row: Any, type_name: str, url: Url) -> dict[str, Any]:
    out: dict[str, Any] = {
        "links": [{"rel": "self", "href": url(f"{RECORD}/{type_name}/{row.id}")}],
        "id": str(row.id),
    }
    if row.external_id is not None:
        out["externalId"] = row.external_id
    return out


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


class CustomerType(RecordType):
    name = "customer"
    table = ErpCustomer
    body = CustomerBody
    required = ("companyName",)
    filters = {"externalId": "external_id", "companyName": "company_name"}

    def values(self, s: Session, body: _Body) -> dict[str, Any]:
        assert isinstance(body, CustomerBody)
        f = body.model_fields_set
        out: dict[str, Any] = {}
        if "companyName" in f:
            out["company_name"] = body.companyName
        if "email" in f:
            out["email"] = body.email
        if "currency" in f and body.currency is not None:
            out["currency"] = _currency(body.currency, "currency")
        if "creditHoldOverride" in f and body.creditHoldOverride is not None:
            out["credit_hold"] = body.creditHoldOverride
        if "isInactive" in f and body.isInactive is not None:
            out["is_inactive"] = body.isInactive
        if "custentity_pssync_enterprise_id" in f:
            out["enterprise_id"] = body.custentity_pssync_enterprise_id
        return out

    def render(self, s: Session, row: ErpCustomer, url: Url) -> dict[str, Any]:
        return _base(row, self.name, url) | _drop_none(
            {
                "companyName": row.company_name,
                "email": row.email,
                "currency": _ref(row.currency, row.currency),
                "creditHoldOverride": row.credit_hold,
                "isInactive": row.is_inactive,
                "custentity_pssync_enterprise_id": row.enterprise_id,
                "lastModifiedDate": _stamp(row.last_modified),
            }
        )


class DepartmentType(RecordType):
    name = "department"
    table = ErpDepartment
    body = DepartmentBody
    required = ("name",)
    filters = {"externalId": "external_id", "name": "name", "isInactive": "is_inactive"}

    def values(self, s: Session, body: _Body) -> dict[str, Any]:
        assert isinstance(body, DepartmentBody)
        f = body.model_fields_set
        out: dict[str, Any] = {}
        if "name" in f:
            out["name"] = body.name
        if "isInactive" in f and body.isInactive is not None:
            out["is_inactive"] = body.isInactive
        return out

    def render(self, s: Session, row: ErpDepartment, url: Url) -> dict[str, Any]:
        return _base(row, self.name, url) | {
            "name": row.name,
            "isInactive": row.is_inactive,
            "lastModifiedDate": _stamp(row.last_modified),
        }


class EmployeeType(RecordType):
    name = "employee"
    table = ErpEmployee
    body = EmployeeBody
    required = ("firstName", "lastName")
    filters = {"externalId": "external_id", "department": "department_id"}

    def values(self, s: Session, body: _Body) -> dict[str, Any]:
        assert isinstance(body, EmployeeBody)
        f = body.model_fields_set
        out: dict[str, Any] = {}
        for field, column in (
            ("firstName", "first_name"),
            ("lastName", "last_name"),
            ("email", "email"),
        ):
            if field in f:
                out[column] = getattr(body, field)
        if "laborCost" in f:
            out["labor_cost"] = _dec(body.laborCost)
        if "currency" in f and body.currency is not None:
            out["currency"] = _currency(body.currency, "currency")
        if "department" in f:
            out["department_id"] = (
                None if body.department is None else _department_ref(s, body.department)
            )
        if "isInactive" in f and body.isInactive is not None:
            out["is_inactive"] = body.isInactive
        return out

    def render(self, s: Session, row: ErpEmployee, url: Url) -> dict[str, Any]:
        return _base(row, self.name, url) | _drop_none(
            {
                "firstName": row.first_name,
                "lastName": row.last_name,
                "email": row.email,
                "laborCost": _num(row.labor_cost),
                "currency": _ref(row.currency, row.currency),
                "department": _ref(row.department_id),
                "isInactive": row.is_inactive,
                "lastModifiedDate": _stamp(row.last_modified),
            }
        )


class AccountingPeriodType(RecordType):
    name = "accountingPeriod"
    table = ErpAccountingPeriod
    body = AccountingPeriodBody
    required = ("periodName", "startDate", "endDate")
    filters = {"externalId": "external_id", "periodName": "period_name", "closed": "closed"}

    def values(self, s: Session, body: _Body) -> dict[str, Any]:
        assert isinstance(body, AccountingPeriodBody)
        f = body.model_fields_set
        out: dict[str, Any] = {}
        for field, column in (
            ("periodName", "period_name"),
            ("startDate", "start_date"),
            ("endDate", "end_date"),
            ("closed", "closed"),
            ("allLocked", "all_locked"),
        ):
            if field in f and getattr(body, field) is not None:
                out[column] = getattr(body, field)
        return out

    def check(self, s: Session, row: ErpAccountingPeriod, changed: set[str] | None) -> None:
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", row.period_name):
            raise TwinError(400, "INVALID_CONTENT", "periodName must be YYYY-MM", "periodName")
        if row.end_date < row.start_date:
            raise TwinError(400, "INVALID_CONTENT", "endDate is before startDate", "endDate")
        clash = s.exec(
            select(ErpAccountingPeriod).where(ErpAccountingPeriod.period_name == row.period_name)
        ).first()
        if clash is not None and clash.id != row.id:
            raise TwinError(400, "DUP_RCRD", f"Period {row.period_name} exists", "periodName")

    def render(self, s: Session, row: ErpAccountingPeriod, url: Url) -> dict[str, Any]:
        return _base(row, self.name, url) | {
            "periodName": row.period_name,
            "startDate": row.start_date.isoformat(),
            "endDate": row.end_date.isoformat(),
            "closed": row.closed,
            "allLocked": row.all_locked,
            "isPosting": True,
            "lastModifiedDate": _stamp(row.last_modified),
        }


def _check_department(s: Session, department_id: int | None) -> None:
    dept = _get_row(s, ErpDepartment, department_id)
    if dept is None or dept.is_inactive:
        what = "inactive" if dept is not None else "unknown"
        raise TwinError(
            400,
            "INVALID_COST_CENTER",
            f"The department (cost center) {department_id} is {what}.",
            "department",
        )


def _department_ref(s: Session, ref: Ref) -> int:
    """Resolve a department reference; an unknown one is a cost-center error."""
    try:
        return int(_lookup(s, ErpDepartment, ref, "department").id)
    except TwinError:
        key = ref.id or f"eid:{ref.externalId}"
        raise TwinError(
            400,
            "INVALID_COST_CENTER",
            f"The department (cost center) {key} is unknown.",
            "department",
        ) from None


class JobType(RecordType):
    name = "job"
    table = ErpJob
    body = JobBody
    required = ("companyName", "customer")
    filters = {
        "externalId": "external_id",
        "customer": "customer_id",
        "entityStatus": "status",
        "companyName": "company_name",
    }

    def values(self, s: Session, body: _Body) -> dict[str, Any]:
        assert isinstance(body, JobBody)
        f = body.model_fields_set
        out: dict[str, Any] = {}
        plain = (
            ("entityId", "entity_id"),
            ("companyName", "company_name"),
            ("startDate", "start_date"),
            ("projectedEndDate", "projected_end_date"),
            ("custentity_pssync_enterprise_id", "enterprise_id"),
            ("custentity_pssync_practice", "practice"),
            ("comments", "comments"),
        )
        for field, column in plain:
            if field in f:
                out[column] = getattr(body, field)
        if "estimatedRevenue" in f:
            out["estimated_revenue"] = _dec(body.estimatedRevenue)
        if "customer" in f and body.customer is not None:
            out["customer_id"] = _lookup(s, ErpCustomer, body.customer, "customer").id
        if "entityStatus" in f and body.entityStatus is not None:
            status = body.entityStatus.id or ""
            if status not in JOB_STATUSES:
                raise TwinError(
                    400, "INVALID_KEY_OR_REF", f"Invalid entityStatus {status}", "entityStatus"
                )
            out["status"] = status
        if "currency" in f and body.currency is not None:
            out["currency"] = _currency(body.currency, "currency")
        if "department" in f:
            out["department_id"] = (
                _department_ref(s, body.department) if body.department is not None else None
            )
        return out

    def check(self, s: Session, row: ErpJob, changed: set[str] | None) -> None:
        if changed is None:
            customer = s.get(ErpCustomer, row.customer_id)
            if customer is not None and customer.credit_hold == "ON":
                raise TwinError(
                    400,
                    "CUSTOMER_CREDIT_HOLD",
                    f"Customer {customer.company_name} is on credit hold; "
                    "no new project can be opened for it.",
                    "customer",
                )
        if row.department_id is not None and (changed is None or "department_id" in changed):
            _check_department(s, row.department_id)

    def after_write(self, s: Session, row: ErpJob, creating: bool) -> None:
        if creating:
            s.add(ErpJobBudget(job_id=row.id, currency=row.currency))

    def render(self, s: Session, row: ErpJob, url: Url) -> dict[str, Any]:
        customer = s.get(ErpCustomer, row.customer_id)
        return _base(row, self.name, url) | _drop_none(
            {
                "entityId": row.entity_id,
                "companyName": row.company_name,
                "customer": _ref(row.customer_id, customer.company_name if customer else None),
                "entityStatus": _ref(row.status, JOB_STATUSES.get(row.status)),
                "startDate": row.start_date.isoformat() if row.start_date else None,
                "projectedEndDate": (
                    row.projected_end_date.isoformat() if row.projected_end_date else None
                ),
                "currency": _ref(row.currency, row.currency),
                "department": _ref(row.department_id),
                "estimatedRevenue": _num(row.estimated_revenue),
                "custentity_pssync_enterprise_id": row.enterprise_id,
                "custentity_pssync_practice": row.practice,
                "comments": row.comments,
                "lastModifiedDate": _stamp(row.last_modified),
            }
        )


class TimebillType(RecordType):
    name = "timebill"
    table = ErpTimebill
    body = TimebillBody
    required = ("customer", "tranDate", "department", "costAmount")
    filters = {
        "externalId": "external_id",
        "customer": "job_id",
        "department": "department_id",
        "postingPeriod": "period_id",
        "reverses": "reverses_id",
    }

    def values(self, s: Session, body: _Body) -> dict[str, Any]:
        assert isinstance(body, TimebillBody)
        f = body.model_fields_set
        out: dict[str, Any] = {}
        if "customer" in f and body.customer is not None:
            out["job_id"] = _lookup(s, ErpJob, body.customer, "customer").id
        if "employee" in f:
            ref = body.employee
            out["employee"] = (
                None if ref is None else (ref.id if ref.id else f"eid:{ref.externalId}")
            )
        if "tranDate" in f and body.tranDate is not None:
            out["tran_date"] = body.tranDate
        for field, column in (
            ("hours", "hours"),
            ("rate", "rate"),
            ("costAmount", "cost_amount"),
            ("billAmount", "bill_amount"),
        ):
            if field in f:
                value = getattr(body, field)
                if value is None and column in ("hours", "cost_amount"):
                    continue
                out[column] = _dec(value)
        if "currency" in f and body.currency is not None:
            out["currency"] = _currency(body.currency, "currency")
        if "department" in f and body.department is not None:
            out["department_id"] = _department_ref(s, body.department)
        for field, column in (
            ("memo", "memo"),
            ("custcol_pssync_kind", "kind"),
            ("custcol_pssync_source_entry", "source_entry"),
        ):
            if field in f:
                out[column] = getattr(body, field)
        if "isBillable" in f and body.isBillable is not None:
            out["is_billable"] = body.isBillable
        if "reverses" in f:
            out["reverses_id"] = (
                None
                if body.reverses is None
                else _lookup(s, ErpTimebill, body.reverses, "reverses").id
            )
        return out

    def check(self, s: Session, row: ErpTimebill, changed: set[str] | None) -> None:
        job = _get_row(s, ErpJob, row.job_id)
        if job is None:  # pragma: no cover - values() resolved it
            raise TwinError(400, "INVALID_KEY_OR_REF", "unknown project", "customer")
        if job.status == JOB_STATUS_CLOSED:
            raise TwinError(
                400,
                "PROJECT_CLOSED",
                f"Project {job.company_name} ({job.id}) is closed; no costs can be posted.",
                "customer",
            )
        _check_department(s, row.department_id)
        period = _open_period(s, row.tran_date)
        row.period_id, row.period_name = period.id, period.period_name
        if row.reverses_id is not None:
            if row.reverses_id == row.id:
                raise TwinError(400, "INVALID_CONTENT", "a timebill cannot reverse itself")
            other = s.exec(
                select(ErpTimebill).where(ErpTimebill.reverses_id == row.reverses_id)
            ).first()
            if other is not None and other.id != row.id:
                raise TwinError(
                    400,
                    "ALREADY_REVERSED",
                    f"Timebill {row.reverses_id} is already reversed by {other.id}.",
                    "reverses",
                )

    def render(self, s: Session, row: ErpTimebill, url: Url) -> dict[str, Any]:
        employee: dict[str, Any] | None = None
        if row.employee is not None:
            employee = (
                {"externalId": row.employee[4:]}
                if row.employee.startswith("eid:")
                else {"id": row.employee}
            )
        return _base(row, self.name, url) | _drop_none(
            {
                "customer": _ref(row.job_id),
                "employee": employee,
                "tranDate": row.tran_date.isoformat(),
                "postingPeriod": _ref(row.period_id, row.period_name),
                "hours": _num(row.hours),
                "rate": _num(row.rate),
                "costAmount": _num(row.cost_amount),
                "billAmount": _num(row.bill_amount),
                "currency": _ref(row.currency, row.currency),
                "department": _ref(row.department_id),
                "memo": row.memo,
                "isBillable": row.is_billable,
                "reverses": _ref(row.reverses_id),
                "custcol_pssync_kind": row.kind,
                "custcol_pssync_source_entry": row.source_entry,
                "lastModifiedDate": _stamp(row.last_modified),
            }
        )


class InvoiceType(RecordType):
    name = "invoice"
    table = ErpInvoice
    body = InvoiceBody
    required = ("entity", "tranDate", "item")
    filters = {"externalId": "external_id", "entity": "customer_id", "job": "job_id"}

    def values(self, s: Session, body: _Body) -> dict[str, Any]:
        assert isinstance(body, InvoiceBody)
        f = body.model_fields_set
        out: dict[str, Any] = {}
        if "entity" in f and body.entity is not None:
            out["customer_id"] = _lookup(s, ErpCustomer, body.entity, "entity").id
        if "job" in f:
            out["job_id"] = None if body.job is None else _lookup(s, ErpJob, body.job, "job").id
        if "tranDate" in f and body.tranDate is not None:
            out["tran_date"] = body.tranDate
        if "currency" in f and body.currency is not None:
            out["currency"] = _currency(body.currency, "currency")
        if "memo" in f:
            out["memo"] = body.memo
        if "custbody_pssync_milestone" in f:
            out["milestone"] = body.custbody_pssync_milestone
        if "item" in f and body.item is not None:
            if not body.item.items:
                raise TwinError(400, "USER_ERROR", "An invoice needs at least one line", "item")
            lines = [
                {
                    "description": line.description,
                    "quantity": _dec(line.quantity),
                    "rate": _dec(line.rate),
                    "amount": _dec(line.amount),
                }
                for line in body.item.items
            ]
            out["lines_json"] = json.dumps(lines)
            out["total"] = _dec(sum((line.amount for line in body.item.items), Decimal(0)))
        return out

    def check(self, s: Session, row: ErpInvoice, changed: set[str] | None) -> None:
        period = _open_period(s, row.tran_date)
        row.period_id, row.period_name = period.id, period.period_name

    def final(self, row: ErpInvoice) -> str | None:
        return f"Invoice {row.id} is voided." if row.status == INVOICE_VOIDED else None

    def render(self, s: Session, row: ErpInvoice, url: Url) -> dict[str, Any]:
        lines = [
            _drop_none(
                {
                    "line": i + 1,
                    "description": line["description"],
                    "quantity": _num(line["quantity"]),
                    "rate": _num(line["rate"]),
                    "amount": _num(line["amount"]),
                }
            )
            for i, line in enumerate(json.loads(row.lines_json))
        ]
        return _base(row, self.name, url) | _drop_none(
            {
                "entity": _ref(row.customer_id),
                "job": _ref(row.job_id),
                "tranDate": row.tran_date.isoformat(),
                "postingPeriod": _ref(row.period_id, row.period_name),
                "currency": _ref(row.currency, row.currency),
                "memo": row.memo,
                "custbody_pssync_milestone": row.milestone,
                "item": {"items": lines},
                "total": _num(row.total),
                "status": row.status,
                "lastModifiedDate": _stamp(row.last_modified),
            }
        )


RECORD_TYPES: dict[str, RecordType] = {
    t.name: t
    for t in (
        CustomerType(),
        DepartmentType(),
        EmployeeType(),
        AccountingPeriodType(),
        JobType(),
        TimebillType(),
        InvoiceType(),
    )
}


def _record_type(name: str) -> RecordType:
    kind = RECORD_TYPES.get(name)
    if kind is None:
        raise TwinError(404, "INVALID_RECORD_TYPE", f"Record type '{name}' does not exist.")
    return kind


def _find(s: Session, kind: RecordType, ident: str) -> Any:
    if ident.startswith("eid:"):
        row = _by_eid(s, kind.table, ident[4:])
    else:
        row = s.get(kind.table, _int_id(ident)) if _int_id(ident) else None
    if row is None:
        raise TwinError(
            404,
            "NONEXISTENT_ID",
            f"The record instance does not exist. Invalid {kind.name} id: {ident}.",
            "id",
        )
    return row


_Defaults = list[tuple[str, Any, Callable[[], Any] | None]]
_COLUMN_DEFAULTS: dict[type, _Defaults] = {}
_IMMUTABLE = (str, int, float, bool, Decimal, date, datetime, type(None))


def _draft(table: Any, values: dict[str, Any]) -> SimpleNamespace:
    """A record as it would be written: `values` over the table's column defaults. The rules
    (`RecordType.check`) run on a draft, and only a draft that passes them is written, so a
    refusal leaves no trace; a draft also costs none of an ORM instance's bookkeeping (about
    0.1 ms a row with SQLModel, most of a 200-record batch's time)."""
    defaults = _COLUMN_DEFAULTS.get(table)
    if defaults is None:
        defaults = _COLUMN_DEFAULTS[table] = [
            (name, field.default, field.default_factory)
            for name, field in table.model_fields.items()
        ]
    data: dict[str, Any] = {}
    for name, default, factory in defaults:
        if name in values:
            data[name] = values[name]
        elif factory is not None:
            data[name] = factory()
        elif default is PydanticUndefined:
            data[name] = None  # a required column left unset: the database refuses it
        else:
            data[name] = default if isinstance(default, _IMMUTABLE) else copy.deepcopy(default)
    return SimpleNamespace(**data)


def write_record(
    s: Session,
    kind: RecordType,
    raw: Any,
    *,
    row: Any = None,
    external_id: str | None = None,
    upsert: bool = False,
) -> tuple[Any, bool]:
    """Create (row None) or update a record from a raw JSON body; (row, created).

    Every business rule runs before anything is written, so a refusal leaves no trace. An
    update that changes nothing is a no-op and skips the rules: an idempotent retry of a
    posting succeeds even if its project has been closed since.
    """
    body = _validate(kind.body, raw)
    assert isinstance(body, _Body)
    if external_id is not None:
        if body.externalId is not None and body.externalId != external_id:
            raise TwinError(
                400, "INVALID_CONTENT", "externalId in the body differs from the URL", "externalId"
            )
        body.externalId = external_id
        if upsert and row is None:
            row = _by_eid(s, kind.table, external_id)
    # In a batch, new records are written at its end and updates flushed once (see `_Batch`);
    # a record type whose side effects need the new id (a job's budget) is written at once.
    batch = _batch(s)
    if batch is not None and row is not None and id(row) in batch.inserts:
        # The batch names this record twice: write the first, then update it like any other.
        _write_inserts(s)
        row = _by_eid(s, kind.table, row.external_id)
    if type(kind).after_write is not RecordType.after_write:
        batch = None
    creating = row is None
    if creating:
        missing = [f for f in kind.required if getattr(body, f, None) is None]
        if missing:
            raise TwinError(
                400, "USER_ERROR", f"Please enter value(s) for: {', '.join(missing)}", missing[0]
            )
    values = kind.values(s, body)
    if "externalId" in body.model_fields_set or external_id is not None:
        values["external_id"] = body.externalId
    if creating:
        if values.get("external_id") is not None and _by_eid(s, kind.table, values["external_id"]):
            raise TwinError(
                400,
                "DUP_RCRD",
                f"A {kind.name} record with externalId {values['external_id']} already exists.",
                "externalId",
            )
        draft = _draft(kind.table, values)
        kind.check(s, draft, None)
        if batch is not None:
            draft.id = _next_id(s, batch, kind.table)
            batch.inserts[id(draft)] = (kind.table, draft)
            _remember(s, kind.table, draft)
            return draft, True
        created = kind.table(**vars(draft))
        s.add(created)
        s.flush()
        kind.after_write(s, created, True)
        _remember(s, kind.table, created)
        return created, True
    changes = {k: v for k, v in values.items() if getattr(row, k) != v}
    if not changes:
        return row, False
    final = kind.final(row)
    if final is not None:
        if upsert:  # an upsert by external ID finds the record as it stands
            return row, False
        raise TwinError(400, "INVALID_TRANSACTION_STATE", f"{final} It cannot be edited.")
    if "external_id" in changes and changes["external_id"] is not None:
        clash = _by_eid(s, kind.table, changes["external_id"])
        if clash is not None and clash.id != row.id:
            raise TwinError(400, "DUP_RCRD", "externalId is taken", "externalId")
    current = {c.name: getattr(row, c.name) for c in kind.table.__table__.columns}
    draft = SimpleNamespace(**(current | changes))
    kind.check(s, draft, set(changes))
    old_external_id = row.external_id
    for column in kind.table.__table__.columns:
        setattr(row, column.name, getattr(draft, column.name))
    row.last_modified = _now()
    if row.external_id != old_external_id:
        _remember(s, kind.table, row, old_external_id)
    s.add(row)
    if batch is None:
        s.flush()
        kind.after_write(s, row, False)
    return row, False


# --------------------------------------------------------------------------- q filter, SuiteQL

_CLAUSE = re.compile(r"^\s*(\w+)\s+(IS|ANY_OF|EQUAL|IS_NOT)\s+(.+?)\s*$", re.IGNORECASE)


def _q_conditions(kind: RecordType, q: str) -> list[Any]:
    conditions = []
    for clause in re.split(r"\s+AND\s+", q.strip(), flags=re.IGNORECASE):
        match = _CLAUSE.match(clause)
        if match is None or match.group(1) not in kind.filters:
            raise TwinError(
                400,
                "INVALID_PARAMETER",
                f"Invalid query: {clause!r} (fields: {', '.join(sorted(kind.filters))})",
                "q",
            )
        field, op, raw = match.group(1), match.group(2).upper(), match.group(3)
        column = getattr(kind.table, kind.filters[field])
        values = [v.strip().strip('"').strip("'") for v in raw.split(",")]
        try:
            python_type = column.type.python_type
        except NotImplementedError:
            python_type = str
        try:
            if python_type is bool:
                typed: list[Any] = [v.lower() in ("true", "t", "1") for v in values]
            elif python_type is int:
                typed = [_int_id(v) for v in values]
                if None in typed:
                    raise ValueError(clause)
            elif python_type is date:
                typed = [date.fromisoformat(v) for v in values]
            else:
                typed = values
        except ValueError:
            raise TwinError(400, "INVALID_PARAMETER", f"Invalid value in {clause!r}", "q") from None
        if op == "ANY_OF":
            conditions.append(column.in_(typed))
        elif op == "IS_NOT":
            conditions.append(column != typed[0])
        else:
            conditions.append(column == typed[0])
    return conditions


_SUITEQL = re.compile(
    r"^\s*select\s+(?P<cols>.+?)\s+from\s+(?P<table>\w+)"
    r"(?:\s+where\s+(?P<where>.+?))?"
    r"(?:\s+order\s+by\s+(?P<order>\w+)(?:\s+(?P<dir>asc|desc))?)?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_CONDITION = re.compile(
    r"^\s*(\w+)\s*(?:(=|!=|<>)\s*('(?:[^']|'')*'|[-\w.]+)|in\s*\((.*)\))\s*$",
    re.IGNORECASE | re.DOTALL,
)


def _sql_value(text: str) -> str:
    text = text.strip()
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1].replace("''", "'")
    return text


def _flatten(record: dict[str, Any]) -> dict[str, str]:
    """A rendered record as a SuiteQL row: lower-case columns, text values, T/F booleans,
    references as their id, sublists and nulls left out."""
    row: dict[str, str] = {}
    for key, value in record.items():
        if key == "links" or value is None or isinstance(value, list):
            continue
        if isinstance(value, dict):
            if "items" in value:
                continue
            value = value.get("id") or value.get("externalId")
            if value is None:
                continue
        if isinstance(value, bool):
            value = "T" if value else "F"
        row[key.lower()] = str(value)
    return row


def suiteql(s: Session, q: str, url: Url) -> list[dict[str, str]]:
    match = _SUITEQL.match(q)
    if match is None:
        raise TwinError(400, "INVALID_PARAMETER", "Invalid search query: unsupported SuiteQL", "q")
    by_table = {name.lower(): kind for name, kind in RECORD_TYPES.items()}
    kind = by_table.get(match.group("table").lower())
    if kind is None:
        raise TwinError(400, "INVALID_PARAMETER", f"Unknown table {match.group('table')}", "q")
    conditions: list[tuple[str, str, list[str]]] = []
    if match.group("where"):
        for clause in re.split(r"\s+and\s+", match.group("where"), flags=re.IGNORECASE):
            cond = _CONDITION.match(clause)
            if cond is None:
                raise TwinError(400, "INVALID_PARAMETER", f"Unsupported condition {clause!r}", "q")
            column = cond.group(1).lower()
            if cond.group(4) is not None:
                values = [_sql_value(v) for v in cond.group(4).split(",")]
                conditions.append((column, "in", values))
            else:
                conditions.append((column, cond.group(2), [_sql_value(cond.group(3))]))
    rows = [_flatten(kind.render(s, r, url)) for r in s.exec(select(kind.table)).all()]

    def keep(row: dict[str, str]) -> bool:
        for column, op, values in conditions:
            value = row.get(column)
            if op in ("=", "in") and value not in values:
                return False
            if op in ("!=", "<>") and value in values:
                return False
        return True

    rows = [r for r in rows if keep(r)]
    if match.group("order"):
        column = match.group("order").lower()
        rows.sort(
            key=lambda r: int(r[column]) if r.get(column, "").isdigit() else r.get(column, ""),
            reverse=(match.group("dir") or "").lower() == "desc",
        )
    cols = match.group("cols").strip()
    if cols != "*":
        wanted = [c.strip().lower() for c in cols.split(",")]
        rows = [{c: r[c] for c in wanted if c in r} for r in rows]
    return rows


# --------------------------------------------------------------------------- the router


def _paged(
    request: Request, items: list[Any], total: int, limit: int, offset: int
) -> dict[str, Any]:
    def link(rel: str, at: int) -> dict[str, str]:
        return {"rel": rel, "href": str(request.url.include_query_params(offset=at, limit=limit))}

    last = max(0, ((total - 1) // limit) * limit) if total else 0
    links = [link("first", 0)]
    if offset > 0:
        links.append(link("prev", max(0, offset - limit)))
    has_more = offset + len(items) < total
    if has_more:
        links.append(link("next", offset + limit))
    links += [link("last", last), {"rel": "self", "href": str(request.url)}]
    return {
        "links": links,
        "count": len(items),
        "hasMore": has_more,
        "items": items,
        "offset": offset,
        "totalResults": total,
    }


def _paging(limit: int | None, offset: int | None) -> tuple[int, int]:
    limit = MAX_LIMIT if limit is None else limit
    offset = 0 if offset is None else offset
    if not 1 <= limit <= MAX_LIMIT:
        raise TwinError(400, "INVALID_PARAMETER", f"limit must be 1..{MAX_LIMIT}", "limit")
    if offset < 0:
        raise TwinError(400, "INVALID_PARAMETER", "offset must not be negative", "offset")
    return limit, offset


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise TwinError(400, "INVALID_CONTENT", "The request body is empty.")
    try:
        return json.loads(raw)
    except ValueError:
        raise TwinError(400, "INVALID_CONTENT", "The request body is not valid JSON.") from None


def _wants_async(request: Request) -> bool:
    prefer = request.headers.get("prefer", "")
    return "respond-async" in [p.strip().lower() for p in prefer.split(",")]


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    try:
        return str(uuid.UUID(key.strip()))
    except ValueError:
        raise TwinError(
            400,
            "INVALID_HEADER",
            f"{IDEMPOTENCY_HEADER} must be a UUID, got {key!r}.",
            IDEMPOTENCY_HEADER,
        ) from None


class _Ids:
    """Absolute URLs from the request's base (which includes any mount prefix)."""

    def __init__(self, request: Request) -> None:
        # root_path carries any mount prefix (`/erp` in the sandbox); base_url may not.
        url = request.url
        self.base = f"{url.scheme}://{url.netloc}{request.scope.get('root_path', '')}"

    def __call__(self, path: str) -> str:
        return f"{self.base}{path}"


def _record_task(
    s: Session, kind: RecordType, url: Url, run: Callable[[], tuple[Any, bool]]
) -> dict[str, Any]:
    """Run one write as an async task: commit nothing here, report success or the error."""
    try:
        row, _created = run()
    except TwinError as exc:
        return _failed_task(exc)
    return _succeeded_task(kind, row, url)


def _failed_task(exc: TwinError) -> dict[str, Any]:
    return {
        "progress": "failed",
        "status": exc.status,
        "result": error_body(exc.status, exc.code, exc.message, exc.field),
    }


def _succeeded_task(kind: RecordType, row: Any, url: Url) -> dict[str, Any]:
    result: dict[str, Any] = {
        "links": [{"rel": "self", "href": url(f"{RECORD}/{kind.name}/{row.id}")}],
        "id": str(row.id),
    }
    if row.external_id is not None:
        result["externalId"] = row.external_id
    return {"progress": "succeeded", "status": 204, "result": result}


def _job_json(
    job: ErpAsyncJob, tasks: list[dict[str, Any]], url: Url, *, completed: bool
) -> dict[str, Any]:
    href = url(f"{ASYNC}/job/{job.id}")
    if not completed:
        progress = "pending"
    elif all(t["progress"] == "succeeded" for t in tasks):
        progress = "succeeded"
    elif all(t["progress"] == "failed" for t in tasks):
        progress = "failed"
    else:
        progress = "partiallySucceeded"
    out: dict[str, Any] = {
        "links": [{"rel": "self", "href": href}],
        "completed": completed,
        "id": str(job.id),
        "progress": progress,
        "startTime": _stamp(job.start_time),
        "task": {"links": [{"rel": "self", "href": f"{href}/task"}]},
    }
    if completed:
        out["endTime"] = _stamp(job.end_time)
    return out


def _task_json(
    job: ErpAsyncJob,
    task: dict[str, Any],
    url: Url,
    *,
    completed: bool,
    expand: bool,
    stamps: tuple[str, str] | None = None,
) -> dict[str, Any]:
    href = url(f"{ASYNC}/job/{job.id}/task/{task['id']}")
    start, end = stamps or (_stamp(job.start_time), _stamp(job.end_time))
    out: dict[str, Any] = {
        "links": [{"rel": "related", "href": f"{href}/result"}, {"rel": "self", "href": href}],
        "id": str(task["id"]),
        "completed": completed,
        "progress": task["progress"] if completed else "pending",
        "startTime": start,
    }
    if completed:
        out["endTime"] = end
        if expand:
            out["result"] = task["result"]
    return out


def _router(state: TwinState, pending_polls: int) -> APIRouter:
    router = APIRouter()

    # A job's tasks never change once it has run: keep the latest jobs' tasks parsed for their
    # status polls and task reads (the database copy is read only after a restart).
    parsed: dict[tuple[int | None, datetime], list[dict[str, Any]]] = {}

    def keep_tasks(job: ErpAsyncJob, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(parsed) >= 32:
            parsed.pop(next(iter(parsed)))
        parsed[(job.id, job.start_time)] = tasks
        return tasks

    def job_tasks(job: ErpAsyncJob) -> list[dict[str, Any]]:
        found = parsed.get((job.id, job.start_time))
        return found if found is not None else keep_tasks(job, json.loads(job.tasks_json))

    def submit_async(
        request: Request, s: Session, tasks: Callable[[], list[dict[str, Any]]]
    ) -> Response:
        """Run the work as an async job (one transaction with its idempotency key)."""
        url = _Ids(request)
        key = _idempotency_key(request)
        if key is not None:
            seen = s.get(ErpIdempotencyKey, key)
            if seen is not None:
                raise TwinError(
                    400,
                    "IDEMPOTENCY_ERROR",
                    "A request with the same idempotency key is already submitted. See the "
                    '"Location" header for a link to the previously submitted job.',
                    headers={
                        "Location": url(f"{ASYNC}/job/{seen.job_id}"),
                        "Preference-Applied": "respond-async",
                    },
                )
        done = tasks()
        for i, task in enumerate(done, start=1):
            task["id"] = i
        job = ErpAsyncJob(
            method=request.method,
            path=request.url.path,
            pending_polls=pending_polls,
            tasks_json=json.dumps(done),
        )
        s.add(job)
        s.flush()
        if key is not None:
            s.add(ErpIdempotencyKey(key=key, job_id=job.id))
        s.commit()
        keep_tasks(job, done)
        return Response(
            status_code=202,
            headers={
                "Location": url(f"{ASYNC}/job/{job.id}"),
                "Preference-Applied": "respond-async",
            },
        )

    def created(request: Request, kind: RecordType, row: Any) -> Response:
        return Response(
            status_code=204,
            headers={"Location": _Ids(request)(f"{RECORD}/{kind.name}/{row.id}")},
        )

    # -- budget and forecast sub-resources of a job (before the generic routes) -----------

    @router.get(f"{RECORD}/job/{{ident}}/budget", summary="Project budget with its version")
    async def get_budget(ident: str, request: Request) -> JSONResponse:
        with state.session() as s:
            job = _find(s, RECORD_TYPES["job"], ident)
            budget = s.get(ErpJobBudget, job.id) or ErpJobBudget(job_id=job.id)
            return JSONResponse(
                _budget_json(job, budget, _Ids(request)),
                headers={"ETag": f'"{budget.budget_version}"'},
            )

    @router.patch(
        f"{RECORD}/job/{{ident}}/budget",
        summary="Revise the project budget (If-Match: the budgetVersion read)",
    )
    async def patch_budget(ident: str, request: Request) -> Response:
        raw = await _json_body(request)
        body = _validate(BudgetBody, raw)
        assert isinstance(body, BudgetBody)
        with state.session() as s:
            job = _find(s, RECORD_TYPES["job"], ident)
            budget = s.get(ErpJobBudget, job.id)
            if budget is None:
                budget = ErpJobBudget(job_id=job.id, currency=job.currency)
                s.add(budget)
            expected = _expected_version(request, body.budgetVersion)
            if expected != budget.budget_version:
                raise TwinError(
                    412,
                    "RCRD_HAS_BEEN_CHANGED",
                    f"Record has been changed: budgetVersion is {budget.budget_version}, "
                    f"the request expected {expected}.",
                    "budgetVersion",
                )
            if job.status == JOB_STATUS_CLOSED:
                raise TwinError(400, "PROJECT_CLOSED", f"Project {job.id} is closed.", "job")
            budget.amount = _dec(body.amount) or "0"
            if body.currency is not None:
                budget.currency = _currency(body.currency, "currency") or budget.currency
            budget.budget_version += 1
            budget.last_modified = _now()
            s.add(budget)
            s.commit()
            return Response(
                status_code=204,
                headers={
                    "ETag": f'"{budget.budget_version}"',
                    "Location": _Ids(request)(f"{RECORD}/job/{job.id}/budget"),
                },
            )

    @router.get(f"{RECORD}/job/{{ident}}/laborForecast/{{period}}", summary="Labor forecast")
    async def get_forecast(ident: str, period: str, request: Request) -> JSONResponse:
        with state.session() as s:
            job = _find(s, RECORD_TYPES["job"], ident)
            forecast = _forecast(s, job.id, period)
            if forecast is None:
                raise TwinError(
                    404, "NONEXISTENT_ID", f"No labor forecast for job {job.id}, {period}.", "id"
                )
            return JSONResponse(_forecast_json(job, forecast, _Ids(request)))

    @router.put(
        f"{RECORD}/job/{{ident}}/laborForecast/{{period}}",
        summary="Create or replace a draft labor forecast",
    )
    async def put_forecast(ident: str, period: str, request: Request) -> Response:
        raw = await _json_body(request)
        body = _validate(ForecastBody, raw)
        assert isinstance(body, ForecastBody)
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", period):
            raise TwinError(400, "INVALID_CONTENT", "period must be YYYY-MM", "period")
        with state.session() as s:
            job = _find(s, RECORD_TYPES["job"], ident)
            forecast = _forecast(s, job.id, period)
            if forecast is None:
                forecast = ErpLaborForecast(job_id=job.id, period_name=period)
            elif forecast.status != "draft":
                raise TwinError(
                    400,
                    f"FORECAST_{forecast.status.upper()}",
                    f"The labor forecast for {period} is {forecast.status}; "
                    "only finance can change it.",
                    "status",
                )
            elif body.version < forecast.version:
                raise TwinError(
                    412,
                    "RCRD_HAS_BEEN_CHANGED",
                    f"Record has been changed: version {forecast.version} is newer than "
                    f"{body.version}.",
                    "version",
                )
            forecast.hours = _dec(body.hours) or "0"
            forecast.labor_cost = _dec(body.laborCost) or "0"
            forecast.currency = _currency(body.currency, "currency") or job.currency
            forecast.status = body.status
            forecast.version = body.version
            forecast.last_modified = _now()
            s.add(forecast)
            s.commit()
            return Response(
                status_code=204,
                headers={
                    "Location": _Ids(request)(f"{RECORD}/job/{job.id}/laborForecast/{period}")
                },
            )

    # -- voiding an invoice -----------------------------------------------------------------

    @router.post(
        f"{RECORD}/invoice/{{ident}}/!transform/void",
        summary="Void an invoice (it stays, Voided, with the reason in its memo)",
    )
    async def void_invoice(ident: str, request: Request) -> Response:
        raw = await _json_body(request) if (await request.body()).strip() else {}
        body = _validate(VoidBody, raw)
        assert isinstance(body, VoidBody)
        with state.session() as s:
            row = _find(s, RECORD_TYPES["invoice"], ident)
            if row.status == INVOICE_PAID:
                raise TwinError(
                    400,
                    "INVALID_TRANSACTION_STATE",
                    f"Invoice {row.id} is paid in full; a paid invoice cannot be voided.",
                    "status",
                )
            if row.status != INVOICE_VOIDED:
                note = f"Voided: {body.memo}" if body.memo else "Voided"
                row.memo = f"{row.memo}\n{note}" if row.memo else note
                row.status = INVOICE_VOIDED
                row.last_modified = _now()
                s.add(row)
                s.commit()
            return created(request, RECORD_TYPES["invoice"], row)

    # -- records ----------------------------------------------------------------------------

    @router.get(f"{RECORD}/{{record_type}}", summary="List records (limit, offset, q)")
    async def list_records(
        record_type: str,
        request: Request,
        limit: int | None = None,
        offset: int | None = None,
        q: str | None = None,
    ) -> JSONResponse:
        kind = _record_type(record_type)
        limit, offset = _paging(limit, offset)
        url = _Ids(request)
        with state.session() as s:
            stmt = select(kind.table.id)
            for condition in _q_conditions(kind, q) if q else []:
                stmt = stmt.where(condition)
            ids = list(s.exec(stmt.order_by(kind.table.id)).all())
        page = ids[offset : offset + limit]
        items = [
            {"links": [{"rel": "self", "href": url(f"{RECORD}/{kind.name}/{i}")}], "id": str(i)}
            for i in page
        ]
        return JSONResponse(_paged(request, items, len(ids), limit, offset))

    @router.post(
        f"{RECORD}/{{record_type}}",
        summary="Create a record (204 + Location); async batch upsert with {'items': [...]}",
    )
    async def create_record(record_type: str, request: Request) -> Response:
        kind = _record_type(record_type)
        raw = await _json_body(request)
        batch = isinstance(raw, dict) and set(raw) == {"items"} and isinstance(raw["items"], list)
        with state.session() as s:
            if _wants_async(request):
                url = _Ids(request)
                if batch:
                    items = raw["items"]
                    if len(items) > MAX_BATCH:
                        raise TwinError(
                            400,
                            "INVALID_CONTENT",
                            f"A batch holds at most {MAX_BATCH} records, got {len(items)}.",
                            "items",
                        )

                    def run_batch() -> list[dict[str, Any]]:
                        return _run_batch(s, kind, items, url)

                    return submit_async(request, s, run_batch)
                return submit_async(
                    request,
                    s,
                    lambda: [_record_task(s, kind, url, lambda: write_record(s, kind, raw))],
                )
            if batch:
                raise TwinError(
                    400, "INVALID_CONTENT", "A batch needs Prefer: respond-async.", "items"
                )
            row, _ = write_record(s, kind, raw)
            s.commit()
            return created(request, kind, row)

    @router.get(f"{RECORD}/{{record_type}}/{{ident}}", summary="Get a record (id or eid:VALUE)")
    async def get_record(record_type: str, ident: str, request: Request) -> JSONResponse:
        kind = _record_type(record_type)
        with state.session() as s:
            row = _find(s, kind, ident)
            return JSONResponse(kind.render(s, row, _Ids(request)))

    @router.patch(f"{RECORD}/{{record_type}}/{{ident}}", summary="Update a record")
    async def patch_record(record_type: str, ident: str, request: Request) -> Response:
        kind = _record_type(record_type)
        raw = await _json_body(request)
        with state.session() as s:
            row = _find(s, kind, ident)
            row, _ = write_record(s, kind, raw, row=row)
            s.commit()
            return created(request, kind, row)

    @router.put(
        f"{RECORD}/{{record_type}}/{{ident}}",
        summary="Upsert by external ID (PUT .../eid:VALUE)",
    )
    async def put_record(record_type: str, ident: str, request: Request) -> Response:
        kind = _record_type(record_type)
        if not ident.startswith("eid:") or len(ident) <= 4:
            raise TwinError(
                400, "INVALID_REQUEST", "PUT (upsert) needs an external ID: .../eid:VALUE", "id"
            )
        raw = await _json_body(request)
        with state.session() as s:
            if _wants_async(request):
                url = _Ids(request)

                def run() -> tuple[Any, bool]:
                    return write_record(s, kind, raw, external_id=ident[4:], upsert=True)

                return submit_async(request, s, lambda: [_record_task(s, kind, url, run)])
            row, _ = write_record(s, kind, raw, external_id=ident[4:], upsert=True)
            s.commit()
            return created(request, kind, row)

    # -- async jobs ---------------------------------------------------------------------------

    def load_job(s: Session, job_id: str) -> ErpAsyncJob:
        job = s.get(ErpAsyncJob, _int_id(job_id)) if _int_id(job_id) else None
        if job is None:
            raise TwinError(404, "NONEXISTENT_ID", f"Async job {job_id} does not exist.", "id")
        return job

    @router.get(f"{ASYNC}/job/{{job_id}}", summary="Async job status")
    async def get_job(job_id: str, request: Request) -> JSONResponse:
        with state.session() as s:
            ident = _int_id(job_id)
            # A poll reads the tasks only when they are not at hand (they are, mostly).
            lazy = [defer(cast(Any, ErpAsyncJob.tasks_json))]
            job = s.get(ErpAsyncJob, ident, options=lazy) if ident is not None else None
            if job is None:
                raise TwinError(404, "NONEXISTENT_ID", f"Async job {job_id} does not exist.", "id")
            completed = job.pending_polls <= 0
            if not completed:
                job.pending_polls -= 1
                s.add(job)
                s.commit()
            return JSONResponse(_job_json(job, job_tasks(job), _Ids(request), completed=completed))

    @router.get(f"{ASYNC}/job/{{job_id}}/task", summary="The job's tasks")
    async def list_tasks(
        job_id: str,
        request: Request,
        limit: int | None = None,
        offset: int | None = None,
        expandSubResources: bool = False,
    ) -> JSONResponse:
        limit, offset = _paging(limit, offset)
        with state.session() as s:
            job = load_job(s, job_id)
        tasks = job_tasks(job)
        completed = job.pending_polls <= 0
        url = _Ids(request)
        stamps = (_stamp(job.start_time), _stamp(job.end_time))
        page = [
            _task_json(job, t, url, completed=completed, expand=expandSubResources, stamps=stamps)
            for t in tasks[offset : offset + limit]
        ]
        if not expandSubResources:
            page = [{"links": t["links"][1:], "id": t["id"]} for t in page]
        return JSONResponse(_paged(request, page, len(tasks), limit, offset))

    def load_task(job: ErpAsyncJob, task_id: str) -> dict[str, Any]:
        tasks = job_tasks(job)
        index = int(task_id) - 1 if task_id.isdigit() else -1
        if not 0 <= index < len(tasks):
            raise TwinError(404, "NONEXISTENT_ID", f"Task {task_id} does not exist.", "id")
        task: dict[str, Any] = tasks[index]
        return task

    @router.get(f"{ASYNC}/job/{{job_id}}/task/{{task_id}}", summary="One task's status")
    async def get_task(job_id: str, task_id: str, request: Request) -> JSONResponse:
        with state.session() as s:
            job = load_job(s, job_id)
        task = load_task(job, task_id)
        completed = job.pending_polls <= 0
        return JSONResponse(_task_json(job, task, _Ids(request), completed=completed, expand=False))

    @router.get(f"{ASYNC}/job/{{job_id}}/task/{{task_id}}/result", summary="One task's result")
    async def get_task_result(job_id: str, task_id: str) -> JSONResponse:
        with state.session() as s:
            job = load_job(s, job_id)
        task = load_task(job, task_id)
        if job.pending_polls > 0:
            raise TwinError(400, "JOB_NOT_COMPLETED", "The job has not completed yet.", "id")
        status = 200 if task["progress"] == "succeeded" else int(task["status"])
        return JSONResponse(task["result"], status_code=status)

    # -- SuiteQL ----------------------------------------------------------------------------

    @router.post("/services/rest/query/v1/suiteql", summary="SuiteQL (a small SELECT subset)")
    async def run_suiteql(
        request: Request, limit: int | None = None, offset: int | None = None
    ) -> JSONResponse:
        limit, offset = _paging(limit, offset)
        raw = await _json_body(request)
        body = _validate(SuiteQLBody, raw)
        assert isinstance(body, SuiteQLBody)
        with state.session() as s:
            rows = suiteql(s, body.q, _Ids(request))
        page = [{"links": []} | r for r in rows[offset : offset + limit]]
        return JSONResponse(_paged(request, page, len(rows), limit, offset))

    @router.get("/services/rest/system/v1/governanceLimits", summary="Concurrency allowance")
    async def governance_limits() -> dict[str, Any]:
        limit = state.faults.quota_concurrency or 15
        return {"accountConcurrencyLimit": limit, "integrationConcurrencyLimit": limit}

    return router


def _batch_external_id(item: Any) -> str | None:
    external_id = item.get("externalId") if isinstance(item, dict) else None
    return external_id if isinstance(external_id, str) and external_id else None


def _run_batch(s: Session, kind: RecordType, items: list[Any], url: Url) -> list[dict[str, Any]]:
    """Upsert each record by its externalId, one task per record, in one transaction: the
    same rules as one write at a time, with lookups memoised and one flush for the batch."""
    s.info[_BATCH] = _Batch()
    event.listen(s, "do_orm_execute", _before_query)
    try:
        _prefetch(s, kind.table, [e for e in map(_batch_external_id, items) if e is not None])
        outcomes: list[Any] = []
        for item in items:
            external_id = _batch_external_id(item)
            if external_id is None:
                outcomes.append(
                    TwinError(
                        400,
                        "USER_ERROR",
                        "Every record of a batch needs an externalId.",
                        "externalId",
                    )
                )
                continue
            try:
                row, _ = write_record(s, kind, item, external_id=external_id, upsert=True)
            except TwinError as exc:
                outcomes.append(exc)
            else:
                outcomes.append(row)
        _write_inserts(s)
        s.flush()
    finally:
        event.remove(s, "do_orm_execute", _before_query)
        s.info.pop(_BATCH, None)
    return [
        _failed_task(o) if isinstance(o, TwinError) else _succeeded_task(kind, o, url)
        for o in outcomes
    ]


def _expected_version(request: Request, in_body: int | None) -> int:
    header = request.headers.get("if-match")
    if header is not None:
        text = header.strip().removeprefix("W/").strip('"')
        if not text.isdigit():
            raise TwinError(412, "RCRD_HAS_BEEN_CHANGED", f"If-Match {header!r} does not match")
        return int(text)
    if in_body is not None:
        return in_body
    raise TwinError(
        428,
        "PRECONDITION_REQUIRED",
        "A budget revision needs If-Match (or budgetVersion) with the version read.",
        "budgetVersion",
    )


def _budget_json(job: ErpJob, budget: ErpJobBudget, url: Url) -> dict[str, Any]:
    return {
        "links": [{"rel": "self", "href": url(f"{RECORD}/job/{job.id}/budget")}],
        "job": _ref(job.id, job.company_name),
        "amount": _num(budget.amount),
        "currency": _ref(budget.currency, budget.currency),
        "budgetVersion": budget.budget_version,
        "lastModifiedDate": _stamp(budget.last_modified),
    }


def _forecast(s: Session, job_id: int | None, period: str) -> ErpLaborForecast | None:
    return s.exec(
        select(ErpLaborForecast)
        .where(ErpLaborForecast.job_id == job_id)
        .where(ErpLaborForecast.period_name == period)
    ).first()


def _forecast_json(job: ErpJob, row: ErpLaborForecast, url: Url) -> dict[str, Any]:
    return {
        "links": [
            {"rel": "self", "href": url(f"{RECORD}/job/{job.id}/laborForecast/{row.period_name}")}
        ],
        "job": _ref(job.id, job.company_name),
        "period": row.period_name,
        "hours": _num(row.hours),
        "laborCost": _num(row.labor_cost),
        "currency": _ref(row.currency, row.currency),
        "status": row.status,
        "version": row.version,
        "lastModifiedDate": _stamp(row.last_modified),
    }


# --------------------------------------------------------------------------- app and seed


def create_app(
    db_path: Path | None = None,
    *,
    webhook_url: str | None = None,
    webhook_secret: str = DEV_WEBHOOK_SECRET,
    async_pending_polls: int = 1,
) -> FastAPI:
    """The ERP twin. NetSuite pushes nothing to pssync, so the webhook arguments are accepted
    for a uniform signature and unused. An async job reports `pending` on its first
    `async_pending_polls` status polls."""
    del webhook_url, webhook_secret
    state = TwinState(system=SYSTEM, engine=make_twin_engine(db_path, TABLES))
    # The lost-response fault (`/_admin/erp/lost-responses`, also `/_admin/lost-responses`)
    # lives in the shared frame now; `app.state.lost_responses` is its control, as before.
    return create_twin_app(
        state=state,
        title="ERP twin (NetSuite REST web services)",
        description=__doc__ or "",
        router=_router(state, async_pending_polls),
        error_body=error_body,
    )


def _state(app_or_state: FastAPI | TwinState) -> TwinState:
    if isinstance(app_or_state, TwinState):
        return app_or_state
    state: TwinState = app_or_state.state.twin
    return state


def load_firm(app_or_state: FastAPI | TwinState, firm: Firm) -> None:
    """Departments from the firm's cost centers (externalId = cost-center code), accounting
    periods from its periods, customers from its customers (externalId = CRM account id),
    employees with their labor cost from its workers (externalId = employee ID). Loading
    twice changes nothing."""
    state = _state(app_or_state)
    with state.session() as s:
        departments: dict[str, int] = {}
        for cc in firm.cost_centers:
            dept = _by_eid(s, ErpDepartment, cc.id)
            if dept is None:
                dept = ErpDepartment(external_id=cc.id, name=cc.name, is_inactive=not cc.active)
                s.add(dept)
                s.flush()
            departments[cc.id] = dept.id
        for period in firm.periods:
            if _by_eid(s, ErpAccountingPeriod, period.period) is None:
                s.add(
                    ErpAccountingPeriod(
                        external_id=period.period,
                        period_name=period.period,
                        start_date=period.start,
                        end_date=period.end,
                        closed=period.closed,
                    )
                )
        for customer in firm.customers:
            if _by_eid(s, ErpCustomer, customer.id) is None:
                s.add(
                    ErpCustomer(
                        external_id=customer.id,
                        company_name=customer.name,
                        currency=customer.currency,
                        credit_hold="ON" if customer.credit_hold else "AUTO",
                    )
                )
        for worker in firm.workers:
            if _by_eid(s, ErpEmployee, worker.id) is None:
                s.add(
                    ErpEmployee(
                        external_id=worker.id,
                        first_name=worker.first_name,
                        last_name=worker.last_name,
                        email=worker.email,
                        labor_cost=_dec(worker.cost_rate) or "0",
                        currency=worker.currency,
                        department_id=departments.get(worker.cost_center),
                        is_inactive=worker.status == "terminated",
                    )
                )
        s.commit()
