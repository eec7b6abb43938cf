"""The `timebill` record type: a cost posting (time, expense or a reversal)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from sandbox._twin import TwinError
from sandbox.erp.bodies import TimebillBody, _Body
from sandbox.erp.common import JOB_STATUS_CLOSED, _dec, _num
from sandbox.erp.lookups import _get_row, _lookup, _open_period
from sandbox.erp.records.base import RecordType, _currency_given, _ref
from sandbox.erp.records.department import _check_department, _department_ref
from sandbox.erp.tables import ErpJob, ErpTimebill

_AMOUNTS = (
    ("hours", "hours"),
    ("rate", "rate"),
    ("costAmount", "cost_amount"),
    ("billAmount", "bill_amount"),
)
"""Decimal fields, stored as text (a null hours or costAmount is ignored)."""


class TimebillType(RecordType):
    name = "timebill"
    table = ErpTimebill
    body = TimebillBody
    required = ("customer", "tranDate", "department", "costAmount")
    filters = {
        "externalId": "external_id",
        "customer": "job_id",
        "department": "department_id",
        "postingPeriod": "period_id",
        "reverses": "reverses_id",
    }
    copied = (
        ("memo", "memo"),
        ("custcol_pssync_kind", "kind"),
        ("custcol_pssync_source_entry", "source_entry"),
    )
    copied_unless_null = (("tranDate", "tran_date"), ("isBillable", "is_billable"))

    def resolved(self, s: Session, body: _Body, given: set[str]) -> dict[str, Any]:
        assert isinstance(body, TimebillBody)
        out: dict[str, Any] = {}
        if "customer" in given and body.customer is not None:
            out["job_id"] = _lookup(s, ErpJob, body.customer, "customer").id
        if "employee" in given:
            ref = body.employee
            out["employee"] = (
                None if ref is None else (ref.id if ref.id else f"eid:{ref.externalId}")
            )
        for field, column in _AMOUNTS:
            if field in given:
                value = getattr(body, field)
                if value is None and column in ("hours", "cost_amount"):
                    continue
                out[column] = _dec(value)
        out |= _currency_given(body, given)
        if "department" in given and body.department is not None:
            out["department_id"] = _department_ref(s, body.department)
        if "reverses" in given:
            out["reverses_id"] = (
                None
                if body.reverses is None
                else _lookup(s, ErpTimebill, body.reverses, "reverses").id
            )
        return out

    def check(self, s: Session, row: ErpTimebill, changed: set[str] | None) -> None:
        job = _get_row(s, ErpJob, row.job_id)
        if job is None:  # pragma: no cover - values() resolved it
            raise TwinError(400, "INVALID_KEY_OR_REF", "unknown project", "customer")
        if job.status == JOB_STATUS_CLOSED:
            raise TwinError(
                400,
                "PROJECT_CLOSED",
                f"Project {job.company_name} ({job.id}) is closed; no costs can be posted.",
                "customer",
            )
        _check_department(s, row.department_id)
        period = _open_period(s, row.tran_date)
        row.period_id, row.period_name = period.id, period.period_name
        if row.reverses_id is not None:
            if row.reverses_id == row.id:
                raise TwinError(400, "INVALID_CONTENT", "a timebill cannot reverse itself")
            other = s.exec(
                select(ErpTimebill).where(ErpTimebill.reverses_id == row.reverses_id)
            ).first()
            if other is not None and other.id != row.id:
                raise TwinError(
                    400,
                    "ALREADY_REVERSED",
                    f"Timebill {row.reverses_id} is already reversed by {other.id}.",
                    "reverses",
                )

    def fields_json(self, s: Session, row: ErpTimebill) -> dict[str, Any]:
        employee: dict[str, Any] | None = None
        if row.employee is not None:
            employee = (
                {"externalId": row.employee[4:]}
                if row.employee.startswith("eid:")
                else {"id": row.employee}
            )
        return {
            "customer": _ref(row.job_id),
            "employee": employee,
            "tranDate": row.tran_date.isoformat(),
            "postingPeriod": _ref(row.period_id, row.period_name),
            "hours": _num(row.hours),
            "rate": _num(row.rate),
            "costAmount": _num(row.cost_amount),
            "billAmount": _num(row.bill_amount),
            "currency": _ref(row.currency, row.currency),
            "department": _ref(row.department_id),
            "memo": row.memo,
            "isBillable": row.is_billable,
            "reverses": _ref(row.reverses_id),
            "custcol_pssync_kind": row.kind,
            "custcol_pssync_source_entry": row.source_entry,
        }
