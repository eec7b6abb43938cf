"""`FakeHcm`: the `HcmPort` and HR actions in memory, with the twin's rules and its half-open
changed-workers window (unit and workflow tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from connectors.hcm.port import (
    ChangedFields,
    HcmHrActions,
    WorkerChange,
    WorkerEventType,
    _has_termination,
    _rehired,
)
from contracts.errors import BusinessRuleViolation, NotFoundError
from contracts.systems import System
from contracts.v1 import Worker, WorkerStatus

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
    sequence: int = 0
    time_zone: str | None = None
    changed: ChangedFields = field(default_factory=ChangedFields)


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
    time_zone: str | None = None


def _refuse(code: str, detail: str, field_name: str | None) -> BusinessRuleViolation:
    return BusinessRuleViolation(code, detail, field=field_name, system=System.HCM)


class FakeHcm(HcmHrActions):
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
        changed: ChangedFields | None = None,
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
                sequence=self._seq,
                time_zone=record.time_zone,
                changed=changed or ChangedFields(),
            )
        )
        record.updated = now
        record.version += 1

    def add_worker(
        self,
        worker: Worker,
        *,
        entered_at: datetime | None = None,
        time_zone: str | None = None,
        hired: ChangedFields | None = None,
    ) -> None:
        """Load a worker as HCM holds it (its hire, and termination if any, as events);
        `time_zone` (IANA) is where the worker works, `hired` what the hire sets beside the
        worker's own fields (manager, practice, cost rate, FTE)."""
        record = _Record(
            time_zone=time_zone,
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
            self._event(
                record,
                WorkerEventType.HIRE,
                worker.hire_date,
                changed=(hired or ChangedFields()).model_copy(
                    update={
                        "location": (hired and hired.location) or worker.location,
                        "cost_center": (hired and hired.cost_center) or worker.cost_center,
                        "role": (hired and hired.role) or worker.role,
                    }
                ),
            )
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
                sequence=e.sequence,
                time_zone=e.time_zone,
                changed=e.changed,
            )
            for e in sorted(self.events, key=lambda e: (e.entry_moment, e.id))
            if start <= e.entry_moment < end
        ]

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

    # ------------------------------------------------------------------ lifecycle changes

    def enter_change(
        self,
        worker_id: str,
        kind: WorkerEventType,
        effective: date,
        *,
        time_zone: str | None = None,
        **changed: object,
    ) -> str:
        """Enter a lifecycle change (transfer, job or cost-rate change, leave and return, FTE
        change) effective on `effective`, a day in the worker's zone; a transfer may move the
        worker to `time_zone`. Returns the event id."""
        if kind in (
            WorkerEventType.HIRE,
            WorkerEventType.TERMINATE,
            WorkerEventType.RESCIND,
            WorkerEventType.REHIRE,
        ):
            raise ValueError(f"{kind.value} has its own HR action")
        record = self._record(worker_id)
        fields = ChangedFields.model_validate(changed)
        if time_zone is not None:
            record.time_zone = time_zone
        if kind is WorkerEventType.LEAVE_START:
            record.on_leave = True
        elif kind is WorkerEventType.LEAVE_END:
            record.on_leave = False
        updates = {
            k: v
            for k, v in (
                ("location", fields.location),
                ("cost_center", fields.cost_center),
                ("role", fields.role),
            )
            if v is not None
        }
        if updates:
            record.worker = record.worker.model_copy(update=updates)
        self._event(record, kind, effective, changed=fields)
        return self.events[-1].id

    def set_time_zone(self, worker_id: str, time_zone: str) -> None:
        self._record(worker_id).time_zone = time_zone


def _check_port() -> HcmHrActions:  # pragma: no cover - a static check for mypy
    return FakeHcm()
