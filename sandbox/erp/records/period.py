"""The `accountingPeriod` record type."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session, select

from sandbox._twin import TwinError
from sandbox.erp.bodies import AccountingPeriodBody
from sandbox.erp.records.base import RecordType
from sandbox.erp.tables import ErpAccountingPeriod


class AccountingPeriodType(RecordType):
    name = "accountingPeriod"
    table = ErpAccountingPeriod
    body = AccountingPeriodBody
    required = ("periodName", "startDate", "endDate")
    filters = {"externalId": "external_id", "periodName": "period_name", "closed": "closed"}
    copied_unless_null = (
        ("periodName", "period_name"),
        ("startDate", "start_date"),
        ("endDate", "end_date"),
        ("closed", "closed"),
        ("allLocked", "all_locked"),
    )

    def check(self, s: Session, row: ErpAccountingPeriod, changed: set[str] | None) -> None:
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", row.period_name):
            raise TwinError(400, "INVALID_CONTENT", "periodName must be YYYY-MM", "periodName")
        if row.end_date < row.start_date:
            raise TwinError(400, "INVALID_CONTENT", "endDate is before startDate", "endDate")
        clash = s.exec(
            select(ErpAccountingPeriod).where(ErpAccountingPeriod.period_name == row.period_name)
        ).first()
        if clash is not None and clash.id != row.id:
            raise TwinError(400, "DUP_RCRD", f"Period {row.period_name} exists", "periodName")

    def fields_json(self, s: Session, row: ErpAccountingPeriod) -> dict[str, Any]:
        return {
            "periodName": row.period_name,
            "startDate": row.start_date.isoformat(),
            "endDate": row.end_date.isoformat(),
            "closed": row.closed,
            "allLocked": row.all_locked,
            "isPosting": True,
        }
