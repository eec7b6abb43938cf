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
- A worker carries the keys of Workday's published `/workers` view (`id`, `descriptor`, `href`,
  `businessTitle`, `primarySupervisoryOrganization`, `primaryWorkEmail`, `primaryWorkPhone`,
  `isManager`), then the employment fields pssync needs and that view lacks (`workerId`,
  `workerType`, `jobProfile`, `location`, `costCenter`, `workerStatus`, `lastUpdated`; on a real
  tenant they come from Get_Workers, see `connectors/hcm/mapping.py`).
  `tests/twins/test_hcm_shapes.py` holds the twin to the published examples' keys and types.
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

from pathlib import Path

from fastapi import APIRouter, FastAPI

from sandbox._twin import TwinState, create_twin_app, make_twin_engine
from sandbox.hcm.bodies import (
    RehireRequest,
    RescindRequest,
    TerminateRequest,
    _utc_now,
    error_body,
    render_event,
    render_worker,
    wd_datetime,
)
from sandbox.hcm.context import DEFAULT_LIMIT, MAX_LIMIT, Clock, HcmTwin
from sandbox.hcm.load import load_firm
from sandbox.hcm.routes import lifecycle, rehire, tamper, termination, workers
from sandbox.hcm.tables import (
    EVENT_HIRE,
    EVENT_REHIRE,
    EVENT_RESCIND,
    EVENT_TERMINATE,
    TABLES,
    HcmEvent,
    HcmWorker,
)

# Layout: tables.py (SQLite tables, event types), bodies.py (errors, request bodies, worker and
# event views), records.py (store helpers), load.py (seeding), context.py (shared state) and
# routes/ (one module per Workday resource / business process).


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
    twin = HcmTwin(state, tenant, now)
    router = APIRouter(prefix="/ccx/api/v1/{tenant}", tags=["workday"])
    # Registration order is route order.
    workers.register(router, twin)  # GET /workers, GET /workers/{worker}
    termination.register(router, twin)  # POST .../terminate, POST .../rescindTermination
    rehire.register(router, twin)  # POST .../rehire
    lifecycle.register(router, twin)  # POST /workers (hire), .../jobChanges, leaves, pay

    app = create_twin_app(
        state=state,
        title="HCM twin (Workday REST)",
        description=__doc__ or "",
        router=router,
        error_body=error_body,
        extra_routers=[tamper.build_router(twin)],
    )
    app.state.tenant = tenant
    return app


__all__ = [
    "DEFAULT_LIMIT",
    "EVENT_HIRE",
    "EVENT_REHIRE",
    "EVENT_RESCIND",
    "EVENT_TERMINATE",
    "MAX_LIMIT",
    "TABLES",
    "Clock",
    "HcmEvent",
    "HcmWorker",
    "RehireRequest",
    "RescindRequest",
    "TerminateRequest",
    "create_app",
    "error_body",
    "load_firm",
    "render_event",
    "render_worker",
    "wd_datetime",
]
