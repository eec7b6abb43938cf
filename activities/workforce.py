"""Activities of the worker-lifecycle process: conflicts a change collides with, the worker's
PSA resource, their ERP employee and their ERP labor cost rate.

- `find_conflicts`: read-only, run at once when a change arrives — the worker's assignments
  during a leave, and after a transfer those on another practice's projects;
- `upsert_resource`: the PSA resource brought to the worker's state (role, location,
  practice, manager, FTE, the day they can be staffed from, the leave calendar). Safe to
  repeat: the resource is keyed by the worker id and the leave calendar is merged, not
  appended;
- `upsert_employee` (ERP queue): the worker's ERP employee made on a hire or rehire and kept
  in step later — names, e-mail, hire date, department (the cost center, when the ERP has it
  active) and active, nothing else (`connectors/erp/employees.py`). Safe to repeat: keyed by
  the worker id, and nothing is written when the employee already holds it;
- `put_labor_cost_rate` (ERP queue): a new row of the worker's effective-dated labor cost,
  keyed by the HCM event; rows and postings already there are never rewritten.

The ports are `PsaResourcesPort` / `ErpEmployeesPort` / `ErpLaborCostPort`; an adapter without
them is refused typed (BusinessRuleViolation NOT_SUPPORTED: an exception item, not an endless
retry). The composition root (`worker.py`) builds and registers them (`erp_bound`: the ERP
queue's).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from temporalio import activity

from activities._errors import translate_errors
from connectors.erp.employees import ErpEmployee, ErpEmployeesPort, split_name
from connectors.erp.labor_cost import ErpLaborCostPort, LaborCostRate
from connectors.erp.port import CostCenterStatus
from connectors.psa import PsaPort
from connectors.psa.resources import LeavePeriod, PsaResource, PsaResourcesPort
from contracts.errors import BusinessRuleViolation
from contracts.money import Money
from contracts.systems import System
from contracts.v1 import Assignment, AssignmentKind
from contracts.v1.workforce import (
    LifecycleConflict,
    WorkerChange,
    WorkerChangeKind,
    WorkerState,
)

OPENING_DAY = date(1970, 1, 1)
"""The effective date of a worker's opening labor cost row (before any HCM change)."""
OPENING_KEY = "opening"


class FindLifecycleConflicts(BaseModel):
    change: WorkerChange


class UpsertResource(BaseModel):
    state: WorkerState
    change: WorkerChange
    """The change just applied (a leave's end closes the open leave the day before)."""


class UpsertEmployee(BaseModel):
    state: WorkerState
    """The worker after the change."""
    create: bool = False
    """A hire or rehire: make the employee when the ERP has none, and make it active. Other
    changes only bring an existing employee in step."""


class PutLaborCostRate(BaseModel):
    worker_id: str
    rate: Money
    effective_from: date
    key: str
    sequence: int = 0
    """HCM's event sequence (a same-day correction wins over the row it corrects)."""
    today: date
    """The worker's day when the change took effect (decides the employee's current rate)."""


def _not_supported(what: str, system: System) -> BusinessRuleViolation:
    return BusinessRuleViolation(
        "NOT_SUPPORTED", f"this {system} adapter has no {what}", system=system
    )


def merge_leaves(
    leaves: list[LeavePeriod], state: WorkerState, change: WorkerChange
) -> list[LeavePeriod]:
    """The leave calendar after `change`: a leave start sets the leave that starts that day
    (a correction replaces it); a leave end closes the open leave the day before."""
    merged = list(leaves)
    if change.kind is WorkerChangeKind.LEAVE_END:
        day = change.effective_date
        merged = [
            leave.model_copy(update={"end": day - timedelta(days=1)})
            if leave.start < day and (leave.end is None or leave.end >= day)
            else leave
            for leave in merged
            if leave.start < day or leave.end is not None
        ]
    elif state.on_leave and state.leave_from is not None:
        merged = [leave for leave in merged if leave.start != state.leave_from]
        merged.append(LeavePeriod(start=state.leave_from, end=state.leave_until))
    return sorted(merged, key=lambda leave: leave.start)


