"""ERP connector: NetSuite REST web services behind a port that speaks canonical types.

    erp = NetSuiteErp(settings.erp)
    results = await erp.post_time(postings)      # one PostingResult per posting, never raises
    failed = [r for r in results if not r.ok]    # for a business refusal of one record
    await erp.aclose()

`ErpPort` is what activities depend on; `NetSuiteErp` implements it over HTTP (on `VendorHttp`:
OAuth2, retries honouring Retry-After, the per-tenant concurrency limit), `FakeErp` in memory
with the same business rules for unit and workflow tests.

How duplicates are ruled out, whatever fails and however often it is retried:

- customers and projects are upserted by external ID (`PUT .../eid:VALUE`);
- cost postings go in async batches (at most 200 per job). Each record's `externalId` is the
  posting's idempotency key and the twin/NetSuite upserts each record by it, so a retried
  record can never make a second timebill. The batch carries `X-NetSuite-Idempotency-Key`
  derived from the sorted keys of its records; a repeated batch is refused with
  `IDEMPOTENCY_ERROR` and a `Location` of the earlier job, whose results are returned. Records
  that failed in that earlier job are submitted again under a key derived from it, so a batch
  retried after its cause was fixed (a period reopened) goes through, still deterministically;
- invoices likewise, keyed by the invoice's idempotency key; voiding one (the compensation)
  keeps it in the ledger under that key, so a new attempt needs a new key.

Identifiers: where the port takes a project or customer, a string of digits is a NetSuite
internal id and anything else (or `eid:VALUE`) an external ID: the enterprise project ID for
projects, the CRM account id for customers, the code for cost centers. Postings read back carry
the ERP's internal project id.

Vendor field names stay in this module. No Temporal imports.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict

from connectors._http import VendorError, VendorHttp, classify
from contracts.errors import (
    ERROR_TYPES,
    BusinessRuleViolation,
    ErrorInfo,
    ErrorKind,
    NotFoundError,
    StaleVersionError,
    TransientError,
)
from contracts.money import Money
from contracts.settings import SystemSettings
from contracts.systems import System
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

SYSTEM = str(System.ERP)
RECORD = "/services/rest/record/v1"
SUITEQL = "/services/rest/query/v1/suiteql"
IDEMPOTENCY_HEADER = "X-NetSuite-Idempotency-Key"
MAX_BATCH = 200
"""Records per async job (SOAP's asyncAddList allows 200 too)."""

JOB_STATUS_CLOSED = "1"
ENTERPRISE_ID_FIELD = "custentity_pssync_enterprise_id"

_KEY_NAMESPACE = uuid.UUID("6f1d2c8e-5b7a-4e43-9d0c-2a8f3b1e7c55")
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_MAX_RESUBMITS = 10


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


class ErpBudget(BaseModel):
    model_config = ConfigDict(frozen=True)

    project_erp_id: str
    amount: Money
    version: int


class PostedTotal(BaseModel):
    """Posted labor and cost of one project in one period (for reconciliation)."""

    model_config = ConfigDict(frozen=True)

    project_erp_id: str
    period: str
    hours: Decimal
    cost_amount: Money
    postings: int


class ErpPort(Protocol):
    """What pssync needs from the ERP, in canonical types."""

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

    async def post_time(self, postings: Sequence[CostPosting]) -> list[PostingResult]:
        """Post cost postings in batches; one result per posting, in order. A business refusal
        of one record is its result's `error`, not an exception."""
        ...

    async def post_time_one(self, posting: CostPosting) -> PostingResult: ...

    async def reverse_posting(
        self,
        original: CostPosting,
        *,
        idempotency_key: str | None = None,
        posting_date: date | None = None,
    ) -> PostingResult:
        """Post the reversal of `original` (negated hours and amounts, `reverses` set)."""
        ...

    async def list_postings(self, project: str) -> list[CostPosting]: ...

    async def posted_totals(self, project: str) -> list[PostedTotal]: ...

    async def cost_center_status(self, code: str) -> CostCenterStatus: ...

    async def period_open(self, period: str) -> bool: ...

    async def get_cost_rate(self, worker_id: str) -> Money | None:
        """The worker's labor cost per hour as the ERP holds it (None when unknown)."""
        ...

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

    async def get_budget(self, project: str) -> ErpBudget: ...

    async def revise_budget(
        self, project: str, *, amount: Money, expected_version: int
    ) -> ErpBudget:
        """Set the budget if it is still at `expected_version`, else `StaleVersionError`."""
        ...

    async def get_forecast(self, project: str, period: str) -> Forecast | None: ...

    async def put_forecast(self, forecast: Forecast, *, project: str | None = None) -> Forecast:
        """Write a draft forecast; an approved or locked one is refused with
        `BusinessRuleViolation` (FORECAST_APPROVED / FORECAST_LOCKED), an older version with
        `StaleVersionError`."""
        ...


# --------------------------------------------------------------------------- helpers


def batch_idempotency_key(keys: Iterable[str], *, scope: str = "timebill") -> str:
    """The `X-NetSuite-Idempotency-Key` of a batch: a UUID from its records' business keys."""
    return str(uuid.uuid5(_KEY_NAMESPACE, scope + "\n" + "\n".join(sorted(keys))))


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


def _month(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def _money(amount: Any, currency: str) -> Money:
    return Money(Decimal(str(amount)), currency)


def _ref_id(value: Any) -> str | None:
    if isinstance(value, dict):
        ident = value.get("id")
        return str(ident) if ident is not None else None
    return None


@dataclass
class _Outcome:
    erp_id: str | None = None
    error: ErrorInfo | None = None


@dataclass
class _Task:
    ok: bool
    status: int
    result: Any = field(default=None)


# --------------------------------------------------------------------------- NetSuite adapter


class NetSuiteErp:
    """`ErpPort` over NetSuite's REST web services (or the twin in `sandbox/erp.py`)."""

    def __init__(
        self,
        settings: SystemSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff_base_s: float = 0.05,
        backoff_cap_s: float = 5.0,
        poll_interval_s: float = 0.02,
        poll_max_interval_s: float = 1.0,
        poll_timeout_s: float = 300.0,
        batch_size: int = MAX_BATCH,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
        self.http = VendorHttp(
            SYSTEM,
            settings,
            parse_netsuite_error,
            transport=transport,
            backoff_base_s=backoff_base_s,
            backoff_cap_s=backoff_cap_s,
        )
        self.poll_interval_s = poll_interval_s
        self.poll_max_interval_s = poll_max_interval_s
        self.poll_timeout_s = poll_timeout_s
        self.batch_size = batch_size
        self._ids: dict[tuple[str, str], str] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    @property
    def retries(self) -> int:
        """Requests retried so far (429, 5xx, timeouts)."""
        return self.http.retries

    @property
    def calls(self) -> int:
        return self.http.calls

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> NetSuiteErp:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    # -- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def _path(record_type: str, ident: str, *, external: bool | None = None) -> str:
        """`.../{type}/{id}`; digits are internal ids unless `external`, `eid:X` is explicit."""
        if ident.startswith("eid:"):
            return f"{RECORD}/{record_type}/eid:{quote(ident[4:], safe='')}"
        if external is None:
            external = not ident.isdigit()
        if external:
            return f"{RECORD}/{record_type}/eid:{quote(ident, safe='')}"
        return f"{RECORD}/{record_type}/{ident}"

    async def _get(self, url: str, **kwargs: Any) -> Any:
        return _decode(await self.http.request("GET", url, ok=(200,), **kwargs))

    async def _send(
        self,
        method: str,
        url: str,
        body: Any,
        *,
        ok: tuple[int, ...] = (200, 201, 202, 204),
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        return await self.http.request(
            method,
            url,
            ok=ok,
            content=_encode(body),
            headers={"Content-Type": "application/json", **(headers or {})},
            params=params,
        )

    async def _internal_id(
        self, record_type: str, ident: str, *, external: bool | None = None
    ) -> str:
        """The internal id of a record named by internal or external id (cached)."""
        if ident.startswith("eid:"):
            ident, external = ident[4:], True
        if external is None:
            external = not ident.isdigit()
        if not external:
            return ident
        key = (record_type, ident)
        if key in self._ids:
            return self._ids[key]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._ids:
                body = await self._get(self._path(record_type, ident, external=True))
                self._ids[key] = str(body["id"])
        return self._ids[key]

    async def _reference(
        self,
        record_type: str,
        ident: str,
        *,
        field: str,
        external: bool | None = None,
        missing_code: str = "INVALID_KEY_OR_REF",
    ) -> dict[str, str]:
        """`{"id": ...}` for a body; an unknown record is a business error on `field`."""
        try:
            return {"id": await self._internal_id(record_type, ident, external=external)}
        except NotFoundError:
            raise BusinessRuleViolation(
                missing_code,
                f"Invalid {field} reference: no {record_type} {ident}.",
                field=field,
                system=SYSTEM,
            ) from None

    async def _suiteql(self, q: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        offset = 0
        while True:
            response = await self._send(
                "POST",
                SUITEQL,
                {"q": q},
                ok=(200,),
                headers={"Prefer": "transient"},
                params={"limit": 1000, "offset": offset},
            )
            page = _decode(response)
            rows += page.get("items", [])
            if not page.get("hasMore"):
                return rows
            offset += len(page.get("items", [])) or 1000

    # -- async jobs -------------------------------------------------------------------------

    async def _wait_for_job(self, location: str) -> Any:
        delay = self.poll_interval_s
        deadline = time.monotonic() + self.poll_timeout_s
        while True:
            job = await self._get(location)
            if job.get("completed"):
                return job
            if time.monotonic() + delay > deadline:
                raise TransientError(
                    f"{SYSTEM} async job {location} did not complete in {self.poll_timeout_s}s",
                    system=SYSTEM,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.poll_max_interval_s)

    async def _tasks(self, location: str) -> list[_Task]:
        """Every task of a completed job with its result, in task order."""
        items: list[Any] = []
        offset = 0
        while True:
            page = await self._get(
                f"{location}/task",
                params={"expandSubResources": "true", "limit": 1000, "offset": offset},
            )
            items += page.get("items", [])
            if not page.get("hasMore"):
                break
            offset += len(page.get("items", [])) or 1000
        items.sort(key=lambda t: int(t["id"]))
        tasks = []
        for item in items:
            ok = item.get("progress") == "succeeded"
            if "result" in item:
                result = item["result"]
                status = 200 if ok else int(result.get("status", 400))
            else:  # NetSuite itself does not expand results: read each one
                response = await self.http.request(
                    "GET",
                    f"{location}/task/{item['id']}/result",
                    ok=(200, 204, 400, 404, 409, 412),
                )
                result, status = _decode(response), response.status_code
            tasks.append(_Task(ok=ok, status=status, result=result))
        return tasks

    async def _async_upsert(
        self, record_type: str, bodies: list[dict[str, Any]], key: str, depth: int = 0
    ) -> dict[str, _Outcome]:
        """Upsert records by externalId in one async job; the outcome per externalId."""
        bodies = sorted(bodies, key=lambda b: str(b["externalId"]))
        response = await self._send(
            "POST",
            f"{RECORD}/{record_type}",
            {"items": bodies},
            ok=(202, 400),
            headers={"Prefer": "respond-async", IDEMPOTENCY_HEADER: key},
        )
        fresh = response.status_code == 202
        if not fresh and (
            _error_code(response) != "IDEMPOTENCY_ERROR" or "location" not in response.headers
        ):
            raise classify(SYSTEM, response, parse_netsuite_error)
        location = response.headers["location"]
        await self._wait_for_job(location)
        tasks = await self._tasks(location)
        if len(tasks) != len(bodies):
            raise TransientError(
                f"{SYSTEM} job {location} has {len(tasks)} tasks for {len(bodies)} records",
                system=SYSTEM,
            )
        outcomes: dict[str, _Outcome] = {}
        for body, task in zip(bodies, tasks, strict=True):
            ext = str(body["externalId"])
            if task.ok:
                erp_id = task.result.get("id") if isinstance(task.result, dict) else None
                outcomes[ext] = _Outcome(erp_id=str(erp_id) if erp_id is not None else None)
            else:
                outcomes[ext] = _Outcome(error=_error_info(task.status, task.result))
        failed = [b for b in bodies if outcomes[str(b["externalId"])].error is not None]
        if not fresh and failed and depth < _MAX_RESUBMITS:
            # The earlier job refused these; what refused them may have been fixed since.
            retry_key = str(uuid.uuid5(_KEY_NAMESPACE, f"{key}\n{_tail_id(location)}"))
            outcomes |= await self._async_upsert(record_type, failed, retry_key, depth + 1)
        return outcomes

    # -- customers and projects ---------------------------------------------------------------

    async def upsert_customer(self, customer: Customer, *, enterprise_id: str) -> str:
        body = {
            "companyName": customer.name,
            "currency": {"id": customer.currency},
            ENTERPRISE_ID_FIELD: enterprise_id,
        }
        response = await self._send(
            "PUT", self._path("customer", customer.external_id, external=True), body
        )
        erp_id = _tail_id(response.headers["location"])
        self._ids[("customer", customer.external_id)] = erp_id
        return erp_id

    async def upsert_project(
        self, project: Project, *, enterprise_id: str, customer_erp_id: str, budget: Money
    ) -> str:
        department = await self._reference(
            "department",
            project.cost_center,
            field="department",
            external=True,
            missing_code="INVALID_COST_CENTER",
        )
        customer = await self._reference("customer", customer_erp_id, field="customer")
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
        response = await self._send("PUT", self._path("job", enterprise_id, external=True), body)
        erp_id = _tail_id(response.headers["location"])
        self._ids[("job", enterprise_id)] = erp_id
        current = await self.get_budget(erp_id)
        if current.version == 0:
            # Only the first provisioning sets the budget; change orders revise it later.
            try:
                await self.revise_budget(erp_id, amount=budget, expected_version=0)
            except StaleVersionError:
                pass
        return erp_id

    async def close_project(self, erp_id: str, *, reason: str) -> None:
        try:
            await self._send(
                "PATCH",
                self._path("job", erp_id),
                {"entityStatus": {"id": JOB_STATUS_CLOSED}, "comments": reason},
            )
        except NotFoundError:
            return

    async def _department_code(self, department_id: str | None) -> str | None:
        if department_id is None:
            return None
        key = ("department-code", department_id)
        if key not in self._ids:
            body = await self._get(self._path("department", department_id, external=False))
            self._ids[key] = str(body.get("externalId") or department_id)
        return self._ids[key]

    async def get_project(self, erp_id_or_eid: str) -> ErpProject:
        body = await self._get(self._path("job", erp_id_or_eid))
        erp_id = str(body["id"])
        budget = await self.get_budget(erp_id)
        status_id = _ref_id(body.get("entityStatus"))
        return ErpProject(
            erp_id=erp_id,
            external_id=body.get("externalId"),
            enterprise_id=body.get(ENTERPRISE_ID_FIELD),
            name=body.get("companyName", ""),
            status=ProjectStatus.CLOSED if status_id == JOB_STATUS_CLOSED else ProjectStatus.ACTIVE,
            customer_erp_id=_ref_id(body.get("customer")) or "",
            cost_center=await self._department_code(_ref_id(body.get("department"))),
            currency=_ref_id(body.get("currency")) or budget.amount.currency,
            budget=budget.amount,
            budget_version=budget.version,
        )

    # -- budget and forecast ---------------------------------------------------------------

    async def get_budget(self, project: str) -> ErpBudget:
        body = await self._get(f"{self._path('job', project)}/budget")
        return ErpBudget(
            project_erp_id=_ref_id(body.get("job")) or project,
            amount=_money(body.get("amount", 0), _ref_id(body.get("currency")) or "USD"),
            version=int(body["budgetVersion"]),
        )

    async def revise_budget(
        self, project: str, *, amount: Money, expected_version: int
    ) -> ErpBudget:
        url = f"{self._path('job', project)}/budget"
        response = await self._send(
            "PATCH",
            url,
            {"amount": amount.amount, "currency": {"id": amount.currency}},
            ok=(200, 204, 412),
            headers={"If-Match": f'"{expected_version}"'},
        )
        current = await self.get_budget(project)
        if response.status_code == 412:
            # A retried PATCH whose first attempt went through looks stale: it is not.
            if current.version == expected_version + 1 and current.amount == amount:
                return current
            raise StaleVersionError(
                f"{SYSTEM} budget of {project} is at version {current.version}, "
                f"not {expected_version}",
                system=SYSTEM,
            )
        return current

    async def get_forecast(self, project: str, period: str) -> Forecast | None:
        try:
            body = await self._get(f"{self._path('job', project)}/laborForecast/{period}")
        except NotFoundError:
            return None
        return Forecast(
            source_system=System.ERP,
            project_id=project,
            period=body["period"],
            hours=Decimal(str(body["hours"])),
            labor_cost=_money(body["laborCost"], _ref_id(body.get("currency")) or "USD"),
            version=int(body["version"]),
            status=ForecastStatus(body["status"]),
        )

    async def put_forecast(self, forecast: Forecast, *, project: str | None = None) -> Forecast:
        project = project or forecast.project_id
        url = f"{self._path('job', project)}/laborForecast/{forecast.period}"
        response = await self._send(
            "PUT",
            url,
            {
                "hours": forecast.hours,
                "laborCost": forecast.labor_cost.amount,
                "currency": {"id": forecast.labor_cost.currency},
                "status": str(forecast.status),
                "version": forecast.version,
            },
            ok=(200, 204, 412),
        )
        if response.status_code == 412:
            raise StaleVersionError(
                f"{SYSTEM} forecast {project}/{forecast.period} is newer than version "
                f"{forecast.version}",
                system=SYSTEM,
            )
        written = await self.get_forecast(project, forecast.period)
        assert written is not None
        return written

    # -- cost postings --------------------------------------------------------------------

    async def _timebill(self, posting: CostPosting) -> dict[str, Any]:
        body: dict[str, Any] = {
            "externalId": posting.idempotency_key,
            "customer": await self._reference("job", posting.project_id, field="customer"),
            "tranDate": posting.posting_date.isoformat(),
            "hours": posting.hours,
            "costAmount": posting.cost_amount.amount,
            "currency": {"id": posting.cost_amount.currency},
            "department": await self._reference(
                "department",
                posting.cost_center,
                field="department",
                external=True,
                missing_code="INVALID_COST_CENTER",
            ),
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
        if posting.reverses is not None:
            body["reverses"] = await self._reference(
                "timebill", posting.reverses, field="reverses", external=True
            )
        return body

    async def _post_batch(self, batch: list[CostPosting]) -> dict[str, PostingResult]:
        results: dict[str, PostingResult] = {}
        bodies = []
        for posting in batch:
            try:
                bodies.append(await self._timebill(posting))
            except BusinessRuleViolation as exc:
                results[posting.idempotency_key] = PostingResult(
                    idempotency_key=posting.idempotency_key, error=exc.info()
                )
        if bodies:
            key = batch_idempotency_key(str(b["externalId"]) for b in bodies)
            for ext, outcome in (await self._async_upsert("timebill", bodies, key)).items():
                results[ext] = PostingResult(
                    idempotency_key=ext, erp_id=outcome.erp_id, error=outcome.error
                )
        return results

    async def post_time(self, postings: Sequence[CostPosting]) -> list[PostingResult]:
        unique: dict[str, CostPosting] = {}
        for posting in postings:
            unique.setdefault(posting.idempotency_key, posting)
        todo = list(unique.values())
        batches = [todo[i : i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        results: dict[str, PostingResult] = {}
        for done in await asyncio.gather(*(self._post_batch(b) for b in batches)):
            results |= done
        return [results[p.idempotency_key] for p in postings]

    async def post_time_one(self, posting: CostPosting) -> PostingResult:
        return (await self.post_time([posting]))[0]

    async def reverse_posting(
        self,
        original: CostPosting,
        *,
        idempotency_key: str | None = None,
        posting_date: date | None = None,
    ) -> PostingResult:
        reversal = reversal_of(original, idempotency_key=idempotency_key, posting_date=posting_date)
        return await self.post_time_one(reversal)

    async def list_postings(self, project: str) -> list[CostPosting]:
        job_id = await self._internal_id("job", project)
        rows = await self._suiteql(f"SELECT * FROM timebill WHERE customer = {int(job_id)}")
        departments = {
            str(r["id"]): str(r.get("externalid") or r["id"])
            for r in await self._suiteql("SELECT id, externalid FROM department")
        }
        keys = {str(r["id"]): str(r.get("externalid") or f"timebill-{r['id']}") for r in rows}
        missing = {str(r["reverses"]) for r in rows if r.get("reverses")} - set(keys)
        if missing:
            ids = ", ".join(str(int(i)) for i in sorted(missing))
            for r in await self._suiteql(
                f"SELECT id, externalid FROM timebill WHERE id IN ({ids})"
            ):
                keys[str(r["id"])] = str(r.get("externalid") or f"timebill-{r['id']}")
        postings = []
        for row in rows:
            currency = str(row.get("currency") or "USD")
            tran_date = date.fromisoformat(str(row["trandate"]))
            postings.append(
                CostPosting(
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
                    bill_amount=(
                        _money(row["billamount"], currency) if row.get("billamount") else None
                    ),
                    cost_center=departments.get(str(row["department"]), str(row["department"])),
                    reverses=keys.get(str(row["reverses"])) if row.get("reverses") else None,
                )
            )
        return postings

    async def posted_totals(self, project: str) -> list[PostedTotal]:
        return _totals(await self.list_postings(project))

    async def cost_center_status(self, code: str) -> CostCenterStatus:
        try:
            body = await self._get(self._path("department", code, external=True))
        except NotFoundError:
            return CostCenterStatus.UNKNOWN
        return CostCenterStatus.INACTIVE if body.get("isInactive") else CostCenterStatus.ACTIVE

    async def period_open(self, period: str) -> bool:
        if not _PERIOD.match(period):
            return False
        rows = await self._suiteql(
            "SELECT id, periodname, closed, alllocked FROM accountingperiod "
            f"WHERE periodname = '{period}'"
        )
        return any(r.get("closed") == "F" and r.get("alllocked", "F") == "F" for r in rows)

    async def get_cost_rate(self, worker_id: str) -> Money | None:
        try:
            body = await self._get(self._path("employee", worker_id, external=True))
        except NotFoundError:
            return None
        if body.get("laborCost") is None:
            return None
        return _money(body["laborCost"], _ref_id(body.get("currency")) or "USD")

    # -- invoices ---------------------------------------------------------------------------

    async def create_invoice(self, invoice: Invoice) -> str:
        # The period travels in the memo (`get_invoice` reads it back); the entries behind a
        # line (`InvoiceLine.source_entry_ids`) stay with pssync: the invoice has no field.
        total = invoice.total
        body: dict[str, Any] = {
            "externalId": invoice.idempotency_key,
            "entity": await self._reference("customer", invoice.customer_id, field="entity"),
            "job": await self._reference("job", invoice.project_id, field="job"),
            "tranDate": invoice.invoice_date.isoformat(),
            "currency": {"id": total.currency},
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
        key = batch_idempotency_key([invoice.idempotency_key], scope="invoice")
        outcome = (await self._async_upsert("invoice", [body], key))[invoice.idempotency_key]
        if outcome.error is not None:
            _raise_info(outcome.error)
        if outcome.erp_id is None:
            raise TransientError(f"{SYSTEM} reported no id for the invoice", system=SYSTEM)
        return outcome.erp_id

    async def void_invoice(self, erp_id: str, *, reason: str) -> None:
        """NetSuite voids a transaction by transforming it (`!transform/void`); the twin
        answers a repeat with 204 too, so a retried or repeated void is a no-op."""
        await self._send(
            "POST",
            f"{self._path('invoice', erp_id)}/!transform/void",
            {"memo": reason},
            ok=(200, 204),
        )

    async def get_invoice(self, erp_id: str) -> Invoice:
        body = await self._get(self._path("invoice", erp_id))
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


# --------------------------------------------------------------------------- in-memory fake


@dataclass
class _FakeJob:
    erp_id: str
    external_id: str
    enterprise_id: str
    name: str
    customer_erp_id: str
    cost_center: str
    currency: str
    status: ProjectStatus = ProjectStatus.ACTIVE
    budget: Money | None = None
    budget_version: int = 0
    close_reason: str | None = None


@dataclass
class _FakeCustomer:
    erp_id: str
    external_id: str
    name: str
    currency: str
    enterprise_id: str
    credit_hold: bool = False


class FakeErp:
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
        try:
            customer = self._customer(customer_erp_id)
        except NotFoundError:
            raise self._refuse(
                "INVALID_KEY_OR_REF", f"no customer {customer_erp_id}", "customer"
            ) from None
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
        try:
            job = self._job(posting.project_id)
        except NotFoundError:
            raise self._refuse(
                "INVALID_KEY_OR_REF", f"no project {posting.project_id}", "customer"
            ) from None
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

    async def post_time_one(self, posting: CostPosting) -> PostingResult:
        return (await self.post_time([posting]))[0]

    async def reverse_posting(
        self,
        original: CostPosting,
        *,
        idempotency_key: str | None = None,
        posting_date: date | None = None,
    ) -> PostingResult:
        reversal = reversal_of(original, idempotency_key=idempotency_key, posting_date=posting_date)
        return await self.post_time_one(reversal)

    async def list_postings(self, project: str) -> list[CostPosting]:
        erp_id = self._job(project).erp_id
        return [p for _id, p in self.postings.values() if p.project_id == erp_id]

    async def posted_totals(self, project: str) -> list[PostedTotal]:
        return _totals(await self.list_postings(project))

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
        try:
            customer = self._customer(invoice.customer_id)
        except NotFoundError:
            raise self._refuse(
                "INVALID_KEY_OR_REF", f"no customer {invoice.customer_id}", "entity"
            ) from None
        try:
            job = self._job(invoice.project_id)
        except NotFoundError:
            raise self._refuse(
                "INVALID_KEY_OR_REF", f"no project {invoice.project_id}", "job"
            ) from None
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


def _same_posting(a: CostPosting, b: CostPosting) -> bool:
    volatile = {"updated_at", "source_system", "source_version", "enterprise_id"}
    return a.model_dump(exclude=volatile) == b.model_dump(exclude=volatile)


def _check_ports() -> None:  # pragma: no cover - a static check for mypy
    _a: ErpPort = FakeErp()
    _b: ErpPort = NetSuiteErp(SystemSettings(base_url="http://localhost"))


__all__ = [
    "MAX_BATCH",
    "CostCenterStatus",
    "ErpBudget",
    "ErpPort",
    "ErpProject",
    "FakeErp",
    "NetSuiteErp",
    "PostedTotal",
    "PostingResult",
    "batch_idempotency_key",
    "parse_netsuite_error",
    "reversal_of",
]
