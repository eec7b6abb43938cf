"""HCM twin: Workday-style REST workers (`/ccx/api/v1/{tenant}/workers`).

Endpoints:

- `GET /ccx/api/v1/{tenant}/workers?limit=&offset=` — Workday REST paging: `{"total", "data"}`,
  `limit` 1..100 (default 20), ordered by `workerId`.
- `GET /ccx/api/v1/{tenant}/workers?updatedFrom=&updatedThrough=` — the changed-workers window
  for polling (Workday has no push). A worker is in the window when one of its business process
  events was *entered* at `updatedFrom <= entryMoment < updatedThrough` (from inclusive, through
  exclusive, so consecutive windows `[a, b)`, `[b, c)` never see an entry twice and never miss
  one). Each worker then carries `events`: those entered in the window, oldest first, each with
  `type` (hire, terminate, rescind, rehire), `effectiveDate` and `entryMoment`. A future-dated
  termination is entered now and effective later: it shows in the window of its entry, with
  `workerStatus.terminationDate` set while `workerStatus.terminated` stays false until then.
  ISO 8601 date-times; without an offset they are UTC.
- `GET /ccx/api/v1/{tenant}/workers/{id}` — one worker by Workday ID (WID), or by reference ID
  `Employee_ID=21001`.
- HR business processes, exposed as REST for tests and the demo:
  `POST .../workers/{id}/terminate {"terminationDate", "lastDayOfWork"?, "reason"?}`
  (future-dated allowed), `POST .../workers/{id}/rescindTermination`,
  `POST .../workers/{id}/rehire {"hireDate", "reason"?}`. Each answers the completed event with
  the worker as it now is.

Handlers are `async def` and touch SQLite synchronously, so no two requests' transactions
interleave on the twin's connection (an in-memory twin shares one).

Worker status is computed as of the twin's clock date: a termination date is the last day of
employment, so the worker is `terminated` from the day after it. Refusals (termination before
hire, last day of work after the termination date, a second termination, ...) answer 400 in a
Workday-like shape: `{"error", "code", "errors": [{"error", "code", "field"}]}`. Workday answers
429 and 503 with `Retry-After` when it throttles: set it with the fault injection
(`retry_after_s`). The tenant in the path must be the twin's.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func
from sqlmodel import Field as SqlField
from sqlmodel import Session, SQLModel, col, select

from sandbox._ids import workday_id
from sandbox._twin import TwinError, TwinState, create_twin_app, make_twin_engine

if TYPE_CHECKING:
    from sandbox.seed import Firm

MAX_LIMIT = 100
DEFAULT_LIMIT = 20

EVENT_HIRE = "hire"
EVENT_TERMINATE = "terminate"
EVENT_RESCIND = "rescind"
EVENT_REHIRE = "rehire"

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def wd_datetime(value: datetime) -> str:
    """Workday's date-time rendering: `2025-06-12T09:00:00.000Z`."""
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _utc(value: datetime) -> datetime:
    """Aware UTC (naive values are UTC already)."""
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- tables


class HcmWorker(SQLModel, table=True):
    __tablename__ = "hcm_worker"

    wid: str = SqlField(primary_key=True)
    worker_id: str = SqlField(index=True, unique=True)
    first_name: str
    last_name: str
    email: str | None = None
    business_title: str | None = None
    job_profile: str | None = None
    location: str | None = None
    cost_center_id: str | None = None
    cost_center_name: str | None = None
    worker_type: str = "Employee"
    hire_date: date
    original_hire_date: date
    on_leave: bool = False
    termination_date: date | None = None
    last_day_of_work: date | None = None
    termination_reason: str | None = None
    last_updated: datetime


class HcmEvent(SQLModel, table=True):
    """A completed business process event (the transaction log the window reads)."""

    __tablename__ = "hcm_event"

    id: str = SqlField(primary_key=True)
    worker_wid: str = SqlField(index=True)
    type: str
    effective_date: date
    entry_moment: datetime = SqlField(index=True)
    termination_date: date | None = None
    last_day_of_work: date | None = None
    reason: str | None = None


TABLES = [
    HcmWorker.__table__,  # type: ignore[attr-defined]
    HcmEvent.__table__,  # type: ignore[attr-defined]
]


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


# --------------------------------------------------------------------------- rendering


