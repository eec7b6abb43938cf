"""ERP connector: NetSuite REST web services behind a port that speaks canonical types.

    erp = NetSuiteErp(settings.erp)
    results = await erp.post_time(postings)      # one PostingResult per posting, never raises
    failed = [r for r in results if not r.ok]    # for a business refusal of one record
    await erp.aclose()

`ErpPort` is what activities depend on (`port.py`, split by use: `ErpProjectsPort`,
`ErpPostingsPort`, `ErpBillingPort`, `ErpBudgetPort`, `ErpForecastPort`); `NetSuiteErp`
(`netsuite/`) implements it over HTTP (on `VendorHttp`: OAuth2, retries honouring Retry-After,
the per-tenant concurrency limit), `FakeErp` (`fake.py`) in memory with the same business rules
for unit and workflow tests.

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
  keeps it in the ledger under that key, so a new attempt needs a new key;
- budgets and labor forecasts are custom records (`customrecord_pssync_budget`,
  `customrecord_pssync_labor_forecast`) upserted by an external ID derived from the project's
  internal id (and the month). NetSuite has no conditional write, so their versions are read
  and compared before each write (`netsuite/budgets.py` says what that leaves open).

Identifiers: where the port takes a project or customer, a string of digits is a NetSuite
internal id and anything else (or `eid:VALUE`) an external ID: the enterprise project ID for
projects, the CRM account id for customers, the code for cost centers. Postings read back carry
the ERP's internal project id.

Vendor field names stay in `mapping.py` and `netsuite/`; NetSuite's value shapes in `values.py`:
SuiteQL answers dates in the account's date format (set `SystemSettings.date_format`, e.g.
`M/D/YYYY`; ISO is always read too), references as `{"id", "refName", "links"}` or bare ids,
currencies as internal ids (read once from the currency record's `symbol`). A record the
mapping cannot read raises `UnmappableRecord`, never a bare exception. No Temporal imports.
"""

from connectors.erp.fake import FakeErp
from connectors.erp.mapping import (
    ENTERPRISE_ID_FIELD,
    IDEMPOTENCY_HEADER,
    JOB_STATUS_CLOSED,
    MAX_BATCH,
    RECORD,
    SUITEQL,
    batch_idempotency_key,
    parse_netsuite_error,
)
from connectors.erp.netsuite import NetSuiteErp
from connectors.erp.port import (
    SYSTEM,
    CostCenterStatus,
    ErpBillingPort,
    ErpBudgetPort,
    ErpForecastPort,
    ErpPort,
    ErpPostingsPort,
    ErpProject,
    ErpProjectsPort,
    InvoiceHeader,
    PostedTotal,
    PostingResult,
    reversal_of,
)
from contracts.v1.change_orders import ErpBudget

__all__ = [
    "ENTERPRISE_ID_FIELD",
    "IDEMPOTENCY_HEADER",
    "JOB_STATUS_CLOSED",
    "MAX_BATCH",
    "RECORD",
    "SUITEQL",
    "SYSTEM",
    "CostCenterStatus",
    "ErpBillingPort",
    "ErpBudget",
    "ErpBudgetPort",
    "ErpForecastPort",
    "ErpPort",
    "ErpPostingsPort",
    "ErpProject",
    "ErpProjectsPort",
    "FakeErp",
    "InvoiceHeader",
    "NetSuiteErp",
    "PostedTotal",
    "PostingResult",
    "batch_idempotency_key",
    "parse_netsuite_error",
    "reversal_of",
]
