"""NetSuite REST <-> canonical: record paths and field names, request bodies, records read
back, error bodies, exact-decimal JSON and the batch idempotency key. Vendor names live here
(and in `connectors.erp.netsuite`)."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

import httpx

from connectors._http import VendorError
from connectors.erp.port import SYSTEM, ErpProject, _month
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
    InvoiceStatus,
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
ENTERPRISE_ID_FIELD = "custentity_pssync_enterprise_id"

_KEY_NAMESPACE = uuid.UUID("6f1d2c8e-5b7a-4e43-9d0c-2a8f3b1e7c55")
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


# --------------------------------------------------------------------------- keys and errors


def batch_idempotency_key(keys: Iterable[str], *, scope: str = "timebill") -> str:
    """The `X-NetSuite-Idempotency-Key` of a batch: a UUID from its records' business keys."""
    return str(uuid.uuid5(_KEY_NAMESPACE, scope + "\n" + "\n".join(sorted(keys))))


def parse_netsuite_error(response: httpx.Response) -> VendorError:
    """NetSuite's error body: `o:errorDetails[0]` with `o:errorCode` and `o:errorPath`."""
    body = response.json()
    details = body.get("o:errorDetails") or [{}]
    first = details[0] if isinstance(details[0], dict) else {}
    return VendorError(
        code=str(first.get("o:errorCode") or f"HTTP_{response.status_code}"),
        message=str(first.get("detail") or body.get("title") or response.reason_phrase),
        field=first.get("o:errorPath"),
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
    if status == 404:
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
    return Money(Decimal(str(amount)), currency)


def _ref_id(value: Any) -> str | None:
    if isinstance(value, dict):
        ident = value.get("id")
        return str(ident) if ident is not None else None
    return None


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


def project_from_netsuite(
    body: Mapping[str, Any], *, budget: ErpBudget, cost_center: str | None
) -> ErpProject:
    status_id = _ref_id(body.get("entityStatus"))
    return ErpProject(
        erp_id=str(body["id"]),
        external_id=body.get("externalId"),
        enterprise_id=body.get(ENTERPRISE_ID_FIELD),
        name=body.get("companyName", ""),
        status=ProjectStatus.CLOSED if status_id == JOB_STATUS_CLOSED else ProjectStatus.ACTIVE,
        customer_erp_id=_ref_id(body.get("customer")) or "",
        cost_center=cost_center,
        currency=_ref_id(body.get("currency")) or budget.amount.currency,
        budget=budget.amount,
        budget_version=budget.version,
    )


# --------------------------------------------------------------------------- budget, forecast


def budget_from_netsuite(body: Mapping[str, Any], project: str) -> ErpBudget:
    return ErpBudget(
        project_erp_id=_ref_id(body.get("job")) or project,
        amount=_money(body.get("amount", 0), _ref_id(body.get("currency")) or "USD"),
        version=int(body["budgetVersion"]),
    )


def forecast_from_netsuite(body: Mapping[str, Any], project: str) -> Forecast:
    return Forecast(
        source_system=System.ERP,
        project_id=project,
        period=body["period"],
        hours=Decimal(str(body["hours"])),
        labor_cost=_money(body["laborCost"], _ref_id(body.get("currency")) or "USD"),
        version=int(body["version"]),
        status=ForecastStatus(body["status"]),
    )


def forecast_body(forecast: Forecast) -> dict[str, Any]:
    return {
        "hours": forecast.hours,
        "laborCost": forecast.labor_cost.amount,
        "currency": {"id": forecast.labor_cost.currency},
        "status": str(forecast.status),
        "version": forecast.version,
    }


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


def posting_from_timebill(
    row: Mapping[str, Any],
    *,
    job_id: str,
    keys: Mapping[str, str],
    departments: Mapping[str, str],
) -> CostPosting:
    """A SuiteQL `timebill` row as a canonical posting (`keys`: timebill id -> its key)."""
    currency = str(row.get("currency") or "USD")
    tran_date = date.fromisoformat(str(row["trandate"]))
    return CostPosting(
        source_system=System.ERP,
        source_version=row.get("lastmodifieddate"),
        idempotency_key=keys[str(row["id"])],
        kind=PostingKind(row.get("custcol_pssync_kind") or "time"),
        project_id=job_id,
        worker_id=row.get("employee"),
        source_entry_id=str(row.get("custcol_pssync_source_entry") or row["id"]),
        posting_date=tran_date,
        period=_month(tran_date),
        hours=Decimal(str(row.get("hours") or 0)),
        cost_amount=_money(row.get("costamount") or 0, currency),
        bill_amount=(_money(row["billamount"], currency) if row.get("billamount") else None),
        cost_center=departments.get(str(row["department"]), str(row["department"])),
        reverses=keys.get(str(row["reverses"])) if row.get("reverses") else None,
    )


# --------------------------------------------------------------------------- invoices


_INVOICE_STATUSES = {
    "Open": InvoiceStatus.OPEN,
    "Paid In Full": InvoiceStatus.PAID,
    "Voided": InvoiceStatus.VOID,
}
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


def invoice_from_netsuite(body: Mapping[str, Any]) -> Invoice:
    currency = _ref_id(body.get("currency")) or "USD"
    customer = _ref_id(body.get("entity")) or ""
    return Invoice(
        source_system=System.ERP,
        source_version=body.get("lastModifiedDate"),
        external_id=str(body["id"]),
        idempotency_key=body.get("externalId") or str(body["id"]),
        project_id=_ref_id(body.get("job")) or customer,
        customer_id=customer,
        milestone_code=body.get("custbody_pssync_milestone"),
        period=_memo_period(body.get("memo")),
        invoice_date=date.fromisoformat(body["tranDate"]),
        lines=[
            InvoiceLine(
                description=line.get("description") or "",
                quantity=Decimal(str(line.get("quantity", 1))),
                amount=_money(line["amount"], currency),
            )
            for line in body.get("item", {}).get("items", [])
        ],
        status=_INVOICE_STATUSES.get(body.get("status", ""), InvoiceStatus.DRAFT),
    )
