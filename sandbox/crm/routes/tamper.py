"""Twin admin, not Salesforce endpoints (no auth): tampering with the CRM behind pssync's back.

- `POST /_admin/tamper/{Object}/{Id}/edit` `{"<Field>": value, ...}` — a person edits the
  record in Salesforce's UI: the same fields, checks and derived values as `PATCH
  /services/data/{v}/sobjects/{Object}/{Id}` (an opportunity with products keeps its
  roll-up `Amount`; `StageName` derives `IsClosed`, `IsWon`, ...), `LastModifiedDate` and
  `SystemModstamp` bumped — but **no event**, not even `opportunity.won` on a move to Closed
  Won. Answers the record as `GET .../sobjects/{Object}/{Id}` does.
- `POST|GET|DELETE /_admin/tamper/drop-webhooks` — lose the next events (`sandbox._tamper`),
  e.g. `{"type": "opportunity.won", "count": 1}` before a normal won PATCH.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sandbox._tamper import drop_webhooks_router
from sandbox.crm.bodies import _check_fields, _json_object, _sobject_or_404, render
from sandbox.crm.context import CrmTwin
from sandbox.crm.records import _get, update_row


def build_router(twin: CrmTwin) -> APIRouter:
    router = APIRouter(prefix="/_admin/tamper", tags=["tamper"])

    @router.post(
        "/{sobject}/{record_id}/edit",
        summary="Edit a record's fields by hand, as a person in the UI (no event)",
    )
    async def edit_record(sobject: str, record_id: str, request: Request) -> dict[str, Any]:
        sobj = _sobject_or_404(sobject)
        values = _check_fields(sobj, await _json_object(request), creating=False)
        with twin.state.session() as session:
            row = _get(session, sobj, record_id)
            if values:
                update_row(session, sobj, row, values)
            return render(sobj, row)

    router.include_router(drop_webhooks_router(prefix=""))
    return router
