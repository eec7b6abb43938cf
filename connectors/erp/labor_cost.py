"""Labor cost rates in the ERP, effective-dated: what a worker's hour costs from a given day.

    await erp.put_labor_cost_rate(LaborCostRate(worker_id="W-1", rate=Money("85", "USD"),
                                                effective_from=date(2026, 1, 1), key="evt-9"))

A new rate is a new row of the worker's rate history, effective from its day; rows already
there and costs already posted are never rewritten (a posting keeps the cost it was posted
with). The employee's current labor cost (`get_cost_rate`) follows the row in force. Keyed by
`key` (the HCM event): the same row sent twice is stored once. `FakeErp` has it in memory
(`connectors/erp/fake_labor_cost.py`).
"""

from __future__ import annotations

from datetime import date
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from contracts.money import Money


class LaborCostRate(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    worker_id: str
    rate: Money
    """Per hour."""
    effective_from: date
    key: str
    """The business identity of the row (the HCM event id)."""
    sequence: int = 0
    """HCM's event sequence: of two rows effective the same day (a same-day correction), the
    later-entered one is in force."""


def rate_on(history: list[LaborCostRate], day: date) -> LaborCostRate | None:
    """The row in force on `day`: the latest effective on or before it, and of rows effective
    the same day, the one HCM entered last."""
    due = [r for r in history if r.effective_from <= day]
    return max(due, key=lambda r: (r.effective_from, r.sequence)) if due else None


@runtime_checkable
class ErpLaborCostPort(Protocol):
    async def put_labor_cost_rate(self, rate: LaborCostRate, *, today: date) -> LaborCostRate:
        """Add the row (once per key); when it is the row in force `today`, it becomes the
        employee's labor cost."""
        ...

    async def labor_cost_rates(self, worker_id: str) -> list[LaborCostRate]:
        """The worker's rate history, oldest effective first."""
        ...
