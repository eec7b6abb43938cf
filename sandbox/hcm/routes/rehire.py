"""Rehire business process: `POST /workers/{id}/rehire` (a terminated worker only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sandbox.hcm.bodies import RehireRequest, _refuse
from sandbox.hcm.context import HcmTwin
from sandbox.hcm.records import _termination_date
from sandbox.hcm.tables import EVENT_REHIRE


def register(router: APIRouter, twin: HcmTwin) -> None:
    """Add the rehire route to `router`."""

    @router.post("/workers/{worker}/rehire", summary="Rehire a terminated worker")
    async def rehire(tenant: str, worker: str, request: RehireRequest) -> dict[str, Any]:
        twin.check_tenant(tenant)
        with twin.worker(worker) as (session, w):
            ended = _termination_date(
                w, "WORKER_NOT_TERMINATED", "only a terminated worker can be rehired"
            )
            if request.hireDate <= ended:
                raise _refuse(
                    "REHIRE_BEFORE_TERMINATION",
                    f"hire date {request.hireDate} is not after the termination date {ended}",
                    "hireDate",
                )
            w.hire_date = request.hireDate
            w.termination_date = w.last_day_of_work = w.termination_reason = None
            w.on_leave = False
            return twin.complete(session, w, EVENT_REHIRE, request.hireDate, reason=request.reason)
