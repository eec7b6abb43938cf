"""The record types the twin serves (`RECORD_TYPES`, one module each; `custom` holds the
custom record types of pssync's tenant setup) and finding a record by its internal id or `eid:`
external ID."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from sandbox._twin import TwinError
from sandbox.erp.common import _int_id
from sandbox.erp.lookups import _by_eid
from sandbox.erp.records.base import RecordType
from sandbox.erp.records.custom import BudgetRecordType, LaborForecastRecordType
from sandbox.erp.records.customer import CustomerType
from sandbox.erp.records.department import DepartmentType
from sandbox.erp.records.employee import EmployeeType
from sandbox.erp.records.invoice import InvoiceType
from sandbox.erp.records.job import JobType
from sandbox.erp.records.labor_cost import LaborCostRateRecordType
from sandbox.erp.records.period import AccountingPeriodType
from sandbox.erp.records.rate_card import RateCardRevisionRecordType
from sandbox.erp.records.timebill import TimebillType

__all__ = [
    "RECORD_TYPES",
    "AccountingPeriodType",
    "BudgetRecordType",
    "CustomerType",
    "DepartmentType",
    "EmployeeType",
    "InvoiceType",
    "JobType",
    "LaborCostRateRecordType",
    "LaborForecastRecordType",
    "RateCardRevisionRecordType",
    "RecordType",
    "TimebillType",
    "_find",
    "_record_type",
]

RECORD_TYPES: dict[str, RecordType] = {
    t.name: t
    for t in (
        CustomerType(),
        DepartmentType(),
        EmployeeType(),
        AccountingPeriodType(),
        JobType(),
        TimebillType(),
        InvoiceType(),
        BudgetRecordType(),
        LaborForecastRecordType(),
        RateCardRevisionRecordType(),
        LaborCostRateRecordType(),
    )
}


def _record_type(name: str) -> RecordType:
    kind = RECORD_TYPES.get(name)
    if kind is None:
        raise TwinError(404, "INVALID_RECORD_TYPE", f"Record type '{name}' does not exist.")
    return kind


def _find(s: Session, kind: RecordType, ident: str) -> Any:
    if ident.startswith("eid:"):
        row = _by_eid(s, kind.table, ident[4:])
    else:
        row = s.get(kind.table, _int_id(ident)) if _int_id(ident) else None
    if row is None:
        raise TwinError(
            404,
            "NONEXISTENT_ID",
            f"The record instance does not exist. Invalid {kind.name} id: {ident}.",
            "id",
        )
    return row
