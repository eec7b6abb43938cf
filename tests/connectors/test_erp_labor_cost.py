"""Effective-dated labor cost rates in the ERP: `NetSuiteErp` over HTTP against the twin's
custom record type `customrecord_pssync_labor_cost_rate`, and the in-memory `FakeErp`, run the
same scenario: a row is stored once per HCM event (a retried write after a lost answer adds
nothing), the history comes back in effective order, the row in force on the worker's today is
the employee's labor cost, and a future-dated row leaves today's cost alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal

import pytest

from connectors.erp import FakeErp, NetSuiteErp
from connectors.erp.labor_cost import ErpLaborCostPort, LaborCostRate, rate_on
from contracts.money import Money
from tests.connectors.test_erp import settings
from tests.twins._erp_fixtures import WORKER, ErpTwin, erp_twin

RECORD = "customrecord_pssync_labor_cost_rate"


@pytest.fixture(params=["twin", "fake"])
async def port(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[FakeErp | NetSuiteErp, ErpTwin | None]]:
    if request.param == "fake":
        fake = FakeErp()
        fake.cost_rates[WORKER] = Money(Decimal("125.50"), "USD")
        yield fake, None
        return
    async with erp_twin() as twin:
        connector = NetSuiteErp(
            settings(twin.base_url), backoff_base_s=0.01, backoff_cap_s=0.2, poll_interval_s=0.01
        )
        async with connector:
            yield connector, twin


def row(key: str, amount: str, on: date) -> LaborCostRate:
    return LaborCostRate(
        worker_id=WORKER, rate=Money(Decimal(amount), "USD"), effective_from=on, key=key
    )


async def test_rate_history_is_stored_once_per_event_and_only_the_row_in_force_is_the_cost(
    port: tuple[FakeErp | NetSuiteErp, ErpTwin | None],
) -> None:
    erp, twin = port
    assert isinstance(erp, ErpLaborCostPort)
    today = date(2025, 6, 15)
    raise_now = row("evt-1", "130.00", date(2025, 6, 1))
    raise_later = row("evt-2", "150.25", date(2025, 6, 16))

    assert await erp.put_labor_cost_rate(raise_later, today=today) == raise_later
    # A future-dated row does not change what an hour costs today.
    assert await erp.get_cost_rate(WORKER) == Money(Decimal("125.50"), "USD")

    assert await erp.put_labor_cost_rate(raise_now, today=today) == raise_now
    assert await erp.put_labor_cost_rate(raise_now, today=today) == raise_now  # a retry
    assert await erp.get_cost_rate(WORKER) == Money(Decimal("130.00"), "USD")

    history = await erp.labor_cost_rates(WORKER)
    assert history == [raise_now, raise_later]
    assert rate_on(history, date(2025, 6, 15)) == raise_now
    assert rate_on(history, date(2025, 6, 16)) == raise_later
    assert await erp.labor_cost_rates("E-NOBODY") == []
    if twin is not None:
        assert await twin.count(RECORD) == 2


def test_a_same_day_correction_is_the_rate_in_force() -> None:
    from datetime import date

    from connectors.erp.labor_cost import LaborCostRate, rate_on
    from contracts import Money

    day = date(2026, 12, 7)
    first = LaborCostRate(
        worker_id="W-1", rate=Money("80", "USD"), effective_from=day, key="evt-1", sequence=1
    )
    corrected = first.model_copy(update={"rate": Money("85", "USD"), "key": "evt-2", "sequence": 2})
    for history in ([first, corrected], [corrected, first]):
        found = rate_on(history, day)
        assert found is not None and found.rate == Money("85", "USD")
    assert rate_on([first, corrected], date(2026, 12, 6)) is None
