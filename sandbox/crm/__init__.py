"""CRM twin: a Salesforce REST API subset (Account, Opportunity, OpportunityLineItem).

Endpoints (any API version v31.0..v62.0 in the path; the connector uses v61.0):

- `GET   /services/data/v61.0/sobjects/{Object}/{Id}[?fields=A,B]` — one record with
  `attributes {type, url}`; 15- or 18-character IDs.
- `PATCH /services/data/v61.0/sobjects/{Object}/{Id}` — 204. Unknown fields are refused
  (`INVALID_FIELD`), read-only ones too (`INVALID_FIELD_FOR_INSERT_UPDATE`), wrong types answer
  `JSON_PARSER_ERROR`, restricted picklists `INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`. An
  opportunity with products refuses a direct `Amount` (or currency) change with
  `FIELD_INTEGRITY_EXCEPTION`: its Amount is the sum of its line items' TotalPrice.
- `POST  /services/data/v61.0/sobjects/{Object}` — 201 `{"id", "success": true, "errors": []}`.
- `PATCH /services/data/v61.0/sobjects/{Object}/{ExtIdField}/{value}` — upsert by an external
  ID field (`Pssync_Key__c` on Opportunity and OpportunityLineItem, a custom Text(255) field
  marked External ID and Unique): no match creates (201 `{"id", "success", "errors",
  "created": true}`), a match is updated (200, `"created": false`, as from API v46.0). Sent
  twice, it is still one record — the way to create safely when an answer can be lost.
- `GET   /services/data/v61.0/query?q=SELECT ...` and `GET .../query/{locator}-{offset}` —
  a tiny SOQL subset: `SELECT f, ... FROM Object [WHERE f op v [AND ...]] [ORDER BY f
  [ASC|DESC]] [LIMIT n]`, ops `= != <> < <= > >= IN (...)`. Results page with `totalSize`,
  `done`, `nextRecordsUrl`; the batch size comes from `Sforce-Query-Options: batchSize=N`
  (Salesforce clamps it to 200..2000; the twin accepts 1..2000 so paging is cheap to test).

Errors use Salesforce's shape, a JSON list: `[{"message", "errorCode", "fields"}]`; 401 is
always `INVALID_SESSION_ID`, unknown records and resources `NOT_FOUND`.

When an opportunity reaches the contracted stage (`Closed Won`, by PATCH or create) the twin
emits a signed thin event `opportunity.won` with `{"tenant", "object", "id", "stage"}` — like an
Outbound Message or a record-triggered Flow callout: at least once, the receiver re-reads.

Handlers are `async def` and touch SQLite synchronously, so no two requests' transactions
interleave on the twin's connection (an in-memory twin shares one between threads).

Money is kept as decimal strings in SQLite and rendered as JSON numbers with two decimals (as
Salesforce does); a careful client parses them as decimals.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI

from contracts.settings import DEV_WEBHOOK_SECRET
from sandbox._tamper import DroppingWebhookSender
from sandbox._twin import TwinState, create_twin_app, make_twin_engine
from sandbox.crm.bodies import error_body, render, sf_datetime
from sandbox.crm.context import CrmTwin
from sandbox.crm.describe import (
    BILLING_TYPES,
    CONTRACTED_STAGE,
    CURRENCIES,
    MAX_API_VERSION,
    MIN_API_VERSION,
    ORG_ID,
    PROVISIONING_STATUSES,
    SOBJECTS,
    STAGES,
    TWIN_POD,
    WON_EVENT,
    FieldSpec,
    SObject,
)
from sandbox.crm.load import load_firm
from sandbox.crm.routes import query, sobject_basic, sobject_external_id, sobject_rows, tamper
from sandbox.crm.soql import Soql, parse_soql
from sandbox.crm.tables import (
    TABLES,
    CrmAccount,
    CrmOpportunity,
    CrmOpportunityLineItem,
    CrmSequence,
)

# Layout: tables.py (SQLite tables), describe.py (constants, sObject describe), bodies.py (errors,
# rendering, body checks), records.py (writes), soql.py (the SOQL subset), load.py (seeding),
# context.py (shared state) and routes/ (one module per Salesforce REST resource).


def create_app(
    db_path: Path | None = None,
    *,
    webhook_url: str | None = None,
    webhook_secret: str = DEV_WEBHOOK_SECRET,
    tenant: str = "default",
) -> FastAPI:
    """The Salesforce twin. `tenant` goes into every won-deal event (the org's name in pssync)."""
    state = TwinState(system="crm", engine=make_twin_engine(db_path, TABLES))
    state.webhooks = DroppingWebhookSender(webhook_url, webhook_secret)
    twin = CrmTwin(state, tenant)
    router = APIRouter(prefix="/services/data/{version}", tags=["salesforce"])
    # Registration order is route order.
    sobject_rows.register(router, twin)  # GET, PATCH /sobjects/{sobject}/{record_id}
    sobject_external_id.register(router, twin)  # PATCH /sobjects/{sobject}/{id_field}/{value}
    sobject_basic.register(router, twin)  # POST /sobjects/{sobject}
    query.register(router, twin)  # GET /query, GET /query/{locator_offset}

    return create_twin_app(
        state=state,
        title="CRM twin (Salesforce REST)",
        description=__doc__ or "",
        router=router,
        error_body=error_body,
        extra_routers=[tamper.build_router(twin)],
    )


__all__ = [
    "BILLING_TYPES",
    "CONTRACTED_STAGE",
    "CURRENCIES",
    "MAX_API_VERSION",
    "MIN_API_VERSION",
    "ORG_ID",
    "PROVISIONING_STATUSES",
    "SOBJECTS",
    "STAGES",
    "TABLES",
    "TWIN_POD",
    "WON_EVENT",
    "CrmAccount",
    "CrmOpportunity",
    "CrmOpportunityLineItem",
    "CrmSequence",
    "FieldSpec",
    "SObject",
    "Soql",
    "create_app",
    "error_body",
    "load_firm",
    "parse_soql",
    "render",
    "sf_datetime",
]
