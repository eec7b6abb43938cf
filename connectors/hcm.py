"""HCM connector: Workday REST workers, spoken in canonical contracts.

    hcm = WorkdayHcm(settings.hcm)                       # tenant from settings.hcm.tenant
    changes = await hcm.changed_workers(last_poll, now)  # [from, through): entered in it
    for change in changes:
        if change.event_type is WorkerEventType.TERMINATE: ...

Workday has no push: the termination process polls the changed-workers window. A window is
half-open, `updated_from <= entry moment < updated_through`, so consecutive polls neither miss
nor repeat an entry. A future-dated termination shows up when it is *entered*; its
`effective_date` is later.

`HcmPort` is what activities depend on (read-only: HCM owns worker identity and dates);
`HcmHrActions` adds the HR business processes tests and the demo perform (terminate, rescind,
rehire). Workday has no idempotency keys for them, so they are made safe by checking state: a
termination or rehire the worker already has is returned, not entered twice, and after an
answer that may hide an applied action the worker is re-read before anything is sent again.
`WorkdayHcm` talks to a tenant or the twin in `sandbox/hcm.py`; `FakeHcm` keeps the same rules
in memory. Workday field names appear only here (and in the twin). No Temporal
imports.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Protocol, cast
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from connectors._http import VendorError, VendorHttp
from contracts.errors import BusinessRuleViolation, NotFoundError
from contracts.settings import SystemSettings
from contracts.systems import System
from contracts.v1 import Worker, WorkerStatus

PAGE_LIMIT = 100
"""Workday REST's maximum page size."""


class WorkerEventType(StrEnum):
    HIRE = "hire"
    TERMINATE = "terminate"
    RESCIND = "rescind"
    REHIRE = "rehire"


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
        """Was the worker employed and working on `day` (hire date .. last day worked)?"""
        ...


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


# --------------------------------------------------------------------------- mapping


def _wd_datetime(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _iso_moment(value: datetime) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _date(value: Any) -> date | None:
    return date.fromisoformat(value) if value else None


def _descriptor(ref: Any) -> str | None:
    return str(ref["descriptor"]) if isinstance(ref, Mapping) and ref.get("descriptor") else None


def worker_from_workday(record: Mapping[str, Any]) -> Worker:
    """Canonical Worker from a Workday worker (status as of the tenant's today)."""
    status = record.get("workerStatus") or {}
    cost_center = record.get("costCenter") or {}
    if status.get("terminated"):
        canonical_status = WorkerStatus.TERMINATED
    elif status.get("onLeave"):
        canonical_status = WorkerStatus.LEAVE
    else:
        canonical_status = WorkerStatus.ACTIVE
    if not cost_center.get("id"):
        raise BusinessRuleViolation(
            "UNMAPPABLE_RECORD",
            f"worker {record.get('workerId')} has no cost center",
            field="costCenter",
            system=System.HCM,
        )
    try:
        return Worker(
            source_system=System.HCM,
            source_version=record.get("lastUpdated"),
            updated_at=_wd_datetime(record["lastUpdated"]),
            external_id=record["workerId"],
            name=record["descriptor"],
            email=record.get("primaryWorkEmail"),
            status=canonical_status,
            hire_date=date.fromisoformat(status["hireDate"]),
            termination_date=_date(status.get("terminationDate")),
            last_day_worked=_date(status.get("terminationLastDayOfWork")),
            cost_center=str(cost_center["id"]),
            location=_descriptor(record.get("location")),
            role=_descriptor(record.get("jobProfile")) or record.get("businessTitle"),
        )
    except (ValidationError, KeyError) as exc:
        where = (
            ".".join(str(p) for p in exc.errors()[0]["loc"])
            if isinstance(exc, ValidationError)
            else str(exc)
        )
        raise BusinessRuleViolation(
            "UNMAPPABLE_RECORD",
            f"worker {record.get('workerId')} does not fit the canonical model: {exc}",
            field=where,
            system=System.HCM,
        ) from None


def changes_from_workday(record: Mapping[str, Any]) -> list[WorkerChange]:
    """One WorkerChange per event a windowed worker carries."""
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
        )
        for e in record.get("events") or []
    ]


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


