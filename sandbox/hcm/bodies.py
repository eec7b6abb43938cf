"""The HCM twin's bodies: Workday-like errors, business process request bodies, and the worker
and event views it answers."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox._ids import workday_id
from sandbox._twin import TwinError
from sandbox.hcm.tables import (
    EVENT_HIRE,
    EVENT_REHIRE,
    EVENT_RESCIND,
    EVENT_TERMINATE,
    HcmEvent,
    HcmWorker,
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def wd_datetime(value: datetime) -> str:
    """Workday's date-time rendering: `2025-06-12T09:00:00.000Z`."""
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _utc(value: datetime) -> datetime:
    """Aware UTC (naive values are UTC already)."""
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- errors


def error_body(status: int, code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """Workday-like REST error: a summary `error` and the detailed `errors` list."""
    if code == "HTTP_ERROR":
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(status, "ERROR")
        if status == 404:
            message = "Resource not found"
    if status == 401:
        code = code if code in ("INVALID_LOGIN", "INVALID_SESSION_ID") else "INVALID_TOKEN"
        message = "invalid or expired access token"
    detail: dict[str, Any] = {"error": message, "code": code}
    if field:
        detail["field"] = field
    return {"error": message, "code": code, "errors": [detail]}


def _refuse(code: str, message: str, field: str | None = None) -> TwinError:
    return TwinError(400, code, message, field)


# --------------------------------------------------------------------------- request bodies


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TerminateRequest(_Body):
    terminationDate: date  # Workday's field names
    lastDayOfWork: date | None = None
    reason: str | None = Field(default=None, max_length=200)


class RescindRequest(_Body):
    reason: str | None = Field(default=None, max_length=200)


class RehireRequest(_Body):
    hireDate: date
    reason: str | None = Field(default=None, max_length=200)


class Amount(_Body):
    amount: Decimal = Field(gt=0)
    currency: str = Field(min_length=3, max_length=3)


class HireRequest(_Body):
    """Hire Employee: a new worker, effective `hireDate` in the worker's `timeZone`."""

    workerId: str = Field(min_length=1, max_length=40)
    firstName: str
    lastName: str
    email: str | None = None
    hireDate: date
    jobProfile: str | None = None
    location: str | None = None
    timeZone: str
    costCenterId: str
    costCenterName: str | None = None
    practice: str | None = None
    managerWorkerId: str | None = None
    fte: Decimal = Field(default=Decimal(1), gt=0, le=1)
    costRate: Amount | None = None


class JobChangeRequest(_Body):
    """Change Job: a transfer (location, cost center, practice, manager, time zone), a job
    change (job profile) or an FTE change, effective `effectiveDate`."""

    type: Literal["transfer", "job_change", "fte_change"]
    effectiveDate: date
    jobProfile: str | None = None
    location: str | None = None
    timeZone: str | None = None
    costCenterId: str | None = None
    costCenterName: str | None = None
    practice: str | None = None
    managerWorkerId: str | None = None
    fte: Decimal | None = Field(default=None, gt=0, le=1)
    costRate: Amount | None = None
    reason: str | None = Field(default=None, max_length=200)


class CompensationChangeRequest(_Body):
    effectiveDate: date
    costRate: Amount
    reason: str | None = Field(default=None, max_length=200)


class LeaveRequest(_Body):
    firstDayOfLeave: date
    estimatedLastDayOfLeave: date | None = None
    reason: str | None = Field(default=None, max_length=200)


class ReturnFromLeaveRequest(_Body):
    firstDayBackAtWork: date


# --------------------------------------------------------------------------- rendering


def _ref(kind: str, descriptor: str | None, ref_id: str | None = None) -> dict[str, Any] | None:
    if descriptor is None:
        return None
    return {"id": ref_id or workday_id(kind, descriptor), "descriptor": descriptor}


def _supervisory_org(name: str | None, tenant: str) -> dict[str, Any] | None:
    """The worker's supervisory organization (the twin has one per practice)."""
    if name is None:
        return None
    org_id = workday_id("supervisoryOrganization", name)
    return {
        "id": org_id,
        "descriptor": name,
        "href": f"/ccx/api/v1/{tenant}/supervisoryOrganizations/{org_id}",
    }


def render_worker(w: HcmWorker, tenant: str, today: date) -> dict[str, Any]:
    """A worker as Workday's published `/workers` view has it (`id` ... `isManager`), then the
    employment fields pssync needs and that view lacks (`workerId` ... `lastUpdated`: on a
    tenant they come from Get_Workers through a custom report; see connectors/hcm/mapping)."""
    terminated = w.termination_date is not None and w.termination_date < today
    started = w.hire_date <= today
    return {
        "id": w.wid,
        "descriptor": f"{w.first_name} {w.last_name}",
        "href": f"/ccx/api/v1/{tenant}/workers/{w.wid}",
        "businessTitle": w.business_title,
        "primarySupervisoryOrganization": _supervisory_org(w.cost_center_name, tenant),
        "primaryWorkEmail": w.email,
        "primaryWorkPhone": None,  # the twin keeps no phone numbers
        "isManager": False,  # nor a management hierarchy
        "workerId": w.worker_id,
        "workerType": _ref("workerType", w.worker_type),
        "jobProfile": _ref("jobProfile", w.job_profile),
        "location": _ref("location", w.location),
        "costCenter": _ref("costCenter", w.cost_center_name, w.cost_center_id),
        "workerStatus": {
            "active": started and not terminated,
            "onLeave": w.on_leave and started and not terminated,
            "hireDate": w.hire_date.isoformat(),
            "originalHireDate": w.original_hire_date.isoformat(),
            "terminated": terminated,
            "terminationDate": w.termination_date.isoformat() if w.termination_date else None,
            "terminationLastDayOfWork": (
                w.last_day_of_work.isoformat() if w.last_day_of_work else None
            ),
            "terminationReason": w.termination_reason,
        },
        "lastUpdated": wd_datetime(w.last_updated),
    } | ({"timeZone": w.time_zone} if w.time_zone else {})


def render_event(e: HcmEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "type": e.type,
        "descriptor": {
            EVENT_HIRE: "Hire",
            EVENT_TERMINATE: "Termination",
            EVENT_RESCIND: "Rescind Termination",
            EVENT_REHIRE: "Rehire",
            "transfer": "Change Job > Transfer",
            "job_change": "Change Job",
            "fte_change": "Change Job > Change Working Time",
            "cost_rate_change": "Request Compensation Change",
            "leave_start": "Request Leave of Absence",
            "leave_end": "Return from Leave",
        }.get(e.type, e.type),
        "effectiveDate": e.effective_date.isoformat(),
        "entryMoment": wd_datetime(e.entry_moment),
        "terminationDate": e.termination_date.isoformat() if e.termination_date else None,
        "lastDayOfWork": e.last_day_of_work.isoformat() if e.last_day_of_work else None,
        "reason": e.reason,
    } | ({"changes": json.loads(e.changes)} if e.changes is not None else {})


# --------------------------------------------------------------------------- helpers


def _parse_moment(name: str, raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _refuse(
            "INVALID_DATETIME", f"{name}: not an ISO 8601 date-time: {raw!r}", name
        ) from None
    return _utc(value)
