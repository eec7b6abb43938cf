"""The custom record type of pssync's tenant setup for labor cost rates
(`customrecord_pssync_labor_cost_rate`): one row of a worker's effective-dated rate history
per HCM event, keyed by its external ID, with the worker (HCM Employee ID), the hourly rate,
its currency and the day it is effective from.

NetSuite applies no rule of pssync's to it: only the field types and the mandatory fields."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from sqlmodel import Session

from sandbox.erp.bodies import Ref, _Body
from sandbox.erp.common import _dec, _num
from sandbox.erp.labor_cost_tables import ErpLaborCostRateRow
from sandbox.erp.records.base import RecordType, _currency, _ref

RECORD = "customrecord_pssync_labor_cost_rate"
EMPLOYEE = "custrecord_pssync_lcr_employee"
RATE = "custrecord_pssync_lcr_rate"
CURRENCY = "custrecord_pssync_lcr_currency"
EFFECTIVE = "custrecord_pssync_lcr_effective"
EVENT = "custrecord_pssync_lcr_event"
SEQUENCE = "custrecord_pssync_lcr_sequence"


class LaborCostRateRecordBody(_Body):
    name: str | None = None
    custrecord_pssync_lcr_employee: str | None = None
    custrecord_pssync_lcr_rate: Decimal | None = None
    custrecord_pssync_lcr_currency: Ref | None = None
    custrecord_pssync_lcr_effective: date | None = None
    custrecord_pssync_lcr_event: str | None = None
    custrecord_pssync_lcr_sequence: int | None = None
    lastModifiedDate: str | None = None


class LaborCostRateRecordType(RecordType):
    name = RECORD
    table = ErpLaborCostRateRow
    body = LaborCostRateRecordBody
    required = ("name", EMPLOYEE, RATE, CURRENCY, EFFECTIVE)
    filters = {"externalId": "external_id", "name": "name", EMPLOYEE: "employee"}
    copied = (
        ("name", "name"),
        (EMPLOYEE, "employee"),
        (EFFECTIVE, "effective"),
        (EVENT, "event"),
        (SEQUENCE, "sequence"),
    )

    def resolved(self, s: Session, body: _Body, given: set[str]) -> dict[str, Any]:
        assert isinstance(body, LaborCostRateRecordBody)
        out: dict[str, Any] = {}
        if RATE in given:
            out["rate"] = _dec(body.custrecord_pssync_lcr_rate)
        if CURRENCY in given and body.custrecord_pssync_lcr_currency is not None:
            out["currency"] = _currency(body.custrecord_pssync_lcr_currency, CURRENCY)
        return out

    def fields_json(self, s: Session, row: ErpLaborCostRateRow) -> dict[str, Any]:
        return {
            "name": row.name,
            EMPLOYEE: row.employee,
            RATE: _num(row.rate),
            CURRENCY: _ref(row.currency, row.currency),
            EFFECTIVE: row.effective.isoformat() if row.effective else None,
            EVENT: row.event,
            SEQUENCE: row.sequence,
        }