class WorkforceActivities:
    def __init__(self, psa: PsaPort, erp: object) -> None:
        self.psa = psa
        self.resources = psa if isinstance(psa, PsaResourcesPort) else None
        self.labor = erp if isinstance(erp, ErpLaborCostPort) else None
        self.employees = erp if isinstance(erp, ErpEmployeesPort) else None
        self.erp = erp
        self._opened: set[str] = set()
        """Workers this process has seen a labor cost row of: their history is not empty, and
        pssync never removes a row, so no opening row can be due (`_open_history`)."""

    def erp_bound(self) -> list[Callable[..., Any]]:
        """The activities that run on the ERP task queue (the employee, then its labor cost)."""
        return [self.upsert_employee, self.put_labor_cost_rate]

    @activity.defn(name="workforce.find_conflicts")
    @translate_errors
    async def find_conflicts(self, request: FindLifecycleConflicts) -> list[LifecycleConflict]:
        change = request.change
        if change.kind is WorkerChangeKind.LEAVE_START:
            return await self._during_leave(change)
        if change.kind is WorkerChangeKind.TRANSFER and change.practice:
            return await self._other_practice(change, change.practice)
        return []

    async def _assignments(
        self, worker_id: str, from_day: date, through: date | None
    ) -> list[Assignment]:
        found = await self.psa.list_assignments(worker_id=worker_id)
        return sorted(
            (
                a
                for a in found
                if a.kind is AssignmentKind.NAMED
                and a.end_date >= from_day
                and (through is None or a.start_date <= through)
            ),
            key=lambda a: (a.start_date, a.external_id),
        )

    async def _during_leave(self, change: WorkerChange) -> list[LifecycleConflict]:
        until = change.leave_until
        span = f"{change.effective_date}..{until or 'open-ended'}"
        return [
            LifecycleConflict(
                code="ASSIGNMENT_DURING_LEAVE",
                assignment_id=a.external_id,
                project_id=a.project_id,
                start_date=a.start_date,
                end_date=a.end_date,
                detail=f"assignment {a.external_id} on project {a.project_id} "
                f"({a.start_date}..{a.end_date}) overlaps the leave {span}",
            )
            for a in await self._assignments(change.worker_id, change.effective_date, until)
        ]

    async def _other_practice(self, change: WorkerChange, practice: str) -> list[LifecycleConflict]:
        conflicts: list[LifecycleConflict] = []
        practices: dict[str, str | None] = {}
        for a in await self._assignments(change.worker_id, change.effective_date, None):
            if a.project_id not in practices:
                practices[a.project_id] = (await self.psa.get_project(a.project_id)).practice
            theirs = practices[a.project_id]
            if theirs is None or theirs == practice:
                continue
            conflicts.append(
                LifecycleConflict(
                    code="ASSIGNMENT_OTHER_PRACTICE",
                    assignment_id=a.external_id,
                    project_id=a.project_id,
                    start_date=a.start_date,
                    end_date=a.end_date,
                    detail=f"assignment {a.external_id} on project {a.project_id} "
                    f"(practice {theirs}) runs past the transfer to practice {practice} "
                    f"effective {change.effective_date}",
                )
            )
        return conflicts

    @activity.defn(name="workforce.upsert_resource")
    @translate_errors
    async def upsert_resource(self, request: UpsertResource) -> PsaResource:
        if self.resources is None:
            raise _not_supported("resource pool", System.PSA)
        state = request.state
        existing = await self.resources.get_resource(state.worker_id)
        leaves = merge_leaves(existing.leaves if existing else [], state, request.change)
        resource = PsaResource(
            worker_id=state.worker_id,
            name=state.name or (existing.name if existing else state.worker_id),
            email=state.email,
            role=state.role,
            location=state.location,
            practice=state.practice,
            manager_id=state.manager_id,
            fte=state.fte if state.fte is not None else (existing.fte if existing else Decimal(1)),
            available_from=state.employed_from,
            leaves=leaves,
            active=True,
        )
        if existing is None or existing != resource:  # equal: a retry after the write
            existing = await self.resources.upsert_resource(resource, current=existing)
        if request.change.kind is WorkerChangeKind.REHIRE:
            # The termination closed the user to time after the old last day; back at work,
            # they book time again from the rehire date (repeat-safe).
            await self.psa.reopen_resource_to_time(state.worker_id)
        return existing

    @activity.defn(name="workforce.upsert_employee")
    @translate_errors
    async def upsert_employee(self, request: UpsertEmployee) -> ErpEmployee | None:
        if self.employees is None:
            raise _not_supported("employee master", System.ERP)
        state = request.state
        name = state.name or (state.worker_id if request.create else None)
        first, last = split_name(name) if name else (None, None)
        wanted = ErpEmployee(
            worker_id=state.worker_id,
            first_name=first,
            last_name=last,
            email=state.email,
            hire_date=state.employed_from,
            cost_center=await self._department(state),
            active=True if request.create else None,
        )
        return await self.employees.upsert_employee(wanted, create=request.create)

    async def _department(self, state: WorkerState) -> str | None:
        """The worker's cost center when the ERP has it as an active department; else None
        (the employee's department is left as it is, and the activity log says why)."""
        code = state.cost_center
        status = getattr(self.erp, "cost_center_status", None)
        if code is None or status is None:
            return None
        found: CostCenterStatus = await status(code)
        if found is CostCenterStatus.ACTIVE:
            return code
        activity.logger.warning(
            "cost center %s of worker %s is %s in the ERP: the employee's department is left "
            "as it is",
            code,
            state.worker_id,
            found.value,
        )
        return None

    async def _open_history(self, worker_id: str) -> None:
        """Before a worker's first rate row: the labor cost the employee has now becomes the
        opening row (in force before every later row), so time dated before the first change
        keeps being priced at it once the change is in force. Keyed, so a retry adds nothing.
        The history is read only until this process has seen a row of the worker's: after
        that it cannot be empty, and the read could not change the outcome."""
        assert self.labor is not None
        current = getattr(self.labor, "get_cost_rate", None)
        if current is None or worker_id in self._opened:
            return
        if await self.labor.labor_cost_rates(worker_id):
            self._opened.add(worker_id)
            return
        rate: Money | None = await current(worker_id)
        if rate is None:
            return
        opening = LaborCostRate(
            worker_id=worker_id, rate=rate, effective_from=OPENING_DAY, key=OPENING_KEY
        )
        await self.labor.put_labor_cost_rate(opening, today=OPENING_DAY)

    @activity.defn(name="workforce.put_labor_cost_rate")
    @translate_errors
    async def put_labor_cost_rate(self, request: PutLaborCostRate) -> LaborCostRate:
        if self.labor is None:
            raise _not_supported("effective-dated labor cost", System.ERP)
        await self._open_history(request.worker_id)
        stored = await self.labor.put_labor_cost_rate(
            LaborCostRate(
                worker_id=request.worker_id,
                rate=request.rate,
                effective_from=request.effective_from,
                key=request.key,
                sequence=request.sequence,
            ),
            today=request.today,
        )
        self._opened.add(request.worker_id)
        return stored