# --------------------------------------------------------------------------- the HTTP adapter


class WorkdayHcm:
    """`HcmPort` (and the HR actions) over Workday REST for `settings.tenant`."""

    def __init__(
        self,
        settings: SystemSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        backoff_base_s: float = 0.05,
        backoff_cap_s: float = 5.0,
        page_limit: int = PAGE_LIMIT,
    ) -> None:
        self.http = VendorHttp(
            System.HCM,
            settings,
            parse_error,
            transport=transport,
            backoff_base_s=backoff_base_s,
            backoff_cap_s=backoff_cap_s,
        )
        self.tenant = settings.tenant
        self.page_limit = max(1, min(PAGE_LIMIT, page_limit))
        self._base = f"/ccx/api/v1/{quote(settings.tenant, safe='')}/workers"

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> WorkdayHcm:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def _pages(self, params: dict[str, str]) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        offset = 0
        while True:
            response = await self.http.request(
                "GET",
                self._base,
                ok=(200,),
                params={**params, "limit": str(self.page_limit), "offset": str(offset)},
            )
            body = response.json()
            data = cast(list[dict[str, Any]], body.get("data") or [])
            records.extend(data)
            offset += len(data)
            if not data or offset >= int(body.get("total", 0)):
                return records

    async def get_worker(self, worker_id: str) -> Worker:
        response = await self.http.request("GET", f"{self._base}/{_worker_ref(worker_id)}")
        return worker_from_workday(response.json())

    async def list_workers(self) -> list[Worker]:
        return [worker_from_workday(r) for r in await self._pages({})]

    async def changed_workers(
        self, updated_from: datetime, updated_through: datetime
    ) -> list[WorkerChange]:
        records = await self._pages(
            {
                "updatedFrom": _iso_moment(updated_from),
                "updatedThrough": _iso_moment(updated_through),
            }
        )
        changes = [c for r in records for c in changes_from_workday(r)]
        return sorted(changes, key=lambda c: (c.entry_moment, c.event_id))

    async def worker_active_on(self, worker_id: str, day: date) -> bool:
        return (await self.get_worker(worker_id)).active_on(day)

    async def _action(
        self, worker_id: str, action: str, body: dict[str, Any], done: Callable[[Worker], bool]
    ) -> Worker:
        """Run a business process once. Business processes are not idempotent (a second
        termination is refused, or worse, a second event is entered), so a POST is never
        re-sent blindly: after an answer that may hide an applied action the worker is read
        again, and `done(worker)` says whether the action took effect."""

        async def send() -> Worker:
            response = await self.http.request(
                "POST", f"{self._base}/{_worker_ref(worker_id)}/{action}", retry=False, json=body
            )
            return worker_from_workday(response.json()["worker"])

        async def find() -> Worker | None:
            worker = await self.get_worker(worker_id)
            return worker if done(worker) else None

        return await self.http.create(send, find)

    async def terminate(
        self,
        worker_id: str,
        termination_date: date,
        last_day: date | None = None,
        reason: str | None = None,
    ) -> Worker:
        """Enter a termination. A repeat of the one the worker already has (same dates) is
        that termination, returned as it is; a different one is refused (rescind first)."""
        body: dict[str, Any] = {"terminationDate": termination_date.isoformat()}
        if last_day is not None:
            body["lastDayOfWork"] = last_day.isoformat()
        if reason is not None:
            body["reason"] = reason
        done = functools.partial(_has_termination, termination_date, last_day)
        current = await self.get_worker(worker_id)
        if done(current):
            return current
        return await self._action(worker_id, "terminate", body, done)

    async def rescind_termination(self, worker_id: str) -> Worker:
        """Rescind the worker's termination. Its answer lost, the worker is read again: no
        termination left means it went through. A rescind of a worker without a termination
        is refused (`NO_TERMINATION`), also when an earlier call already rescinded it."""
        return await self._action(
            worker_id, "rescindTermination", {}, lambda w: w.termination_date is None
        )

    async def rehire(self, worker_id: str, hire_date: date) -> Worker:
        """Rehire a terminated worker; a worker already rehired on `hire_date` (no
        termination, that hire date) is returned as it is."""
        done = functools.partial(_rehired, hire_date)
        current = await self.get_worker(worker_id)
        if done(current):
            return current
        return await self._action(worker_id, "rehire", {"hireDate": hire_date.isoformat()}, done)


