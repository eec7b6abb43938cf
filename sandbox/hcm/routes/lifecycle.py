"""Lifecycle business processes: `POST /workers` (Hire Employee), `POST /workers/{id}/jobChanges`
(Change Job: transfer, job change, FTE change), `POST /workers/{id}/compensationChanges`,
`POST /workers/{id}/leavesOfAbsence` and `POST /workers/{id}/returnFromLeave`.

Each completes at once and records an event (ordered by its entry moment, as Workday's
transaction log is) with a `changes` object in Workday field names (`location`, `costCenter`,
`practice`, `manager`, `jobProfile`, `costRate`, `fte`, `leaveUntil`) that the changed-workers
window renders. Effective dates are days in the worker's `timeZone` (IANA, on the worker)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter
from sqlmodel import select

from sandbox._ids import workday_id
from sandbox._twin import TwinError
from sandbox.hcm.bodies import (
    Amount,
    CompensationChangeRequest,
    HireRequest,
    JobChangeRequest,
    LeaveRequest,
    ReturnFromLeaveRequest,
    _refuse,
    _utc,
)
from sandbox.hcm.context import HcmTwin
from sandbox.hcm.tables import (
    EVENT_COST_RATE_CHANGE,
    EVENT_HIRE,
    EVENT_LEAVE_END,
    EVENT_LEAVE_START,
    HcmWorker,
)


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _refuse("INVALID_TIME_ZONE", f"not an IANA time zone: {name!r}", "timeZone") from None
    return name


def _rate(amount: Amount | None) -> dict[str, str] | None:
    return None if amount is None else {"amount": str(amount.amount), "currency": amount.currency}


def _ref(descriptor: str | None) -> dict[str, str] | None:
    return None if descriptor is None else {"descriptor": descriptor}


def _changes(**values: Any) -> str:
    return json.dumps({k: v for k, v in values.items() if v is not None})


def _employed(w: HcmWorker, day: date) -> None:
    if w.termination_date is not None and day > w.termination_date:
        raise _refuse(
            "WORKER_TERMINATED",
            f"the worker is terminated effective {w.termination_date}",
            "effectiveDate",
        )
    if day < w.hire_date:
        raise _refuse(
            "BEFORE_HIRE", f"{day} is before the hire date {w.hire_date}", "effectiveDate"
        )


def register(router: APIRouter, twin: HcmTwin) -> None:
    """Add the lifecycle business process routes to `router`."""

    @router.post("/workers", summary="Hire Employee")
    async def hire(tenant: str, request: HireRequest) -> dict[str, Any]:
        twin.check_tenant(tenant)
        zone = _zone(request.timeZone)
        with twin.state.session() as session:
            found = session.exec(
                select(HcmWorker).where(HcmWorker.worker_id == request.workerId)
            ).first()
            if found is not None:
                raise TwinError(
                    409, "WORKER_EXISTS", f"worker {request.workerId} exists", "workerId"
                )
            w = HcmWorker(
                wid=workday_id("worker", request.workerId),
                worker_id=request.workerId,
                first_name=request.firstName,
                last_name=request.lastName,
                email=request.email,
                business_title=request.jobProfile,
                job_profile=request.jobProfile,
                location=request.location,
                cost_center_id=request.costCenterId,
                cost_center_name=request.costCenterName or request.costCenterId,
                hire_date=request.hireDate,
                original_hire_date=request.hireDate,
                last_updated=_utc(twin.now()),
                time_zone=zone,
                practice=request.practice,
                manager_worker_id=request.managerWorkerId,
                fte=str(request.fte),
                cost_rate=json.dumps(_rate(request.costRate)) if request.costRate else None,
            )
            session.add(w)
            return twin.complete(
                session,
                w,
                EVENT_HIRE,
                request.hireDate,
                changes=_changes(
                    location=_ref(request.location),
                    costCenter={"id": request.costCenterId},
                    practice=_ref(request.practice),
                    manager={"workerId": request.managerWorkerId}
                    if request.managerWorkerId
                    else None,
                    jobProfile=_ref(request.jobProfile),
                    costRate=_rate(request.costRate),
                    fte=str(request.fte),
                ),
            )

    @router.post("/workers/{worker}/jobChanges", summary="Change Job")
    async def change_job(tenant: str, worker: str, request: JobChangeRequest) -> dict[str, Any]:
        twin.check_tenant(tenant)
        with twin.worker(worker) as (session, w):
            _employed(w, request.effectiveDate)
            if request.timeZone is not None:
                w.time_zone = _zone(request.timeZone)
            for column, value in (
                ("job_profile", request.jobProfile),
                ("business_title", request.jobProfile),
                ("location", request.location),
                ("cost_center_id", request.costCenterId),
                ("cost_center_name", request.costCenterName or request.costCenterId),
                ("practice", request.practice),
                ("manager_worker_id", request.managerWorkerId),
                ("fte", None if request.fte is None else str(request.fte)),
            ):
                if value is not None:
                    setattr(w, column, value)
            if request.costRate is not None:
                w.cost_rate = json.dumps(_rate(request.costRate))
            return twin.complete(
                session,
                w,
                request.type,
                request.effectiveDate,
                reason=request.reason,
                changes=_changes(
                    location=_ref(request.location),
                    costCenter={"id": request.costCenterId} if request.costCenterId else None,
                    practice=_ref(request.practice),
                    manager={"workerId": request.managerWorkerId}
                    if request.managerWorkerId
                    else None,
                    jobProfile=_ref(request.jobProfile),
                    costRate=_rate(request.costRate),
                    fte=None if request.fte is None else str(request.fte),
                ),
            )

    @router.post("/workers/{worker}/compensationChanges", summary="Request Compensation Change")
    async def change_compensation(
        tenant: str, worker: str, request: CompensationChangeRequest
    ) -> dict[str, Any]:
        twin.check_tenant(tenant)
        with twin.worker(worker) as (session, w):
            _employed(w, request.effectiveDate)
            w.cost_rate = json.dumps(_rate(request.costRate))
            return twin.complete(
                session,
                w,
                EVENT_COST_RATE_CHANGE,
                request.effectiveDate,
                reason=request.reason,
                changes=_changes(costRate=_rate(request.costRate)),
            )

    @router.post("/workers/{worker}/leavesOfAbsence", summary="Request Leave of Absence")
    async def start_leave(tenant: str, worker: str, request: LeaveRequest) -> dict[str, Any]:
        twin.check_tenant(tenant)
        until = request.estimatedLastDayOfLeave
        if until is not None and until < request.firstDayOfLeave:
            raise _refuse(
                "LEAVE_ENDS_BEFORE_START",
                "the estimated last day is before the first day of leave",
                "estimatedLastDayOfLeave",
            )
        with twin.worker(worker) as (session, w):
            _employed(w, request.firstDayOfLeave)
            w.on_leave = True
            return twin.complete(
                session,
                w,
                EVENT_LEAVE_START,
                request.firstDayOfLeave,
                reason=request.reason,
                changes=_changes(leaveUntil=until.isoformat() if until else None),
            )

    @router.post("/workers/{worker}/returnFromLeave", summary="Return from Leave")
    async def end_leave(
        tenant: str, worker: str, request: ReturnFromLeaveRequest
    ) -> dict[str, Any]:
        twin.check_tenant(tenant)
        with twin.worker(worker) as (session, w):
            if not w.on_leave:
                raise _refuse("NOT_ON_LEAVE", "the worker is not on leave", "worker")
            w.on_leave = False
            return twin.complete(
                session, w, EVENT_LEAVE_END, request.firstDayBackAtWork, changes=_changes()
            )
