"""The ERP twin for tests: a small hand-built firm, served over HTTP on loopback.

Cost centers CC-110 (active) and CC-190 (inactive); periods 2025-05 (closed), 2025-06 and
2025-07 (open); customers ACME (in good standing) and HOLDCO (on credit hold).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import httpx
from sqlmodel import select

from sandbox import erp
from sandbox._twin import FaultConfig
from sandbox.seed import AccountingPeriod, CostCenter, Customer, Firm, Worker
from tests._servers import serve
from tests._twins import TwinApp

RECORD = "/services/rest/record/v1"
AUTH = {"Authorization": "Bearer dev-static-token"}

ACTIVE_CC = "CC-110"
INACTIVE_CC = "CC-190"
CLOSED_PERIOD = "2025-05"
OPEN_PERIOD = "2025-06"
CUSTOMER = "001ACME0000000000A"
HOLD_CUSTOMER = "001HOLD0000000000A"
WORKER = "E1001"


def small_firm() -> Firm:
    return Firm(
        seed=0,
        today=date(2025, 6, 15),
        name="Test Advisory",
        practices=(),
        cost_centers=(
            CostCenter(ACTIVE_CC, "Strategy"),
            CostCenter(INACTIVE_CC, "Legacy", active=False),
        ),
        workers=(
            Worker(
                id=WORKER,
                wid="0" * 32,
                first_name="Ada",
                last_name="Lovelace",
                email="ada@example.com",
                role="Manager",
                practice="Strategy",
                cost_center=ACTIVE_CC,
                location="London",
                hire_date=date(2020, 1, 1),
                cost_rate=Decimal("125.50"),
            ),
        ),
        rate_cards=(),
        customers=(
            Customer(CUSTOMER, "Acme Corp", "USD", "US", "Tech"),
            Customer(HOLD_CUSTOMER, "Holdco", "USD", "US", "Retail", credit_hold=True),
        ),
        opportunities=(),
        periods=(
            AccountingPeriod(CLOSED_PERIOD, date(2025, 5, 1), date(2025, 5, 31), closed=True),
            AccountingPeriod(OPEN_PERIOD, date(2025, 6, 1), date(2025, 6, 30), closed=False),
            AccountingPeriod("2025-07", date(2025, 7, 1), date(2025, 7, 31), closed=False),
        ),
    )


@dataclass
class ErpTwin(TwinApp):
    base_url: str
    client: httpx.AsyncClient
    """Authenticated with the static bearer token, based at the twin's root."""

    async def faults(self, **config: object) -> None:
        response = await self.client.post("/_admin/faults", json=config)
        response.raise_for_status()

    def set_faults(self, **config: object) -> None:
        """Set faults in process (no request, so it works during an outage too)."""
        self.state.set_faults(FaultConfig.model_validate(config))

    def async_jobs(self) -> int:
        """Async jobs the twin has run (read from its database)."""
        with self.state.session() as s:
            return len(s.exec(select(erp.ErpAsyncJob)).all())

    async def count(self, record_type: str, q: str | None = None) -> int:
        params = {"limit": 1} | ({"q": q} if q else {})
        response = await self.client.get(f"{RECORD}/{record_type}", params=params)
        response.raise_for_status()
        total: int = response.json()["totalResults"]
        return total


@contextlib.asynccontextmanager
async def erp_twin(*, pending_polls: int = 1) -> AsyncIterator[ErpTwin]:
    app = erp.create_app(async_pending_polls=pending_polls)
    erp.load_firm(app, small_firm())
    async with serve(app) as base_url:
        async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=10) as client:
            yield ErpTwin(app=app, base_url=base_url, client=client)
