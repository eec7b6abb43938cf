"""Workday REST <-> canonical: workers and their business-process events, error bodies,
worker references and moments. Workday field names appear only here, in `workday.py` (and in
the twin).

Where each canonical `Worker` field comes from
----------------------------------------------
Workday publishes two worker views (examples in `tests/fixtures/vendors/workday/`):

- common `GET /workers`, `/workers/{ID}`: `id` (the WID), `descriptor`, `href`,
  `businessTitle`, `primarySupervisoryOrganization{id, descriptor, href}`, `primaryWorkEmail`,
  `primaryWorkPhone`, `isManager`; lists as `{"data": [...], "total": n}`;
- staffing `GET /workers`: `id`, `descriptor`, `workerId` (the Employee ID), `workerType`,
  `person{email, phone, id}`, `primaryJob{businessTitle, jobProfile, location,
  supervisoryOrganization, ...}`, `additionalJobs`.

canonical field <- Workday field [in which published view]:

- external_id <- `workerId` [staffing only; the common view has only the WID `id`]
- name <- `descriptor` [both]
- email <- `primaryWorkEmail` [common; optional]
- role <- the first of `jobProfile.descriptor`, `primaryJob.jobProfile.descriptor`,
  `businessTitle`, `primaryJob.businessTitle` [both; optional]
- location <- `location.descriptor`, else `primaryJob.location.descriptor` [staffing; optional]
- hire_date <- `workerStatus.hireDate` [**none**]
- status <- `workerStatus.terminated` / `.onLeave`, else active [**none**]
- termination_date, last_day_worked <- `workerStatus.terminationDate`,
  `workerStatus.terminationLastDayOfWork` [**none**; optional]
- cost_center <- `costCenter.id` [**none**]
- updated_at, source_version <- `lastUpdated` [**none**; optional]
- `WorkerChange`s <- `events[]` of the `updatedFrom`/`updatedThrough` window [**none**]
- `WorkerChange.time_zone` <- `timeZone` (IANA; Workday's location time profile) [**none**;
  optional: without it lifecycle changes are not routed, pssync never guesses a zone]
- `WorkerChange.sequence` <- `events[].sequence` when a tenant gives one, else the entry
  moment in microseconds (Workday's transaction log is ordered by entry moment) [**none**]
- `WorkerChange.changed` <- `events[].changes{location, costCenter, practice, manager,
  jobProfile, costRate{amount, currency}, fte, leaveUntil}` [**none**]

`primarySupervisoryOrganization`, `isManager`, `primaryWorkPhone`, `workerType`, `person` and
`additionalJobs` are read by nothing: a supervisory organization is the management hierarchy,
not the cost center pssync books to.

What pssync needs that the published REST views do not carry -- the Employee ID on the common
view, the hire date, the cost center, the termination dates and the changed-workers window --
Workday documents in Get_Workers (Human_Resources web service): `Worker_Status_Data`
(`Hire_Date`, `Terminated`, `Termination_Date`, `Termination_Last_Day_of_Work`, leave status),
`Organization_Data` (the organization of type Cost Center) and the transaction log
(`Updated_From` / `Updated_Through`). A tenant exposes them to pssync under the names above
(a custom report or an integration merged into the worker view; the twin serves them in the
view itself). pssync never guesses them: a record without the Employee ID, hire date or cost
center raises `UnmappableRecord` naming the missing fields; the optional ones are None.
Event types pssync does not act on (Workday's transaction log holds every business process) are
skipped; an event of a known type with a malformed date is unmappable.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from connectors._http import VendorError
from connectors._vendor_errors import unmappable
from connectors.hcm.port import ChangedFields, WorkerChange, WorkerEventType
from contracts.errors import UnmappableRecord
from contracts.money import Money
from contracts.systems import System
from contracts.v1 import Worker, WorkerStatus

_EVENT_TYPES = frozenset(t.value for t in WorkerEventType)

# --------------------------------------------------------------------------- mapping


def _wd_datetime(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"date-time without an offset: {value!r}")
    return moment.astimezone(UTC)


def _iso_moment(value: datetime) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _date(value: Any) -> date | None:
    return date.fromisoformat(value) if value else None


def _at(record: Any, *path: str) -> Any:
    """`record[path[0]][path[1]]...`, None where a step is absent or not an object."""
    for key in path:
        if not isinstance(record, Mapping):
            return None
        record = record.get(key)
    return record


def _first_descriptor(record: Mapping[str, Any], *paths: tuple[str, ...]) -> str | None:
    for path in paths:
        found = _at(record, *path)
        if isinstance(found, str) and found:
            return found
    return None


def _missing_employment(record: Mapping[str, Any]) -> list[str]:
    """The fields pssync requires that the record lacks (see the module docstring)."""
    required = (("workerId",), ("workerStatus", "hireDate"), ("costCenter", "id"))
    return [".".join(path) for path in required if not _at(record, *path)]


def _status(status: Mapping[str, Any]) -> WorkerStatus:
    if status.get("terminated"):
        return WorkerStatus.TERMINATED
    if status.get("onLeave"):
        return WorkerStatus.LEAVE
    return WorkerStatus.ACTIVE


@unmappable(System.HCM, "Worker")
def worker_from_workday(record: Mapping[str, Any]) -> Worker:
    """Canonical Worker from a Workday worker (status as of the tenant's today)."""
    missing = _missing_employment(record)
    if missing:
        raise UnmappableRecord(
            "Worker",
            f"no {', '.join(missing)}: Workday's published /workers views do not carry "
            "them; the tenant must expose them (Get_Workers Worker_Status_Data and the Cost "
            "Center organization, e.g. through a custom report)",
            record_id=None if record.get("id") is None else str(record.get("id")),
            field=missing[0],
            system=System.HCM,
        )
    status = record["workerStatus"]
    last_updated = record.get("lastUpdated")
    return Worker(
        source_system=System.HCM,
        source_version=last_updated,
        updated_at=_wd_datetime(last_updated) if last_updated else None,
        external_id=record["workerId"],
        name=record["descriptor"],
        email=record.get("primaryWorkEmail"),
        status=_status(status),
        hire_date=date.fromisoformat(status["hireDate"]),
        termination_date=_date(status.get("terminationDate")),
        last_day_worked=_date(status.get("terminationLastDayOfWork")),
        cost_center=str(record["costCenter"]["id"]),
        location=_first_descriptor(
            record, ("location", "descriptor"), ("primaryJob", "location", "descriptor")
        ),
        role=_first_descriptor(
            record,
            ("jobProfile", "descriptor"),
            ("primaryJob", "jobProfile", "descriptor"),
            ("businessTitle",),
            ("primaryJob", "businessTitle"),
        ),
    )


def _changed(changes: Any) -> ChangedFields:
    if not isinstance(changes, Mapping):
        return ChangedFields()
    rate = changes.get("costRate")
    return ChangedFields(
        location=_at(changes, "location", "descriptor"),
        cost_center=_at(changes, "costCenter", "id"),
        practice=_at(changes, "practice", "descriptor"),
        manager_id=_at(changes, "manager", "workerId"),
        role=_at(changes, "jobProfile", "descriptor"),
        cost_rate=Money(str(rate["amount"]), rate["currency"]) if rate else None,
        fte=Decimal(str(changes["fte"])) if changes.get("fte") is not None else None,
        leave_until=_date(changes.get("leaveUntil")),
    )


def _sequence(event: Mapping[str, Any]) -> int:
    if event.get("sequence") is not None:
        return int(event["sequence"])
    moment = _wd_datetime(event["entryMoment"])
    return int(moment.timestamp() * 1_000_000)


@unmappable(System.HCM, "Worker")
def changes_from_workday(record: Mapping[str, Any]) -> list[WorkerChange]:
    """One WorkerChange per event of a type pssync acts on that a windowed worker carries."""
    worker = worker_from_workday(record)
    return [
        WorkerChange(
            worker=worker,
            event_id=str(e["id"]),
            event_type=WorkerEventType(e["type"]),
            effective_date=date.fromisoformat(e["effectiveDate"]),
            entry_moment=_wd_datetime(e["entryMoment"]),
            termination_date=_date(e.get("terminationDate")),
            last_day_worked=_date(e.get("lastDayOfWork")),
            sequence=_sequence(e),
            time_zone=record.get("timeZone"),
            changed=_changed(e.get("changes")),
        )
        for e in record.get("events") or []
        if e["type"] in _EVENT_TYPES
    ]


@unmappable(System.HCM, "worker list")
def page_from_workday(body: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], int | None]:
    """The records of one `{"data", "total"}` page and its total (None when not given)."""
    data = body.get("data") or []
    if not isinstance(data, list) or not all(isinstance(r, Mapping) for r in data):
        raise TypeError("data is not a list of workers")
    total = body.get("total")
    return data, None if total is None else int(total)


@unmappable(System.HCM, "business process event")
def worker_of_event(body: Mapping[str, Any]) -> Worker:
    """The worker a completed business process answers with (`{"event", "worker"}`)."""
    return worker_from_workday(body["worker"])


def parse_error(response: httpx.Response) -> VendorError:
    """Workday-style errors: `{"error", "code"?, "errors": [{"error", "code"?, "field"?}]}`."""
    body = response.json()
    if not isinstance(body, dict):
        return VendorError(code=f"HTTP_{response.status_code}", message=str(body)[:500])
    details = body.get("errors") or []
    first = details[0] if details and isinstance(details[0], dict) else {}
    return VendorError(
        code=str(first.get("code") or body.get("code") or f"HTTP_{response.status_code}"),
        message=str(first.get("error") or body.get("error") or ""),
        field=first.get("field") or first.get("location"),
    )


def _worker_ref(worker_id: str) -> str:
    # Workday accepts a reference ID in place of a WID: `Employee_ID=21001`.
    return quote(f"Employee_ID={worker_id}", safe="=")
