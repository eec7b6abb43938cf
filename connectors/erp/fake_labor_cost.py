"""The in-memory ERP's labor cost rate history (`ErpLaborCostPort`)."""

from __future__ import annotations

from datetime import date

from connectors.erp.labor_cost import LaborCostRate, rate_on
from contracts.errors import PssyncError
from contracts.money import Money


class FakeLaborCostMixin:
    """Rate rows per worker; the row in force sets `cost_rates` (the employee's labor cost)."""

    cost_rates: dict[str, Money]

    @property
    def labor_rates(self) -> dict[str, list[LaborCostRate]]:
        found: dict[str, list[LaborCostRate]] | None = self.__dict__.get("_labor_rates")
        if found is None:
            found = self.__dict__["_labor_rates"] = {}
        return found

    def fail_labor_cost_next(self, error: PssyncError, times: int = 1) -> None:
        """Make the next `times` rate writes fail with `error` (before anything is stored)."""
        self.__dict__.setdefault("_labor_failures", []).extend([error] * times)

    async def put_labor_cost_rate(self, rate: LaborCostRate, *, today: date) -> LaborCostRate:
        pending: list[PssyncError] = self.__dict__.get("_labor_failures", [])
        if pending:
            raise pending.pop(0)
        history = self.labor_rates.setdefault(rate.worker_id, [])
        for row in history:
            if row.key == rate.key:
                return row
        history.append(rate)
        history.sort(key=lambda r: (r.effective_from, r.sequence))
        current = rate_on(history, today)
        if current is not None:
            self.cost_rates[rate.worker_id] = current.rate
        return rate

    async def labor_cost_rates(self, worker_id: str) -> list[LaborCostRate]:
        return list(self.labor_rates.get(worker_id, []))
