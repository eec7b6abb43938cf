"""NetSuite employees (`ErpEmployeesPort`): the `employee` record of an HCM worker, upserted by
external ID (`PUT .../employee/eid:<worker id>`), so a retried write after a lost answer still
leaves one employee.

Read, compare, write: the employee is read first and only the fields pssync owns that differ
are sent (`firstName`, `lastName`, `email`, `hireDate`, `department`, `isInactive`); an upsert
of an existing record changes the fields its body names and no others, so the labor cost (the
rate history's, `labor_cost.py`), currency, subsidiary and whatever HR's own feed set stay as
they are. Nothing differs: nothing is sent. The department is named by the cost center code
(its external ID) and read back through the department record's `externalId`."""

from __future__ import annotations

from typing import Any

from connectors._vendor_errors import unmappable
from connectors.erp.employees import ErpEmployee, changed_fields, merged
from connectors.erp.netsuite._base import _NetSuiteBase
from connectors.erp.port import SYSTEM
from connectors.erp.values import DateFormat, flag, ref_id
from contracts.errors import NotFoundError

RECORD = "employee"
_ISO = DateFormat()


@unmappable(SYSTEM, RECORD)
def employee_from_netsuite(
    body: dict[str, Any], *, worker_id: str, cost_center: str | None
) -> ErpEmployee:
    """An `employee` record GET: pssync's fields of it (`cost_center` already looked up)."""
    hired = body.get("hireDate")
    return ErpEmployee(
        worker_id=worker_id,
        first_name=body.get("firstName") or None,
        last_name=body.get("lastName") or None,
        email=body.get("email") or None,
        hire_date=_ISO.parse(hired) if hired else None,
        cost_center=cost_center,
        active=not flag(body.get("isInactive", False)),
    )


def employee_body(employee: ErpEmployee, fields: list[str]) -> dict[str, Any]:
    """The body fields for `fields` of `employee`, the department left out (a reference the
    caller resolves)."""
    hired = employee.hire_date.isoformat() if employee.hire_date else None
    names: dict[str, tuple[str, Any]] = {
        "first_name": ("firstName", employee.first_name),
        "last_name": ("lastName", employee.last_name),
        "email": ("email", employee.email),
        "hire_date": ("hireDate", hired),
        "active": ("isInactive", not employee.active),
    }
    return {names[f][0]: names[f][1] for f in fields if f in names}


class _EmployeesMixin(_NetSuiteBase):
    async def get_employee(self, worker_id: str) -> ErpEmployee | None:
        try:
            body = await self._get(self._path(RECORD, worker_id, external=True))
        except NotFoundError:
            return None
        department = ref_id(body.get("department"))
        code = await self._department_code(department) if department else None
        return employee_from_netsuite(body, worker_id=worker_id, cost_center=code)

    async def upsert_employee(
        self, employee: ErpEmployee, *, create: bool = True
    ) -> ErpEmployee | None:
        existing = await self.get_employee(employee.worker_id)
        if existing is None and not create:
            return None
        target = merged(existing, employee)
        fields = changed_fields(existing, target)
        if not fields:
            return target
        body = employee_body(target, fields)
        if "cost_center" in fields and target.cost_center is not None:
            body["department"] = await self._department_ref(target.cost_center)
        await self._send("PUT", self._path(RECORD, employee.worker_id, external=True), body)
        return target

    async def _department_code(self, internal_id: str) -> str | None:
        """The cost center code (external ID) of a department, read once; None when the
        department has none (one HR made without a code)."""
        key = ("department-code", internal_id)
        if key not in self._ids:
            try:
                body = await self._get(self._path("department", internal_id, external=False))
            except NotFoundError:
                return None
            code = body.get("externalId") if isinstance(body, dict) else None
            if not code:
                return None
            self._ids[key] = str(code)
            self._ids[("department", str(code))] = internal_id
        return self._ids[key]
