"""The custom record type of pssync's tenant setup for rate card revisions
(`customrecord_pssync_rate_card_revision`): one record per revision of a PSA rate card, keyed
by its external ID, with the rates per role (a long text field of JSON), the effective date,
the date pssync applies it from and its status (applied, held, rejected).

NetSuite applies no rule of pssync's to it: only the field types and the mandatory fields."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlmodel import Session

from sandbox.erp.bodies import Ref, _Body
from sandbox.erp.rate_card_tables import ErpRateCardRevisionRow
from sandbox.erp.records.base import RecordType, _currency, _ref

RECORD = "customrecord_pssync_rate_card_revision"
CARD = "custrecord_pssync_rcr_card"
REVISION = "custrecord_pssync_rcr_revision"
EFFECTIVE = "custrecord_pssync_rcr_effective"
APPLIED_FROM = "custrecord_pssync_rcr_applied_from"
STATUS = "custrecord_pssync_rcr_status"
CURRENCY = "custrecord_pssync_rcr_currency"
RATES = "custrecord_pssync_rcr_rates"


class RateCardRevisionRecordBody(_Body):
    name: str | None = None
    custrecord_pssync_rcr_card: str | None = None
    custrecord_pssync_rcr_revision: str | None = None
    custrecord_pssync_rcr_effective: date | None = None
    custrecord_pssync_rcr_applied_from: date | None = None
    custrecord_pssync_rcr_status: str | None = None
    custrecord_pssync_rcr_currency: Ref | None = None
    custrecord_pssync_rcr_rates: str | None = None
    lastModifiedDate: str | None = None


class RateCardRevisionRecordType(RecordType):
    name = RECORD
    table = ErpRateCardRevisionRow
    body = RateCardRevisionRecordBody
    required = ("name", CARD, REVISION, EFFECTIVE)
    filters = {"externalId": "external_id", "name": "name", CARD: "rate_card"}
    copied = (
        ("name", "name"),
        (CARD, "rate_card"),
        (REVISION, "revision"),
        (EFFECTIVE, "effective"),
        (APPLIED_FROM, "applied_from"),
        (STATUS, "status"),
        (RATES, "rates"),
    )

    def resolved(self, s: Session, body: _Body, given: set[str]) -> dict[str, Any]:
        assert isinstance(body, RateCardRevisionRecordBody)
        if CURRENCY in given and body.custrecord_pssync_rcr_currency is not None:
            return {"currency": _currency(body.custrecord_pssync_rcr_currency, CURRENCY)}
        return {}

    def fields_json(self, s: Session, row: ErpRateCardRevisionRow) -> dict[str, Any]:
        return {
            "name": row.name,
            CARD: row.rate_card,
            REVISION: row.revision,
            EFFECTIVE: row.effective.isoformat() if row.effective else None,
            APPLIED_FROM: row.applied_from.isoformat() if row.applied_from else None,
            STATUS: row.status,
            CURRENCY: _ref(row.currency, row.currency),
            RATES: row.rates,
        }
