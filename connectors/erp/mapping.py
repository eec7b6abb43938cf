"""NetSuite REST <-> canonical: record paths and field names, request bodies, records read
back, error bodies, exact-decimal JSON and the batch idempotency key. Vendor names live here
(and in `connectors.erp.netsuite`)."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import httpx

from connectors._http import VendorError
from connectors._vendor_errors import unmappable
from connectors.erp.errors import ERROR_CODES
from connectors.erp.port import SYSTEM, CostCenterStatus, ErpProject, _month
from connectors.erp.values import (
    DateFormat,
    currency_code,
    flag,
    invoice_status,
    number,
    record_id,
    ref_id,
    ref_name,
)
from contracts.errors import ERROR_TYPES, BusinessRuleViolation, ErrorInfo, ErrorKind
from contracts.money import Money
from contracts.systems import System
from contracts.v1.change_orders import ErpBudget
from contracts.v1.models import (
    CostPosting,
    Customer,
    Forecast,
    ForecastStatus,
    Invoice,
    InvoiceLine,
    PostingKind,
    Project,
    ProjectStatus,
)

RECORD = "/services/rest/record/v1"
SUITEQL = "/services/rest/query/v1/suiteql"
IDEMPOTENCY_HEADER = "X-NetSuite-Idempotency-Key"
MAX_BATCH = 200
"""Records per async job (SOAP's asyncAddList allows 200 too)."""

JOB_STATUS_CLOSED = "1"
JOB_STATUS_CLOSED_NAME = "Closed"
ENTERPRISE_ID_FIELD = "custentity_pssync_enterprise_id"

_KEY_NAMESPACE = uuid.UUID("6f1d2c8e-5b7a-4e43-9d0c-2a8f3b1e7c55")
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


# --------------------------------------------------------------------------- keys and errors


def batch_idempotency_key(keys: Iterable[str], *, scope: str = "timebill") -> str:
    """The `X-NetSuite-Idempotency-Key` of a batch: a UUID from its records' business keys."""
    return str(uuid.uuid5(_KEY_NAMESPACE, scope + "\n" + "\n".join(sorted(keys))))


def parse_netsuite_error(response: httpx.Response) -> VendorError:
    """NetSuite's error body: `o:errorDetails[]` with `o:errorCode`, `detail` and
    `o:errorPath`, beside a top-level `o:errorCode` (e.g. `USER_ERROR` around a detail's
    `CONCURRENCY_LIMIT_EXCEEDED`). The first detail's code is the error's code; the other
    codes are kept for the error table."""
    body = response.json()
    if not isinstance(body, dict):
        return VendorError(code=f"HTTP_{response.status_code}", message=str(body)[:500])
    details = [d for d in body.get("o:errorDetails") or [] if isinstance(d, dict)]
    first = details[0] if details else {}
    codes = [str(d["o:errorCode"]) for d in details if d.get("o:errorCode")]
    if body.get("o:errorCode"):
        codes.append(str(body["o:errorCode"]))
    return VendorError(
        code=codes[0] if codes else f"HTTP_{response.status_code}",
        message=str(first.get("detail") or body.get("title") or response.reason_phrase),
        field=first.get("o:errorPath"),
        more_codes=tuple(codes[1:]),
    )


def _error_code(response: httpx.Response) -> str | None:
    try:
        return parse_netsuite_error(response).code
    except ValueError:  # not JSON
        return None


def _error_info(status: int, body: Any) -> ErrorInfo:
    """A per-record error from an async task's result."""
    details = body.get("o:errorDetails") if isinstance(body, dict) else None
    first = details[0] if details else {}
    code = str(first.get("o:errorCode") or f"HTTP_{status}")
    detail = str(first.get("detail") or "")
    rule = ERROR_CODES.get(code)
    if rule is not None:
        kind = rule.kind
    elif status == 404:
        kind = ErrorKind.NOT_FOUND
    elif status in (409, 412):
        kind = ErrorKind.CONFLICT
    elif status == 429:
        kind = ErrorKind.RATE_LIMITED
    elif status >= 500:
        kind = ErrorKind.TRANSIENT
    elif status in (401, 403):
        kind = ErrorKind.AUTH
    else:
        kind = ErrorKind.BUSINESS_RULE
    return ErrorInfo(
        kind=kind,
        message=f"{SYSTEM} {status} {code}: {detail}",
        system=SYSTEM,
        code=code,
        field=first.get("o:errorPath"),
        detail=detail,
    )


def _raise_info(info: ErrorInfo) -> None:
    if info.kind is ErrorKind.BUSINESS_RULE:
        raise BusinessRuleViolation(
            info.code or "ERROR", info.detail or info.message, field=info.field, system=SYSTEM
        )
    raise ERROR_TYPES[info.kind](info.message, system=SYSTEM)


# --------------------------------------------------------------------------- JSON and values


# Decimals leave `json.dumps` as marked strings and become bare numbers after it: the C encoder
# does the rest at full speed (a batch of 200 timebills is ~3,000 values). The mark starts with
# a NUL and carries a random nonce, so no string a caller sends can be taken for one.
_DECIMAL_MARK = "\x00" + secrets.token_hex(8) + ":"
_MARKED_DECIMAL = re.compile('"' + re.escape(json.dumps(_DECIMAL_MARK)[1:-1]) + r'(-?[0-9.]+)"')


def _mark_decimal(value: Any) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        text = format(value, "f")
        return _DECIMAL_MARK + (text if text not in ("-0", "") else "0")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _encode(value: Any) -> str:
    """JSON with Decimals written as exact numbers (never through float)."""
    return _MARKED_DECIMAL.sub(r"\1", json.dumps(value, default=_mark_decimal))


def _decode(response: httpx.Response) -> Any:
    """Response JSON with numbers as Decimals (money never passes through float)."""
    return json.loads(response.content, parse_float=Decimal) if response.content else {}


def _tail_id(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


def _money(amount: Any, currency: str) -> Money:
    return Money(number(amount), currency)


def _ref_id(value: Any) -> str | None:
    """The internal id of a reference (`{"id", "refName", "links"}`) or of a bare id."""
    return ref_id(value)


_ISO_DATES = DateFormat()
_NO_CURRENCIES: Mapping[str, str] = {}


# --------------------------------------------------------------------------- customers, projects


def customer_body(customer: Customer, *, enterprise_id: str) -> dict[str, Any]:
    return {
        "companyName": customer.name,
        "currency": {"id": customer.currency},
        ENTERPRISE_ID_FIELD: enterprise_id,
    }


def project_body(
    project: Project,
    *,
    enterprise_id: str,
    customer: dict[str, str],
    department: dict[str, str],
) -> dict[str, Any]:
    """The `job` record of a financial project (`customer`, `department`: references)."""
    body: dict[str, Any] = {
        "entityId": enterprise_id,
        "companyName": project.name,
        "customer": customer,
        "startDate": project.start_date.isoformat(),
        "currency": {"id": project.currency},
        "department": department,
        "estimatedRevenue": project.contract_value.amount,
        ENTERPRISE_ID_FIELD: enterprise_id,
    }
    if project.end_date is not None:
        body["projectedEndDate"] = project.end_date.isoformat()
    if project.practice is not None:
        body["custentity_pssync_practice"] = project.practice
    return body


@unmappable(SYSTEM, "job")
def project_from_netsuite(
    body: Mapping[str, Any],
    *,
    budget: ErpBudget,
    cost_center: str | None,
    currencies: Mapping[str, str] = _NO_CURRENCIES,
) -> ErpProject:
    """A `job` record GET (references as `{"id", "refName", "links"}`; `currencies`: internal
    currency id -> ISO code) as the project the ERP holds."""
    closed = job_is_closed(body)
    return ErpProject(
        erp_id=record_id(body),
        external_id=body.get("externalId"),
        enterprise_id=body.get(ENTERPRISE_ID_FIELD),
        name=body.get("companyName", ""),
        status=ProjectStatus.CLOSED if closed else ProjectStatus.ACTIVE,
        customer_erp_id=_ref_id(body.get("customer")) or "",
        cost_center=cost_center,
        currency=currency_code(body.get("currency"), currencies) or budget.amount.currency,
        budget=budget.amount,
        budget_version=budget.version,
    )


# --------------------------------------------------------------------------- budget, forecast
#
# NetSuite has no REST object for a project's budget or labor forecast; pssync keeps them in two
# custom record types the tenant creates (docs/vendors/netsuite.md, "Custom records"). The record
# service serves them like any record under their script IDs
# (`/services/rest/record/v1/customrecord_pssync_budget/{id | eid:X}`, upsert by `PUT
# .../eid:X`), with custom fields `custrecord_*` and references as `{"id": ...}`.

BUDGET_RECORD = "customrecord_pssync_budget"
BUDGET_PROJECT = "custrecord_pssync_budget_project"
BUDGET_AMOUNT = "custrecord_pssync_budget_amount"
BUDGET_CURRENCY = "custrecord_pssync_budget_currency"
BUDGET_VERSION = "custrecord_pssync_budget_version"

FORECAST_RECORD = "customrecord_pssync_labor_forecast"
FORECAST_PROJECT = "custrecord_pssync_lf_project"
FORECAST_PERIOD = "custrecord_pssync_lf_period"
FORECAST_HOURS = "custrecord_pssync_lf_hours"
FORECAST_LABOR_COST = "custrecord_pssync_lf_labor_cost"
FORECAST_CURRENCY = "custrecord_pssync_lf_currency"
FORECAST_STATUS = "custrecord_pssync_lf_status"
FORECAST_VERSION = "custrecord_pssync_lf_version"


def budget_external_id(job_id: str) -> str:
    """The budget record of a project (one per `job`, by the job's internal id)."""
    return f"pssync-budget-{job_id}"


def forecast_external_id(job_id: str, period: str) -> str:
    """The labor forecast record of a project for one month (`YYYY-MM`)."""
    return f"pssync-forecast-{job_id}-{period}"


def job_is_closed(body: Mapping[str, Any]) -> bool:
    """A `job` record GET is closed when its `entityStatus` is id `1` or named `Closed`."""
    status = body.get("entityStatus")
    return ref_id(status) == JOB_STATUS_CLOSED or ref_name(status) == JOB_STATUS_CLOSED_NAME


def _version(value: Any) -> int:
    """An Integer Number field; NetSuite leaves an empty field out, which reads as 0."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise TypeError(f"not a version: {value!r}")
    return int(value)


def budget_body(job_id: str, amount: Money, *, version: int) -> dict[str, Any]:
    """A `customrecord_pssync_budget` upsert body."""
    return {
        "name": f"pssync budget, project {job_id}",
        BUDGET_PROJECT: {"id": job_id},
        BUDGET_AMOUNT: amount.amount,
        BUDGET_CURRENCY: {"id": amount.currency},
        BUDGET_VERSION: version,
    }


@unmappable(SYSTEM, BUDGET_RECORD)
def budget_from_netsuite(
    body: Mapping[str, Any], job_id: str, *, currencies: Mapping[str, str] = _NO_CURRENCIES
) -> ErpBudget:
    """A `customrecord_pssync_budget` GET (`job_id`: the project's internal id)."""
    currency = currency_code(body.get(BUDGET_CURRENCY), currencies) or "USD"
    return ErpBudget(
        project_erp_id=_ref_id(body.get(BUDGET_PROJECT)) or job_id,
        amount=_money(body.get(BUDGET_AMOUNT, 0), currency),
        version=_version(body.get(BUDGET_VERSION)),
    )


@unmappable(SYSTEM, "job")
def no_budget(
    job: Mapping[str, Any], job_id: str, *, currencies: Mapping[str, str] = _NO_CURRENCIES
) -> ErpBudget:
    """The budget of a project that has no budget record yet: none, version 0, in the job's
    currency (what the first revision, at provisioning, expects)."""
    currency = currency_code(job.get("currency"), currencies) or "USD"
    return ErpBudget(project_erp_id=job_id, amount=Money.zero(currency), version=0)


def forecast_status(value: Any) -> ForecastStatus:
    """The status field: text (`draft`, `approved`, `locked`, any case) or, should a tenant
    make it a list, a reference named so; empty reads as draft."""
    if value is None:
        return ForecastStatus.DRAFT
    text = (ref_name(value) or ref_id(value)) if isinstance(value, Mapping) else str(value)
    return ForecastStatus(str(text or "").strip().lower())


def forecast_body(forecast: Forecast, *, job_id: str) -> dict[str, Any]:
    """A `customrecord_pssync_labor_forecast` upsert body."""
    return {
        "name": f"pssync labor forecast, project {job_id}, {forecast.period}",
        FORECAST_PROJECT: {"id": job_id},
        FORECAST_PERIOD: forecast.period,
        FORECAST_HOURS: forecast.hours,
        FORECAST_LABOR_COST: forecast.labor_cost.amount,
        FORECAST_CURRENCY: {"id": forecast.labor_cost.currency},
        FORECAST_STATUS: str(forecast.status),
        FORECAST_VERSION: forecast.version,
    }


@unmappable(SYSTEM, FORECAST_RECORD)
def forecast_from_netsuite(
    body: Mapping[str, Any], project: str, *, currencies: Mapping[str, str] = _NO_CURRENCIES
) -> Forecast:
    """A `customrecord_pssync_labor_forecast` GET, for `project` as the caller named it."""
    currency = currency_code(body.get(FORECAST_CURRENCY), currencies) or "USD"
    return Forecast(
        source_system=System.ERP,
        project_id=project,
        period=body[FORECAST_PERIOD],
        hours=number(body.get(FORECAST_HOURS, 0)),
        labor_cost=_money(body.get(FORECAST_LABOR_COST, 0), currency),
        version=_version(body.get(FORECAST_VERSION)),
        status=forecast_status(body.get(FORECAST_STATUS)),
    )


# --------------------------------------------------------------------------- cost postings


def timebill_body(
    posting: CostPosting,
    *,
    customer: dict[str, str],
    department: dict[str, str],
    reverses: dict[str, str] | None,
) -> dict[str, Any]:
    """The `timebill` record of a posting (`customer`, `department`, `reverses`: references)."""
    body: dict[str, Any] = {
        "externalId": posting.idempotency_key,
        "customer": customer,
        "tranDate": posting.posting_date.isoformat(),
        "hours": posting.hours,
        "costAmount": posting.cost_amount.amount,
        "currency": {"id": posting.cost_amount.currency},
        "department": department,
        "custcol_pssync_kind": str(posting.kind),
        "custcol_pssync_source_entry": posting.source_entry_id,
        "isBillable": posting.bill_amount is not None,
    }
    if posting.worker_id is not None:
        body["employee"] = {"externalId": posting.worker_id}
    if posting.bill_amount is not None:
        body["billAmount"] = posting.bill_amount.amount
    if posting.hours:
        body["rate"] = (posting.cost_amount.amount / posting.hours).quantize(Decimal("0.01"))
    if reverses is not None:
        body["reverses"] = reverses
    return body


@unmappable(SYSTEM, "timebill")
def posting_from_timebill(
    row: Mapping[str, Any],
    *,
    job_id: str,
    keys: Mapping[str, str],
    departments: Mapping[str, str],
    date_format: DateFormat = _ISO_DATES,
    currencies: Mapping[str, str] = _NO_CURRENCIES,
) -> CostPosting:
    """A SuiteQL `timebill` row as a canonical posting (`keys`: timebill id -> its key).

    SuiteQL answers every value as text, references as bare internal ids and dates in the
    account's date format (`date_format`; ISO is read too)."""
    currency = currency_code(row.get("currency"), currencies) or "USD"
    tran_date = date_format.parse(row["trandate"])
    department = ref_id(row["department"]) or ""
    reverses = ref_id(row.get("reverses"))
    return CostPosting(
        source_system=System.ERP,
        source_version=row.get("lastmodifieddate"),
        idempotency_key=keys[str(row["id"])],
        kind=PostingKind(row.get("custcol_pssync_kind") or "time"),
        project_id=job_id,
        worker_id=ref_id(row.get("employee")),
        source_entry_id=str(row.get("custcol_pssync_source_entry") or row["id"]),
        posting_date=tran_date,
        period=_month(tran_date),
        hours=number(row.get("hours") or 0),
        cost_amount=_money(row.get("costamount") or 0, currency),
        bill_amount=(_money(row["billamount"], currency) if row.get("billamount") else None),
        cost_center=departments.get(department, department),
        reverses=keys.get(reverses) if reverses else None,
    )


@unmappable(SYSTEM, "timebill")
def timebill_keys(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """SuiteQL `timebill` rows (`id`, `externalid`): internal id -> the posting's key."""
    return {str(r["id"]): str(r.get("externalid") or f"timebill-{r['id']}") for r in rows}


@unmappable(SYSTEM, "department")
def department_codes(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """SuiteQL `department` rows (`id`, `externalid`): internal id -> cost center code."""
    return {str(r["id"]): str(r.get("externalid") or r["id"]) for r in rows}


@unmappable(SYSTEM, "department")
def cost_center_from_department(body: Mapping[str, Any]) -> CostCenterStatus:
    """A `department` record GET: inactive or active (`isInactive`, a checkbox)."""
    inactive = flag(body.get("isInactive", False))
    return CostCenterStatus.INACTIVE if inactive else CostCenterStatus.ACTIVE


@unmappable(SYSTEM, "employee")
def cost_rate_from_employee(
    body: Mapping[str, Any], *, currencies: Mapping[str, str] = _NO_CURRENCIES
) -> Money | None:
    """An `employee` record GET: its `laborCost` in its currency, or None when it has none."""
    if body.get("laborCost") is None:
        return None
    return _money(body["laborCost"], currency_code(body.get("currency"), currencies) or "USD")


_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def period_names(period: str) -> list[str]:
    """The names an accounting period `YYYY-MM` may have: pssync's own, and NetSuite's
    default (`Jan 2024`)."""
    year, month = period.split("-")
    return [period, f"{_MONTH_NAMES[int(month) - 1]} {year}"]


@unmappable(SYSTEM, "accountingPeriod")
def period_is_open(rows: Iterable[Mapping[str, Any]]) -> bool:
    """SuiteQL `accountingperiod` rows of one period: open when one says it is not closed
    and is not locked (`closed`, `alllocked`: `T`/`F`)."""
    return any(
        r.get("closed") is not None and not flag(r["closed"]) and not flag(r.get("alllocked", "F"))
        for r in rows
    )


# --------------------------------------------------------------------------- invoices


_PERIOD_MEMO = "period "
"""The billing period of an invoice travels in its memo's first line (`period YYYY-MM`)."""


def _memo_period(memo: str | None) -> str | None:
    first = (memo or "").split("\n", 1)[0]
    period = first.removeprefix(_PERIOD_MEMO)
    return period if first.startswith(_PERIOD_MEMO) and _PERIOD.match(period) else None


def invoice_body(
    invoice: Invoice, *, currency: str, entity: dict[str, str], job: dict[str, str]
) -> dict[str, Any]:
    """The `invoice` record (`entity`, `job`: references; `currency`: of its total)."""
    # The period travels in the memo (`get_invoice` reads it back); the entries behind a
    # line (`InvoiceLine.source_entry_ids`) stay with pssync: the invoice has no field.
    body: dict[str, Any] = {
        "externalId": invoice.idempotency_key,
        "entity": entity,
        "job": job,
        "tranDate": invoice.invoice_date.isoformat(),
        "currency": {"id": currency},
        "item": {
            "items": [
                {
                    "description": line.description,
                    "quantity": line.quantity,
                    "amount": line.amount.amount,
                }
                for line in invoice.lines
            ]
        },
    }
    if invoice.milestone_code is not None:
        body["custbody_pssync_milestone"] = invoice.milestone_code
    if invoice.period is not None:
        body["memo"] = f"{_PERIOD_MEMO}{invoice.period}"
    return body


def _sublist(body: Mapping[str, Any], name: str) -> list[Any]:
    """The lines of an expanded sublist (`{"links": [...], "items": [...]}`); a sublist that
    came as links only (asked without `expandSubResources=true`) cannot be read."""
    sublist = body.get(name)
    if sublist is None:
        return []
    if "items" not in sublist:
        raise ValueError(f"{name}: the sublist came as links only (not expanded)")
    items: list[Any] = sublist["items"]
    return items


@unmappable(SYSTEM, "invoice")
def invoice_from_netsuite(
    body: Mapping[str, Any],
    *,
    date_format: DateFormat = _ISO_DATES,
    currencies: Mapping[str, str] = _NO_CURRENCIES,
) -> Invoice:
    """An `invoice` record GET with its `item` sublist expanded. `status` is a name, an id or
    an `{"id", "refName"}` reference; `currencies`: internal currency id -> ISO code."""
    currency = currency_code(body.get("currency"), currencies) or "USD"
    customer = _ref_id(body.get("entity")) or ""
    erp_id = record_id(body)
    return Invoice(
        source_system=System.ERP,
        source_version=body.get("lastModifiedDate"),
        external_id=erp_id,
        idempotency_key=body.get("externalId") or erp_id,
        project_id=_ref_id(body.get("job")) or customer,
        customer_id=customer,
        milestone_code=body.get("custbody_pssync_milestone"),
        period=_memo_period(body.get("memo")),
        invoice_date=date_format.parse(body["tranDate"]),
        lines=[
            InvoiceLine(
                description=line.get("description") or "",
                quantity=number(line.get("quantity", 1)),
                amount=_money(line["amount"], currency),
            )
            for line in _sublist(body, "item")
        ],
        status=invoice_status(body.get("status")),
    )
