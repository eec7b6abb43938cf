"""The naive baseline's activity: one HCM change applied to the PSA resource and the ERP labor
cost at once, on its own — read the resource, set the change's fields, write it back; add the
change's cost rate. No order and no memory of earlier changes: what a one-event-one-call
integration does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from temporalio import activity

from connectors.erp.labor_cost import LaborCostRate
from connectors.psa.resources import LeavePeriod, PsaResource
from contracts.v1.workforce import WorkerChange, WorkerChangeKind, local_day

NAIVE_APPLY = "bench.workforce.naive_apply"


class NaiveActivities:
    def __init__(self, psa: object, erp: object) -> None:
        self.psa = psa
        self.erp = erp

    @activity.defn(name=NAIVE_APPLY)
    async def apply(self, change: WorkerChange) -> None:
        psa, erp = self.psa, self.erp
        existing: PsaResource | None = await psa.get_resource(change.worker_id)  # type: ignore[attr-defined]
        resource = existing or PsaResource(
            worker_id=change.worker_id, name=change.name or change.worker_id, fte=Decimal(1)
        )
        updates = {
            name: getattr(change, name)
            for name in ("name", "email", "role", "location", "practice", "manager_id", "fte")
            if getattr(change, name) is not None
        }
        leaves = list(resource.leaves)
        if change.kind in (WorkerChangeKind.HIRE, WorkerChangeKind.REHIRE):
            updates["available_from"] = change.effective_date
        elif change.kind is WorkerChangeKind.LEAVE_START:
            leaves.append(LeavePeriod(start=change.effective_date, end=change.leave_until))
        elif change.kind is WorkerChangeKind.LEAVE_END:
            day = change.effective_date
            leaves = [
                p.model_copy(update={"end": day - timedelta(days=1)}) if p.overlaps(day, day) else p
                for p in leaves
                if p.start < day
            ]
        updates["leaves"] = leaves
        await psa.upsert_resource(resource.model_copy(update=updates))  # type: ignore[attr-defined]
        if change.cost_rate is not None:
            await erp.put_labor_cost_rate(  # type: ignore[attr-defined]
                LaborCostRate(
                    worker_id=change.worker_id,
                    rate=change.cost_rate,
                    effective_from=change.effective_date,
                    key=change.event_id,
                ),
                today=local_day(datetime.now(UTC), change.time_zone),
            )
