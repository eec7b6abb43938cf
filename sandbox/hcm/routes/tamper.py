"""Twin admin, not Workday endpoints (no auth): HCM changes made behind pssync's back, as HR
makes them in Workday. Each is a completed business process like any other — an event in the
transaction log the changed-workers window reads, the worker's `lastUpdated` moved — with
nothing that tells it apart from the REST business processes.

- `POST /_admin/tamper/workers/{id}/terminate` `{"terminationDate", "lastDayOfWork"?,
  "reason"?, "enteredAt"?}` — the same checks and the same result as `POST
  /ccx/api/v1/{tenant}/workers/{id}/terminate` (a past date makes the worker inactive now, a
  future one at that date). `enteredAt` (ISO 8601, default now) is the event's entry moment:
  one in a window the poller already read is a change it never sees, as a late-entered or
  back-dated transaction is.
- `POST /_admin/tamper/workers/{id}/leave` `{"onLeave": true, "effectiveDate"?, "reason"?,
  "enteredAt"?}` — places the worker on leave (`onLeave: false`: returns them from it): a
  `leave` or `returnFromLeave` event, of types pssync does not act on.

`{id}` is a WID or `Employee_ID=...`. Both answer the completed event with the worker, as the
REST business processes do.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from fastapi import APIRouter
from pydantic import Field

from sandbox.hcm.bodies import TerminateRequest, _Body, _utc, render_event, render_worker
from sandbox.hcm.context import HcmTwin
from sandbox.hcm.records import _event
from sandbox.hcm.routes.termination import _check_termination
from sandbox.hcm.tables import EVENT_TERMINATE

EVENT_LEAVE = "leave"
EVENT_RETURN_FROM_LEAVE = "returnFromLeave"


class TamperTerminate(TerminateRequest):
    enteredAt: datetime | None = None


class TamperLeave(_Body):
    onLeave: bool = True
    effectiveDate: date | None = None
    reason: str | None = Field(default=None, max_length=200)
    enteredAt: datetime | None = None


def build_router(twin: HcmTwin) -> APIRouter:
    router = APIRouter(prefix="/_admin/tamper", tags=["tamper"])

    def completed(
        session: Any, w: Any, kind: str, effective: date, entered: datetime | None, **data: Any
    ) -> dict[str, Any]:
        event = _event(session, w, kind, effective, _utc(entered or twin.now()), **data)
        session.commit()
        body = render_event(event)
        body["status"] = "Successfully Completed"
        body["worker"] = render_worker(w, twin.tenant, twin.today())
        return body

    @router.post(
        "/workers/{worker}/terminate",
        summary="Terminate a worker as HR would in Workday (optionally entered in the past)",
    )
    async def terminate(worker: str, request: TamperTerminate) -> dict[str, Any]:
        with twin.worker(worker) as (session, w):
            last_day = _check_termination(w, request)
            w.termination_date = request.terminationDate
            w.last_day_of_work = last_day
            w.termination_reason = request.reason or "Resignation"
            return completed(
                session,
                w,
                EVENT_TERMINATE,
                request.terminationDate,
                request.enteredAt,
                termination_date=request.terminationDate,
                last_day_of_work=last_day,
                reason=w.termination_reason,
            )

    @router.post(
        "/workers/{worker}/leave",
        summary="Place a worker on leave, or return them from it",
    )
    async def leave(worker: str, request: TamperLeave) -> dict[str, Any]:
        with twin.worker(worker) as (session, w):
            w.on_leave = request.onLeave
            kind = EVENT_LEAVE if request.onLeave else EVENT_RETURN_FROM_LEAVE
            return completed(
                session,
                w,
                kind,
                request.effectiveDate or twin.today(),
                request.enteredAt,
                reason=request.reason,
            )

    return router
