"""The `employee` record type, with the labor cost the ERP owns and the identity HCM owns (names,
e-mail, hire date, department, active), which pssync upserts by the worker's external ID."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from sandbox.erp.bodies import EmployeeBody, _Body
from sandbox.erp.common import _dec, _num
from sandbox.erp.records.base import RecordType, _currency_given, _ref
from sandbox.erp.records.department import _department_ref
from sandbox.erp.tables import ErpEmployee


class EmployeeType(RecordType):
    name = "employee"
    table = ErpEmployee
    body = EmployeeBody
    required = ("firstName", "lastName")
    filters = {"externalId": "external_id", "department": "department_id"}
    copied = (
        ("firstName", "first_name"),
        ("lastName", "last_name"),
        ("email", "email"),
        ("hireDate", "hire_date"),
    )
    copied_unless_null = (("isInactive", "is_inactive"),)

    def resolved(self, s: Session, body: _Body, given: set[str]) -> dict[str, Any]:
        assert isinstance(body, EmployeeBody)
        out: dict[str, Any] = {}
        if "laborCost" in given:
            out["labor_cost"] = _dec(body.laborCost)
        out |= _currency_given(body, given)
        if "department" in given:
            out["department_id"] = (
                None if body.department is None else _department_ref(s, body.department)
            )
        return out

    def fields_json(self, s: Session, row: ErpEmployee) -> dict[str, Any]:
        return {
            "firstName": row.first_name,
            "lastName": row.last_name,
            "email": row.email,
            "laborCost": _num(row.labor_cost),
            "currency": _ref(row.currency, row.currency),
            "department": _ref(row.department_id),
            "isInactive": row.is_inactive,
            "hireDate": row.hire_date.isoformat() if row.hire_date else None,
        }
