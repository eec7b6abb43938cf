"""The ERP's employee, as far as pssync keeps it: the worker's identity from HCM.

    employee = ErpEmployee(worker_id="W-1", first_name="Grace", last_name="Hopper",
                           email="grace@example.com", hire_date=date(2026, 3, 1))
    stored = await erp.upsert_employee(employee)          # created, or brought to these fields
    same = await erp.upsert_employee(employee)            # a repeat writes nothing

HCM owns who a worker is (DESIGN: system-of-record authority), so a hire or rehire makes the
ERP employee, keyed by the HCM worker id (the employee's external ID), and later changes keep
it in step. pssync writes **only** these fields: first and last name, e-mail, hire date (the
latest hire or rehire), department (the worker's cost center) and whether the employee is
active. Everything else on the employee — its labor cost and currency (the labor cost rate
history's, `labor_cost.py`), subsidiary, supervisor, title, anything HR's own ERP feed sets —
is never sent, so an employee HR made keeps it. A field left None leaves the ERP's value as it
is (`merged`): a change that does not carry a worker's name never blanks it. `FakeErp` has it
in memory (`connectors/erp/fake_employees.py`).
"""

from __future__ import annotations

from datetime import date
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

EMPLOYEE_FIELDS = ("first_name", "last_name", "email", "hire_date", "cost_center", "active")
"""The employee fields pssync writes (and the only ones it compares)."""


class ErpEmployee(BaseModel):
    """pssync's fields of an ERP employee. Written: a field None leaves the ERP's value as it
    is. Read: what the ERP holds (None: nothing)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    worker_id: str
    """The HCM worker id: the employee's external ID."""
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    hire_date: date | None = None
    """The latest hire or rehire."""
    cost_center: str | None = None
    """The cost center code: the department's external ID."""
    active: bool | None = None
    """True on a hire or rehire; a new employee is active unless told otherwise."""


def split_name(name: str) -> tuple[str, str]:
    """(first, last) of a worker's full name as HCM formats it, given name first: the first
    word, then the rest ("Grace Brewster Hopper" -> "Grace", "Brewster Hopper"). A one-word
    name is both (the ERP wants both)."""
    words = name.split()
    if not words:
        raise ValueError("a worker's name is empty")
    if len(words) == 1:
        return words[0], words[0]
    return words[0], " ".join(words[1:])


def merged(existing: ErpEmployee | None, wanted: ErpEmployee) -> ErpEmployee:
    """What the employee holds after writing `wanted` over `existing` (None: a new one):
    wanted's fields, and existing's where wanted leaves one None."""
    keep: dict[str, object] = {}
    for name in EMPLOYEE_FIELDS:
        if getattr(wanted, name) is None:
            keep[name] = getattr(existing, name) if existing is not None else None
    if keep.get("active", True) is None:
        keep["active"] = True
    return wanted.model_copy(update=keep)


def changed_fields(existing: ErpEmployee | None, target: ErpEmployee) -> list[str]:
    """The fields of `target` the ERP must be sent (every set one when it has no employee)."""
    if existing is None:
        return [n for n in EMPLOYEE_FIELDS if getattr(target, n) is not None]
    return [n for n in EMPLOYEE_FIELDS if getattr(target, n) != getattr(existing, n)]


@runtime_checkable
class ErpEmployeesPort(Protocol):
    async def get_employee(self, worker_id: str) -> ErpEmployee | None:
        """The worker's employee (pssync's fields of it), or None when the ERP has none."""
        ...

    async def upsert_employee(
        self, employee: ErpEmployee, *, create: bool = True
    ) -> ErpEmployee | None:
        """Bring the worker's employee to `employee` (upsert by the worker id), writing only
        the fields that differ — nothing when none does, so a repeat is a no-op. Without an
        employee: make it when `create`, else leave it (None). The employee as it now is."""
        ...