def _ref(kind: str, descriptor: str | None, ref_id: str | None = None) -> dict[str, Any] | None:
    if descriptor is None:
        return None
    return {"id": ref_id or workday_id(kind, descriptor), "descriptor": descriptor}


def render_worker(w: HcmWorker, tenant: str, today: date) -> dict[str, Any]:
    terminated = w.termination_date is not None and w.termination_date < today
    started = w.hire_date <= today
    return {
        "id": w.wid,
        "descriptor": f"{w.first_name} {w.last_name}",
        "href": f"/ccx/api/v1/{tenant}/workers/{w.wid}",
        "workerId": w.worker_id,
        "primaryWorkEmail": w.email,
        "businessTitle": w.business_title,
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
    }


def render_event(e: HcmEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "type": e.type,
        "descriptor": {
            EVENT_HIRE: "Hire",
            EVENT_TERMINATE: "Termination",
            EVENT_RESCIND: "Rescind Termination",
            EVENT_REHIRE: "Rehire",
        }.get(e.type, e.type),
        "effectiveDate": e.effective_date.isoformat(),
        "entryMoment": wd_datetime(e.entry_moment),
        "terminationDate": e.termination_date.isoformat() if e.termination_date else None,
        "lastDayOfWork": e.last_day_of_work.isoformat() if e.last_day_of_work else None,
        "reason": e.reason,
    }


# --------------------------------------------------------------------------- helpers


