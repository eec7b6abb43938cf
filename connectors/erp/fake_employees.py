"""The in-memory ERP's employees (`ErpEmployeesPort`): pssync's fields of each, keyed by the
worker id. The labor cost stays in `cost_rates` (the labor cost mixin's), untouched here."""

from __future__ import annotations

from connectors.erp.employees import ErpEmployee, changed_fields, merged
from contracts.errors import BusinessRuleViolation, PssyncError
from contracts.systems import System


class FakeEmployeesMixin:
    """Employees by worker id; `employee_writes` counts the writes that changed one."""

    cost_centers: dict[str, bool]

    @property
    def employees(self) -> dict[str, ErpEmployee]:
        found: dict[str, ErpEmployee] | None = self.__dict__.get("_employees")
        if found is None:
            found = self.__dict__["_employees"] = {}
        return found

    @property
    def employee_writes(self) -> int:
        return int(self.__dict__.get("_employee_writes", 0))

    def fail_employee_next(self, error: PssyncError, times: int = 1) -> None:
        """Make the next `times` employee writes fail with `error` (before anything is stored)."""
        self.__dict__.setdefault("_employee_failures", []).extend([error] * times)

    async def get_employee(self, worker_id: str) -> ErpEmployee | None:
        return self.employees.get(worker_id)

    async def upsert_employee(
        self, employee: ErpEmployee, *, create: bool = True
    ) -> ErpEmployee | None:
        pending: list[PssyncError] = self.__dict__.get("_employee_failures", [])
        if pending:
            raise pending.pop(0)
        existing = self.employees.get(employee.worker_id)
        if existing is None and not create:
            return None
        target = merged(existing, employee)
        if not changed_fields(existing, target):
            return target
        code = target.cost_center
        if code is not None and code != (existing.cost_center if existing else None):
            if not self.cost_centers.get(code, False):
                raise BusinessRuleViolation(
                    "INVALID_COST_CENTER",
                    f"The department (cost center) {code} is unknown or inactive.",
                    field="department",
                    system=System.ERP,
                )
        self.employees[employee.worker_id] = target
        self.__dict__["_employee_writes"] = self.employee_writes + 1
        return target
