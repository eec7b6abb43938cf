"""HCM connector: Workday REST workers, spoken in canonical contracts.

    hcm = WorkdayHcm(settings.hcm)                       # tenant from settings.hcm.tenant
    changes = await hcm.changed_workers(last_poll, now)  # [from, through): entered in it
    for change in changes:
        if change.event_type is WorkerEventType.TERMINATE: ...

Workday has no push: the termination process polls the changed-workers window. A window is
half-open, `updated_from <= entry moment < updated_through`, so consecutive polls neither miss
nor repeat an entry. A future-dated termination shows up when it is *entered*; its
`effective_date` is later.

`HcmPort` (`port.py`) is what activities depend on (read-only: HCM owns worker identity and
dates); `HcmHrActions` adds the HR business processes tests and the demo perform (terminate,
rescind, rehire). Workday has no idempotency keys for them, so they are made safe by checking
state: a termination or rehire the worker already has is returned, not entered twice, and after
an answer that may hide an applied action the worker is re-read before anything is sent again.
`WorkdayHcm` (`workday.py`) talks to a tenant or the twin in `sandbox.hcm`; `FakeHcm`
(`fake.py`) keeps the same rules in memory. Workday field names appear only in `mapping.py` and
`workday.py` (and in the twin). No Temporal imports.

Workday's published `/workers` views carry no hire date, cost center or termination:
`mapping.py` says which canonical field comes from which Workday field, and what a tenant must
expose beside the published view; a worker without them is an `UnmappableRecord`.
"""

from connectors.hcm.fake import FakeHcm
from connectors.hcm.mapping import changes_from_workday, parse_error, worker_from_workday
from connectors.hcm.port import (
    ChangedFields,
    HcmHrActions,
    HcmPort,
    WorkerChange,
    WorkerEventType,
)
from connectors.hcm.workday import PAGE_LIMIT, WorkdayHcm

__all__ = [
    "PAGE_LIMIT",
    "ChangedFields",
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
