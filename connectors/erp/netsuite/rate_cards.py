"""NetSuite rate card revisions, kept in the custom record type
`customrecord_pssync_rate_card_revision` (docs/processes/rate_cards.md): one record per PSA
rate card revision, upserted by `PUT .../eid:<revision key>`, its rates per role a long text
field of JSON. A card's revisions are found over SuiteQL, then read by internal id (record
GETs give dates as ISO dates, SuiteQL in the account's format)."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from decimal import Decimal
from typing import Any

from connectors.erp.netsuite._base import _NetSuiteBase
from contracts.errors import NotFoundError
from contracts.money import Money
from contracts.v1.rate_cards import ErpRateCardRevision, RevisionStatus, RoleRate

RECORD = "customrecord_pssync_rate_card_revision"
CARD = "custrecord_pssync_rcr_card"
REVISION = "custrecord_pssync_rcr_revision"
EFFECTIVE = "custrecord_pssync_rcr_effective"
APPLIED_FROM = "custrecord_pssync_rcr_applied_from"
STATUS = "custrecord_pssync_rcr_status"
CURRENCY = "custrecord_pssync_rcr_currency"
RATES = "custrecord_pssync_rcr_rates"


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def revision_body(revision: ErpRateCardRevision) -> dict[str, Any]:
    return {
        "name": f"{revision.rate_card_id} revision {revision.revision_id}",
        CARD: revision.rate_card_id,
        REVISION: revision.revision_id,
        EFFECTIVE: revision.effective_from.isoformat(),
        APPLIED_FROM: revision.applied_from.isoformat() if revision.applied_from else None,
        STATUS: revision.status.value,
        CURRENCY: {"id": revision.currency},
        RATES: json.dumps(
            [{"role": r.role, "rate": str(r.bill_rate.amount)} for r in revision.rates],
            sort_keys=True,
        ),
    }


def revision_from_netsuite(body: dict[str, Any]) -> ErpRateCardRevision:
    currency_ref = body.get(CURRENCY) or {}
    currency = str(currency_ref.get("refName") or currency_ref.get("id") or "USD")
    applied = body.get(APPLIED_FROM)
    return ErpRateCardRevision(
        rate_card_id=str(body[CARD]),
        revision_id=str(body[REVISION]),
        effective_from=date.fromisoformat(str(body[EFFECTIVE])),
        applied_from=date.fromisoformat(str(applied)) if applied else None,
        status=RevisionStatus(str(body.get(STATUS) or RevisionStatus.HELD.value)),
        currency=currency,
        rates=[
            RoleRate(role=str(r["role"]), bill_rate=Money(Decimal(str(r["rate"])), currency))
            for r in json.loads(body.get(RATES) or "[]")
        ],
    )


class _RateCardsMixin(_NetSuiteBase):
    async def list_rate_card_revisions(self, rate_card_id: str) -> list[ErpRateCardRevision]:
        rows = await self._suiteql(
            f"SELECT id FROM {RECORD} WHERE {CARD} = {_quoted(rate_card_id)} ORDER BY id"
        )
        bodies = await asyncio.gather(
            *(self._get(self._path(RECORD, str(row["id"]), external=False)) for row in rows)
        )
        found = [revision_from_netsuite(b) for b in bodies]
        return sorted(found, key=lambda r: (r.effective_from, r.revision_id))

    async def put_rate_card_revision(self, revision: ErpRateCardRevision) -> bool:
        path = self._path(RECORD, revision.key, external=True)
        try:
            current = revision_from_netsuite(await self._get(path))
        except NotFoundError:
            current = None
        if current == revision:
            return False
        await self._send("PUT", path, revision_body(revision))
        return True
