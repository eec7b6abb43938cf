"""Termination business processes: `POST /workers/{id}/terminate` (also future-dated) and
`POST /workers/{id}/rescindTermination`."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from sandbox.hcm.bodies import RescindRequest, TerminateRequest, _refuse
from sandbox.hcm.context import HcmTwin
from sandbox.hcm.records import _termination_date
from sandbox.hcm.tables import EVENT_RESCIND, EVENT_TERMINATE, HcmWorker


def register(router: APIRouter, twin: HcmTwin) -> None:
    """Add the terminate and rescind routes to `router`."""

    @router.post("/workers/{worker}/terminate", summary="Terminate (also future-dated)")
    async def terminate(tenant: str, worker: str, request: TerminateRequest) -> dict[str, Any]:
        twin.check_tenant(tenant)
        with twin.worker(worker) as (session, w):
            last_day = _check_termination(w, request)
            w.termination_date = request.terminationDate
            w.last_day_of_work = last_day
            w.termination_reason = request.reason or "Resignation"
            return twin.complete(
                session,
                w,
                EVENT_TERMINATE,
                request.terminationDate,
                termination_date=request.terminationDate,
                last_day_of_work=last_day,
                reason=w.termination_reason,
            )

    @router.post("/workers/{worker}/rescindTermination", summary="Rescind a termination")
    async def rescind(tenant: str, worker: str, request: Request) -> dict[str, Any]:
        twin.check_tenant(tenant)
        body = await _rescind_body(request)
        with twin.worker(worker) as (session, w):
            ended = _termination_date(
                w, "NO_TERMINATION", "the worker has no termination to rescind"
            )
            last_day = w.last_day_of_work
            w.termination_date = w.last_day_of_work = w.termination_reason = None
            return twin.complete(
                session,
                w,
                EVENT_RESCIND,
                ended,
                termination_date=ended,
                last_day_of_work=last_day,
                reason=body.reason,
            )


def _check_termination(w: HcmWorker, request: TerminateRequest) -> date:
    """Refuse a termination the worker cannot have; its last day of work otherwise."""
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
            f"termination date {request.terminationDate} is before the hire date {w.hire_date}",
            "terminationDate",
        )
    last_day = request.lastDayOfWork or request.terminationDate
    if last_day > request.terminationDate:
        raise _refuse(
            "LAST_DAY_AFTER_TERMINATION",
            f"last day of work {last_day} is after the termination date {request.terminationDate}",
            "lastDayOfWork",
        )
    if last_day < w.hire_date:
        raise _refuse(
            "LAST_DAY_BEFORE_HIRE",
            f"last day of work {last_day} is before the hire date {w.hire_date}",
            "lastDayOfWork",
        )
    return last_day


async def _rescind_body(request: Request) -> RescindRequest:
    """The rescind request's optional JSON body (an empty one is no reason given)."""
    raw = await request.body()
    try:
        return RescindRequest.model_validate_json(raw) if raw.strip() else RescindRequest()
    except ValidationError as exc:
        first = exc.errors()[0]
        fld = ".".join(str(p) for p in first["loc"]) or None
        raise _refuse("INVALID_FIELD", f"{fld or 'body'}: {first['msg']}", fld) from None