def _has_termination(termination_date: date, last_day: date | None, worker: Worker) -> bool:
    return worker.termination_date == termination_date and worker.last_day_worked == (
        last_day or termination_date
    )


def _rehired(hire_date: date, worker: Worker) -> bool:
    return worker.termination_date is None and worker.hire_date == hire_date


# --------------------------------------------------------------------------- the fake


@dataclass
class _Event:
    id: str
    worker_id: str
    type: WorkerEventType
    effective_date: date
    entry_moment: datetime
    termination_date: date | None = None
    last_day_worked: date | None = None


@dataclass
class _Record:
    worker: Worker
    """As loaded; status and termination fields are recomputed on read."""
    on_leave: bool = False
    termination_date: date | None = None
    last_day_worked: date | None = None
    hire_date: date | None = None
    updated: datetime = field(default_factory=lambda: datetime.now(UTC))
    version: int = 0


def _refuse(code: str, detail: str, field_name: str | None) -> BusinessRuleViolation:
    return BusinessRuleViolation(code, detail, field=field_name, system=System.HCM)


class FakeHcm:
    """`HcmPort` and HR actions in memory, with the twin's rules and its half-open window.

    `clock` (UTC) stamps entry moments and is the day status is computed for.
    """

    def __init__(
        self, workers: Iterable[Worker] = (), *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))
        self._records: dict[str, _Record] = {}
        self.events: list[_Event] = []
        self._seq = 0
        for worker in workers:
            self.add_worker(worker)

    def _now(self) -> datetime:
        now = self.clock()
        return (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(UTC)

    def _event(
        self,
        record: _Record,
        kind: WorkerEventType,
        effective: date,
        *,
        termination: tuple[date | None, date | None] = (None, None),
    ) -> None:
        self._seq += 1
        now = self._now()
        self.events.append(
            _Event(
                id=f"evt-{self._seq}",
                worker_id=record.worker.external_id,
                type=kind,
                effective_date=effective,
                entry_moment=now,
                termination_date=termination[0],
                last_day_worked=termination[1],
            )
        )
        record.updated = now
        record.version += 1

    def add_worker(self, worker: Worker, *, entered_at: datetime | None = None) -> None:
        """Load a worker as HCM holds it (its hire, and termination if any, as events)."""
        record = _Record(
            worker=worker.model_copy(deep=True),
            on_leave=worker.status is WorkerStatus.LEAVE,
            termination_date=worker.termination_date,
            last_day_worked=worker.last_day_worked or worker.termination_date,
            hire_date=worker.hire_date,
        )
        self._records[worker.external_id] = record
        saved = self.clock
        if entered_at is not None:
            self.clock = lambda: entered_at
        try:
            self._event(record, WorkerEventType.HIRE, worker.hire_date)
            if record.termination_date is not None:
                self._event(
                    record,
                    WorkerEventType.TERMINATE,
                    record.termination_date,
                    termination=(record.termination_date, record.last_day_worked),
                )
        finally:
            self.clock = saved

    def _record(self, worker_id: str) -> _Record:
        record = self._records.get(worker_id)
        if record is None:
            raise NotFoundError(f"HCM 404 NOT_FOUND: worker {worker_id}", system=System.HCM)
        return record

    def _worker(self, record: _Record) -> Worker:
        today = self._now().date()
        hire = record.hire_date or record.worker.hire_date
        terminated = record.termination_date is not None and record.termination_date < today
        if terminated:
            status = WorkerStatus.TERMINATED
        elif record.on_leave and hire <= today:
            status = WorkerStatus.LEAVE
        else:
            status = WorkerStatus.ACTIVE
        return record.worker.model_copy(
            update={
                "status": status,
                "hire_date": hire,
                "termination_date": record.termination_date,
                "last_day_worked": record.last_day_worked,
                "source_version": f"v{record.version}",
                "updated_at": record.updated,
                "cost_rate": None,
            },
            deep=True,
        )

    async def get_worker(self, worker_id: str) -> Worker:
        return self._worker(self._record(worker_id))

    async def list_workers(self) -> list[Worker]:
        return [self._worker(r) for _, r in sorted(self._records.items())]

    async def changed_workers(
        self, updated_from: datetime, updated_through: datetime
    ) -> list[WorkerChange]:
        start = updated_from if updated_from.tzinfo else updated_from.replace(tzinfo=UTC)
        end = updated_through if updated_through.tzinfo else updated_through.replace(tzinfo=UTC)
        if end < start:
            raise _refuse(
                "INVALID_WINDOW", "updatedThrough is before updatedFrom", "updatedThrough"
            )
        return [
            WorkerChange(
                worker=self._worker(self._records[e.worker_id]),
                event_id=e.id,
                event_type=e.type,
                effective_date=e.effective_date,
                entry_moment=e.entry_moment,
                termination_date=e.termination_date,
                last_day_worked=e.last_day_worked,
            )
            for e in sorted(self.events, key=lambda e: (e.entry_moment, e.id))
            if start <= e.entry_moment < end
        ]

    async def worker_active_on(self, worker_id: str, day: date) -> bool:
        return (await self.get_worker(worker_id)).active_on(day)

    async def terminate(
        self,
        worker_id: str,
        termination_date: date,
        last_day: date | None = None,
        reason: str | None = None,
    ) -> Worker:
        record = self._record(worker_id)
        hire = record.hire_date or record.worker.hire_date
        if _has_termination(termination_date, last_day, self._worker(record)):
            return self._worker(record)  # a repeat: that termination is entered already
        if record.termination_date is not None:
            raise _refuse(
                "TERMINATION_EXISTS",
                f"already has a termination effective {record.termination_date}",
                "terminationDate",
            )
        if termination_date < hire:
            raise _refuse(
                "TERMINATION_BEFORE_HIRE",
                f"termination date {termination_date} is before the hire date {hire}",
                "terminationDate",
            )
        last = last_day or termination_date
        if last > termination_date:
            raise _refuse(
                "LAST_DAY_AFTER_TERMINATION",
                f"last day of work {last} is after the termination date {termination_date}",
                "lastDayOfWork",
            )
        if last < hire:
            raise _refuse(
                "LAST_DAY_BEFORE_HIRE",
                f"last day of work {last} is before the hire date {hire}",
                "lastDayOfWork",
            )
        record.termination_date, record.last_day_worked = termination_date, last
        self._event(
            record,
            WorkerEventType.TERMINATE,
            termination_date,
            termination=(termination_date, last),
        )
        return self._worker(record)

    async def rescind_termination(self, worker_id: str) -> Worker:
        record = self._record(worker_id)
        if record.termination_date is None:
            raise _refuse("NO_TERMINATION", "the worker has no termination to rescind", "worker")
        self._event(
            record,
            WorkerEventType.RESCIND,
            record.termination_date,
            termination=(record.termination_date, record.last_day_worked),
        )
        record.termination_date = record.last_day_worked = None
        return self._worker(record)

    async def rehire(self, worker_id: str, hire_date: date) -> Worker:
        record = self._record(worker_id)
        if _rehired(hire_date, self._worker(record)):
            return self._worker(record)  # a repeat: rehired on that date already
        if record.termination_date is None:
            raise _refuse(
                "WORKER_NOT_TERMINATED", "only a terminated worker can be rehired", "worker"
            )
        if hire_date <= record.termination_date:
            raise _refuse(
                "REHIRE_BEFORE_TERMINATION",
                f"hire date {hire_date} is not after the termination date "
                f"{record.termination_date}",
                "hireDate",
            )
        record.hire_date = hire_date
        record.termination_date = record.last_day_worked = None
        record.on_leave = False
        self._event(record, WorkerEventType.REHIRE, hire_date)
        return self._worker(record)


__all__ = [
    "PAGE_LIMIT",
    "FakeHcm",
    "HcmHrActions",
    "HcmPort",
    "WorkdayHcm",
    "WorkerChange",
    "WorkerEventType",
    "changes_from_workday",
    "parse_error",
    "worker_from_workday",
]
