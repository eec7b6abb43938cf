"""The HCM ports (`HcmPort`, read-only; `HcmHrActions`, the HR business processes of tests and
the demo), the worker change events they answer with, and the checks both adapters use to
tell an HR action the worker already has."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from contracts.money import Money
from contracts.v1 import Worker


class WorkerEventType(StrEnum):
    HIRE = "hire"
    TERMINATE = "terminate"
    RESCIND = "rescind"
    REHIRE = "rehire"
    # lifecycle changes (the WorkerLifecycle process); the four above are the termination's
    TRANSFER = "transfer"
    JOB_CHANGE = "job_change"
    COST_RATE_CHANGE = "cost_rate_change"
    LEAVE_START = "leave_start"
    LEAVE_END = "leave_end"
    FTE_CHANGE = "fte_change"


class ChangedFields(BaseModel):
    """What a lifecycle event changes (None: not changed by it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    location: str | None = None
    cost_center: str | None = None
    practice: str | None = None
    manager_id: str | None = None
    role: str | None = None
    cost_rate: Money | None = None
    """Labor cost per hour."""
    fte: Decimal | None = None
    leave_until: date | None = None
    """A leave's expected last day (None: open-ended)."""


class WorkerChange(BaseModel):
    """One business process event entered in HCM, with the worker as HCM has it now."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    worker: Worker
    event_id: str
    event_type: WorkerEventType
    effective_date: date
    entry_moment: datetime
    termination_date: date | None = None
    last_day_worked: date | None = None
    sequence: int | None = None
    """HCM's ordering of its events (entry order); None when the HCM gave none."""
    time_zone: str | None = None
    """The worker's IANA time zone, where effective dates are days (None: not exposed)."""
    changed: ChangedFields = ChangedFields()


class HcmPort(Protocol):
    """What pssync reads from HCM (the system of record for workers)."""

    async def get_worker(self, worker_id: str) -> Worker:
        """By employee ID (`Worker.external_id`); NotFoundError when unknown."""
        ...

    async def list_workers(self) -> list[Worker]: ...

    async def changed_workers(
        self, updated_from: datetime, updated_through: datetime
    ) -> list[WorkerChange]:
        """Events entered at `updated_from <= moment < updated_through`, oldest first."""
        ...

    async def worker_active_on(self, worker_id: str, day: date) -> bool:
        """Was the worker employed and working on `day` (hire date .. last day worked)?
        Follows from `get_worker`: adapters that subclass the port inherit it."""
        return (await self.get_worker(worker_id)).active_on(day)


class HcmHrActions(HcmPort, Protocol):
    """HR business processes, for tests and the demo (pssync itself never terminates)."""

    async def terminate(
        self,
        worker_id: str,
        termination_date: date,
        last_day: date | None = None,
        reason: str | None = None,
    ) -> Worker: ...

    async def rescind_termination(self, worker_id: str) -> Worker: ...

    async def rehire(self, worker_id: str, hire_date: date) -> Worker: ...


# --------------------------------------------------------------------------- applied actions


def _has_termination(termination_date: date, last_day: date | None, worker: Worker) -> bool:
    return worker.termination_date == termination_date and worker.last_day_worked == (
        last_day or termination_date
    )


def _rehired(hire_date: date, worker: Worker) -> bool:
    return worker.termination_date is None and worker.hire_date == hire_date
