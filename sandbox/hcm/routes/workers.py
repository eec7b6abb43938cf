"""Workers: `GET /workers` (paged, or the changed-workers entry window with its events) and
`GET /workers/{id}` (by WID or `Employee_ID=...`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import func
from sqlmodel import col, select

from sandbox.hcm.bodies import _parse_moment, _refuse, _utc, render_event, render_worker
from sandbox.hcm.context import DEFAULT_LIMIT, HcmTwin
from sandbox.hcm.tables import HcmEvent, HcmWorker


def register(router: APIRouter, twin: HcmTwin) -> None:
    """Add the worker list/window and one-worker routes to `router`."""

    @router.get("/workers", summary="Workers, or the workers changed in an entry window")
    async def list_workers(
        tenant: str,
        limit: int = DEFAULT_LIMIT,
        offset: int = 0,
        updatedFrom: str | None = None,
        updatedThrough: str | None = None,
    ) -> dict[str, Any]:
        twin.check_tenant(tenant)
        twin.paging(limit, offset)
        day = twin.today()
        with twin.state.session() as session:
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
        twin.check_tenant(tenant)
        with twin.worker(worker) as (_session, w):
            return render_worker(w, tenant, twin.today())
