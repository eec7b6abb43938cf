"""The `department` record type (a cost center) and the cost-center checks other record
types make."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from sandbox._twin import TwinError
from sandbox.erp.bodies import DepartmentBody, Ref
from sandbox.erp.lookups import _get_row, _lookup
from sandbox.erp.records.base import RecordType
from sandbox.erp.tables import ErpDepartment


class DepartmentType(RecordType):
    name = "department"
    table = ErpDepartment
    body = DepartmentBody
    required = ("name",)
    filters = {"externalId": "external_id", "name": "name", "isInactive": "is_inactive"}
    copied = (("name", "name"),)
    copied_unless_null = (("isInactive", "is_inactive"),)

    def fields_json(self, s: Session, row: ErpDepartment) -> dict[str, Any]:
        return {"name": row.name, "isInactive": row.is_inactive}


def _check_department(s: Session, department_id: int | None) -> None:
    dept = _get_row(s, ErpDepartment, department_id)
    if dept is None or dept.is_inactive:
        what = "inactive" if dept is not None else "unknown"
        raise TwinError(
            400,
            "INVALID_COST_CENTER",
            f"The department (cost center) {department_id} is {what}.",
            "department",
        )


def _department_ref(s: Session, ref: Ref) -> int:
    """Resolve a department reference; an unknown one is a cost-center error."""
    try:
        return int(_lookup(s, ErpDepartment, ref, "department").id)
    except TwinError:
        key = ref.id or f"eid:{ref.externalId}"
        raise TwinError(
            400,
            "INVALID_COST_CENTER",
            f"The department (cost center) {key} is unknown.",
            "department",
        ) from None
