"""ERP twin: a subset of NetSuite's REST web services (record, async and SuiteQL services).

Mount it anywhere; its paths are NetSuite's, relative to the app's root:

- `GET|POST /services/rest/record/v1/{type}` — list (`limit` <= 1000, `offset`, `q`) and create
  (204 + `Location`). Types: `customer`, `job`, `department` (cost center), `employee` (with
  its `laborCost` and `hireDate`), `accountingPeriod`, `timebill`, `invoice`, and the custom
  record types of pssync's tenant setup, `customrecord_pssync_budget` (a project's budget) and
  `customrecord_pssync_labor_forecast` (its labor forecast of a month), whose fields are
  `custrecord_pssync_*` (a project as a reference). NetSuite applies none of pssync's rules to
  custom records, and neither does the twin: only field types, mandatory fields (`name`, the
  project) and valid references.
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
  [ORDER BY col [ASC|DESC]]` over the twin's records; values are text, like SuiteQL's, each
  row has `links: []`, references are bare ids and dates are in the account's date format
  (`create_app(date_format="M/D/YYYY")`; ISO by default).
- A record GET answers a sublist (an invoice's `item`) as `{"links": [...]}` unless asked with
  `?expandSubResources=true`; `GET .../{type}/{id}/{sublist}` answers it expanded.
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

OAuth: the shared client-secret endpoint `POST /oauth2/token` (the dev profile's), and
NetSuite's machine-to-machine flow at `POST /services/rest/auth/oauth2/v1/token`, a JWT client
assertion signed with the key of a certificate mapped by `POST /_admin/erp/m2m` (`m2m`).

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

# The package, module by module: `common` (constants, error shape, value helpers), `tables`
# (SQLite), `bodies` (request bodies), `lookups` (row lookups, batch memo), `records/` (one
# module per record type: rules and rendering), `write` (`write_record`), `query` (`q` filter,
# SuiteQL), `async_jobs` (tasks, batch upserts), `web` (HTTP helpers), `context` (what the routes
# share), `routes/` (one module per NetSuite resource), `load` (the seeded firm), `upgrade` (a
# database from before the custom records).

from __future__ import annotations

from datetime import date
from pathlib import Path

from fastapi import FastAPI

from contracts.settings import DEV_WEBHOOK_SECRET
from sandbox._twin import TwinState, create_twin_app, make_twin_engine
from sandbox.erp import m2m, upgrade
from sandbox.erp.bodies import (
    AccountingPeriodBody,
    BudgetRecordBody,
    CustomerBody,
    DepartmentBody,
    EmployeeBody,
    InvoiceBody,
    InvoiceItems,
    InvoiceLineBody,
    JobBody,
    LaborForecastRecordBody,
    Ref,
    SuiteQLBody,
    TimebillBody,
    VoidBody,
)
from sandbox.erp.common import (
    ASYNC,
    IDEMPOTENCY_HEADER,
    INVOICE_OPEN,
    INVOICE_PAID,
    INVOICE_VOIDED,
    ISO_DATES,
    JOB_STATUS_CLOSED,
    JOB_STATUS_IN_PROGRESS,
    JOB_STATUSES,
    MAX_BATCH,
    MAX_LIMIT,
    RECORD,
    SYSTEM,
    Row,
    Url,
    account_date,
    error_body,
)
from sandbox.erp.context import ErpContext
from sandbox.erp.load import load_firm
from sandbox.erp.query import suiteql
from sandbox.erp.records import (
    RECORD_TYPES,
    AccountingPeriodType,
    BudgetRecordType,
    CustomerType,
    DepartmentType,
    EmployeeType,
    InvoiceType,
    JobType,
    LaborForecastRecordType,
    RecordType,
    TimebillType,
)
from sandbox.erp.routes import build_router
from sandbox.erp.routes import tamper as tamper_routes
from sandbox.erp.tables import (
    TABLES,
    ErpAccountingPeriod,
    ErpAsyncJob,
    ErpCustomer,
    ErpDepartment,
    ErpEmployee,
    ErpIdempotencyKey,
    ErpInvoice,
    ErpJob,
    ErpJobBudget,
    ErpLaborForecast,
    ErpTimebill,
)
from sandbox.erp.write import write_record

__all__ = [
    "ASYNC",
    "IDEMPOTENCY_HEADER",
    "INVOICE_OPEN",
    "INVOICE_PAID",
    "INVOICE_VOIDED",
    "ISO_DATES",
    "JOB_STATUSES",
    "JOB_STATUS_CLOSED",
    "JOB_STATUS_IN_PROGRESS",
    "MAX_BATCH",
    "MAX_LIMIT",
    "RECORD",
    "RECORD_TYPES",
    "SYSTEM",
    "TABLES",
    "AccountingPeriodBody",
    "AccountingPeriodType",
    "BudgetRecordBody",
    "BudgetRecordType",
    "CustomerBody",
    "CustomerType",
    "DepartmentBody",
    "DepartmentType",
    "EmployeeBody",
    "EmployeeType",
    "ErpAccountingPeriod",
    "ErpAsyncJob",
    "ErpContext",
    "ErpCustomer",
    "ErpDepartment",
    "ErpEmployee",
    "ErpIdempotencyKey",
    "ErpInvoice",
    "ErpJob",
    "ErpJobBudget",
    "ErpLaborForecast",
    "ErpTimebill",
    "InvoiceBody",
    "InvoiceItems",
    "InvoiceLineBody",
    "InvoiceType",
    "JobBody",
    "JobType",
    "LaborForecastRecordBody",
    "LaborForecastRecordType",
    "RecordType",
    "Ref",
    "Row",
    "SuiteQLBody",
    "TimebillBody",
    "TimebillType",
    "Url",
    "VoidBody",
    "account_date",
    "build_router",
    "create_app",
    "error_body",
    "load_firm",
    "suiteql",
    "write_record",
]


def create_app(
    db_path: Path | None = None,
    *,
    webhook_url: str | None = None,
    webhook_secret: str = DEV_WEBHOOK_SECRET,
    async_pending_polls: int = 1,
    date_format: str = ISO_DATES,
) -> FastAPI:
    """The ERP twin. NetSuite pushes nothing to pssync, so the webhook arguments are accepted
    for a uniform signature and unused. An async job reports `pending` on its first
    `async_pending_polls` status polls. SuiteQL answers dates in `date_format`, the account's
    date format preference (`M/D/YYYY`, `D/M/YYYY`, ...; ISO by default)."""
    del webhook_url, webhook_secret
    account_date(date(2000, 1, 1), date_format)  # an unknown format fails here, not later
    upgrading = upgrade.before_engine(db_path)
    state = TwinState(system=SYSTEM, engine=make_twin_engine(db_path, TABLES))
    if upgrading:  # a sandbox home from before the budget and forecast custom records
        upgrade.after_engine(state.engine)
    # The lost-response fault (`/_admin/erp/lost-responses`, also `/_admin/lost-responses`)
    # lives in the shared frame now; `app.state.lost_responses` is its control, as before.
    return create_twin_app(
        state=state,
        title="ERP twin (NetSuite REST web services)",
        description=__doc__ or "",
        router=build_router(ErpContext(state, async_pending_polls, date_format)),
        error_body=error_body,
        extra_routers=[m2m.build_router(state), tamper_routes.build_router(state)],
    )