def _parse_moment(name: str, raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _refuse(
            "INVALID_DATETIME", f"{name}: not an ISO 8601 date-time: {raw!r}", name
        ) from None
    return _utc(value)


def _find(session: Session, worker_ref: str) -> HcmWorker:
    kind, sep, value = worker_ref.partition("=")
    if sep:
        if kind != "Employee_ID":
            raise TwinError(404, "NOT_FOUND", f"unknown reference ID type {kind}")
        row = session.exec(select(HcmWorker).where(HcmWorker.worker_id == value)).first()
    else:
        row = session.get(HcmWorker, worker_ref)
    if row is None:
        raise TwinError(404, "NOT_FOUND", "Resource not found")
    return row


def _event(
    session: Session, worker: HcmWorker, kind: str, effective: date, entered: datetime, **data: Any
) -> HcmEvent:
    event = HcmEvent(
        id=secrets.token_hex(16),
        worker_wid=worker.wid,
        type=kind,
        effective_date=effective,
        entry_moment=entered,
        **data,
    )
    session.add(event)
    worker.last_updated = entered
    session.add(worker)
    return event


# --------------------------------------------------------------------------- the app


def create_app(
    db_path: Path | None = None,
    *,
    tenant: str = "default",
    clock: Clock | None = None,
) -> FastAPI:
    """The Workday twin for `tenant`. `clock` (for tests) stamps entry moments and sets the
    date worker status is computed for. Workday sends no webhooks."""
    now = clock or _utc_now
    state = TwinState(system="hcm", engine=make_twin_engine(db_path, TABLES))
    router = APIRouter(prefix="/ccx/api/v1/{tenant}", tags=["workday"])

    def check_tenant(path_tenant: str) -> None:
        if path_tenant != tenant:
            raise TwinError(404, "NOT_FOUND", f"unknown tenant {path_tenant}")

    def today() -> date:
        return _utc(now()).astimezone(UTC).date()

    def paging(limit: int, offset: int) -> None:
        if not 1 <= limit <= MAX_LIMIT:
            raise _refuse("INVALID_LIMIT", f"limit must be between 1 and {MAX_LIMIT}", "limit")
        if offset < 0:
            raise _refuse("INVALID_OFFSET", "offset must not be negative", "offset")

    @router.get("/workers", summary="Workers, or the workers changed in an entry window")
    async def list_workers(
        tenant: str,
        limit: int = DEFAULT_LIMIT,
        offset: int = 0,
        updatedFrom: str | None = None,
        updatedThrough: str | None = None,
    ) -> dict[str, Any]:
        check_tenant(tenant)
        paging(limit, offset)
        day = today()
        with state.session() as session:
            if updatedFrom is None and updatedThrough is None:
                total = session.exec(select(func.count()).select_from(HcmWorker)).one()
                rows = session.exec(
                    select(HcmWorker).order_by(col(HcmWorker.worker_id)).offset(offset).limit(limit)
                ).all()
                return {"total": total, "data": [render_worker(w, tenant, day) for w in rows]}
            if updatedFrom is None or updatedThrough is None:
                missing = "updatedFrom" if updatedFrom is None else "updatedThrough"
                raise _refuse(
                    "MISSING_PARAMETER",
                    "updatedFrom and updatedThrough are required together",
                    missing,
                )
            start = _parse_moment("updatedFrom", updatedFrom)
            end = _parse_moment("updatedThrough", updatedThrough)
            if end < start:
                raise _refuse(
                    "INVALID_WINDOW", "updatedThrough is before updatedFrom", "updatedThrough"
                )
            events = session.exec(
                select(HcmEvent)
                .where(HcmEvent.entry_moment >= _utc(start))
                .where(HcmEvent.entry_moment < _utc(end))
                .order_by(col(HcmEvent.entry_moment), col(HcmEvent.id))
            ).all()
            by_worker: dict[str, list[HcmEvent]] = {}
            for e in events:
                by_worker.setdefault(e.worker_wid, []).append(e)
            workers = [session.get(HcmWorker, wid) for wid in by_worker]
            ordered = sorted((w for w in workers if w is not None), key=lambda w: w.worker_id)
            data = []
            for w in ordered[offset : offset + limit]:
                item = render_worker(w, tenant, day)
                item["events"] = [render_event(e) for e in by_worker[w.wid]]
                data.append(item)
            return {"total": len(ordered), "data": data}

    @router.get("/workers/{worker}", summary="One worker (WID or Employee_ID=...)")
    async def get_worker(tenant: str, worker: str) -> dict[str, Any]:
        check_tenant(tenant)
        with state.session() as session:
            return render_worker(_find(session, worker), tenant, today())

    def completed(session: Session, w: HcmWorker, event: HcmEvent) -> dict[str, Any]:
        session.commit()
        body = render_event(event)
        body["status"] = "Successfully Completed"
        body["worker"] = render_worker(w, tenant, today())
        return body

    @router.post("/workers/{worker}/terminate", summary="Terminate (also future-dated)")
    async def terminate(tenant: str, worker: str, request: TerminateRequest) -> dict[str, Any]:
        check_tenant(tenant)
        with state.session() as session:
            w = _find(session, worker)
            if w.termination_date is not None:
                raise _refuse(
                    "TERMINATION_EXISTS",
                    f"{w.first_name} {w.last_name} already has a termination effective "
                    f"{w.termination_date.isoformat()}; rescind it first",
                    "terminationDate",
                )
            if request.terminationDate < w.hire_date:
                raise _refuse(
                    "TERMINATION_BEFORE_HIRE",
                    f"termination date {request.terminationDate} is before the hire date "
                    f"{w.hire_date}",
                    "terminationDate",
                )
            last_day = request.lastDayOfWork or request.terminationDate
            if last_day > request.terminationDate:
                raise _refuse(
                    "LAST_DAY_AFTER_TERMINATION",
                    f"last day of work {last_day} is after the termination date "
                    f"{request.terminationDate}",
                    "lastDayOfWork",
                )
            if last_day < w.hire_date:
                raise _refuse(
                    "LAST_DAY_BEFORE_HIRE",
                    f"last day of work {last_day} is before the hire date {w.hire_date}",
                    "lastDayOfWork",
                )
            w.termination_date = request.terminationDate
            w.last_day_of_work = last_day
            w.termination_reason = request.reason or "Resignation"
            event = _event(
                session,
                w,
                EVENT_TERMINATE,
                request.terminationDate,
                _utc(now()),
                termination_date=request.terminationDate,
                last_day_of_work=last_day,
                reason=w.termination_reason,
            )
            return completed(session, w, event)

    @router.post("/workers/{worker}/rescindTermination", summary="Rescind a termination")
    async def rescind(tenant: str, worker: str, request: Request) -> dict[str, Any]:
        check_tenant(tenant)
        raw = await request.body()
        try:
            body = RescindRequest.model_validate_json(raw) if raw.strip() else RescindRequest()
        except ValidationError as exc:
            first = exc.errors()[0]
            fld = ".".join(str(p) for p in first["loc"]) or None
            raise _refuse("INVALID_FIELD", f"{fld or 'body'}: {first['msg']}", fld) from None
        with state.session() as session:
            w = _find(session, worker)
            if w.termination_date is None:
                raise _refuse(
                    "NO_TERMINATION", "the worker has no termination to rescind", "worker"
                )
            event = _event(
                session,
                w,
                EVENT_RESCIND,
                w.termination_date,
                _utc(now()),
                termination_date=w.termination_date,
                last_day_of_work=w.last_day_of_work,
                reason=body.reason,
            )
            w.termination_date = w.last_day_of_work = w.termination_reason = None
            return completed(session, w, event)

    @router.post("/workers/{worker}/rehire", summary="Rehire a terminated worker")
    async def rehire(tenant: str, worker: str, request: RehireRequest) -> dict[str, Any]:
        check_tenant(tenant)
        with state.session() as session:
            w = _find(session, worker)
            if w.termination_date is None:
                raise _refuse(
                    "WORKER_NOT_TERMINATED", "only a terminated worker can be rehired", "worker"
                )
            if request.hireDate <= w.termination_date:
                raise _refuse(
                    "REHIRE_BEFORE_TERMINATION",
                    f"hire date {request.hireDate} is not after the termination date "
                    f"{w.termination_date}",
                    "hireDate",
                )
            w.hire_date = request.hireDate
            w.termination_date = w.last_day_of_work = w.termination_reason = None
            w.on_leave = False
            event = _event(
                session, w, EVENT_REHIRE, request.hireDate, _utc(now()), reason=request.reason
            )
            return completed(session, w, event)

    app = create_twin_app(
        state=state,
        title="HCM twin (Workday REST)",
        description=__doc__ or "",
        router=router,
        error_body=error_body,
    )
    app.state.tenant = tenant
    return app


# --------------------------------------------------------------------------- seed


def _state_of(app_or_state: FastAPI | TwinState) -> TwinState:
    if isinstance(app_or_state, TwinState):
        return app_or_state
    state: TwinState = app_or_state.state.twin
    return state


def load_firm(app_or_state: FastAPI | TwinState, firm: Firm) -> None:
    """Workers from `firm.workers`, each with its hire event (entered two weeks before the
    hire, never after the firm's `today`) and its termination event when it has one.
    Workers already present are left as they are: a reseed never undoes an HR action."""
    state = _state_of(app_or_state)
    latest_entry = datetime.combine(firm.today - timedelta(days=1), time(9, 0), tzinfo=UTC)
    cost_centers = {c.id: c.name for c in firm.cost_centers}
    with state.session() as session:
        for fw in firm.workers:
            if session.get(HcmWorker, fw.wid) is not None:
                # Seeding again (every `pssync up`) keeps what HR has done since.
                continue
            hire_entry = min(
                datetime.combine(fw.hire_date - timedelta(days=14), time(9, 0), tzinfo=UTC),
                latest_entry,
            )
            w = HcmWorker(
                wid=fw.wid,
                worker_id=fw.id,
                first_name=fw.first_name,
                last_name=fw.last_name,
                email=fw.email,
                business_title=fw.role,
                job_profile=fw.role,
                location=fw.location,
                cost_center_id=fw.cost_center,
                cost_center_name=cost_centers.get(fw.cost_center, fw.cost_center),
                hire_date=fw.hire_date,
                original_hire_date=fw.hire_date,
                on_leave=fw.status == "leave",
                termination_date=fw.termination_date,
                last_day_of_work=fw.last_day_worked or fw.termination_date,
                termination_reason=fw.termination_reason,
                last_updated=hire_entry,
            )
            session.merge(w)
            events = [
                HcmEvent(
                    id=workday_id("hire", fw.id),
                    worker_wid=fw.wid,
                    type=EVENT_HIRE,
                    effective_date=fw.hire_date,
                    entry_moment=hire_entry,
                )
            ]
            if fw.termination_date is not None:
                entered = _utc(fw.termination_entered_at or hire_entry)
                events.append(
                    HcmEvent(
                        id=workday_id("terminate", fw.id),
                        worker_wid=fw.wid,
                        type=EVENT_TERMINATE,
                        effective_date=fw.termination_date,
                        entry_moment=entered,
                        termination_date=fw.termination_date,
                        last_day_of_work=fw.last_day_worked or fw.termination_date,
                        reason=fw.termination_reason,
                    )
                )
                w.last_updated = max(hire_entry, entered)
                session.merge(w)
            for e in events:
                session.merge(e)
        session.commit()


__all__ = [
    "EVENT_HIRE",
    "EVENT_REHIRE",
    "EVENT_RESCIND",
    "EVENT_TERMINATE",
    "TABLES",
    "create_app",
    "error_body",
    "load_firm",
]
