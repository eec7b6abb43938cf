"""What a labor cost row costs in NetSuite calls (`NetSuiteErp` on the ERP twin, every request
recorded, the account's dates in `D/M/YYYY`): the worker's history is one SuiteQL query with
its columns, never a GET per row, so a row costs the same few calls however long the history
is; a retried row adds no write; and the activity reads the history for the opening row only
until it has seen a row of the worker's."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from decimal import Decimal

import httpx

from activities.workforce import OPENING_KEY, PutLaborCostRate, WorkforceActivities
from connectors.erp import NetSuiteErp
from connectors.erp.labor_cost import LaborCostRate, rate_on
from connectors.psa import FakePsa
from contracts.money import Money
from sandbox import erp
from tests._servers import serve
from tests.connectors._erp_twin import settings
from tests.twins._erp_fixtures import WORKER, small_firm

SUITEQL = ("POST", "/services/rest/query/v1/suiteql")
RECORD = "/services/rest/record/v1/customrecord_pssync_labor_cost_rate"
EMPLOYEE = f"/services/rest/record/v1/employee/eid:{WORKER}"
DATE_FORMAT = "D/M/YYYY"


class Recording(httpx.AsyncBaseTransport):
    """The connector's HTTP transport, counting requests by method and path."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: Counter[tuple[str, str]] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.startswith("/oauth2/"):  # the token, not the ERP's API
            self.sent[(request.method, request.url.path)] += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def take(self) -> Counter[tuple[str, str]]:
        """The requests since the last `take`, by (method, path with ids as `{id}`)."""
        found: Counter[tuple[str, str]] = Counter()
        for (method, path), n in self.sent.items():
            if path.startswith(RECORD + "/"):
                path = RECORD + "/{id}"
            found[(method, path)] += n
        self.sent.clear()
        return found


@asynccontextmanager
async def netsuite() -> AsyncIterator[tuple[NetSuiteErp, Recording]]:
    app = erp.create_app(date_format=DATE_FORMAT)
    erp.load_firm(app, small_firm())
    recording = Recording()
    async with serve(app) as url:
        connector = NetSuiteErp(
            settings(url, date_format=DATE_FORMAT),
            transport=recording,
            backoff_base_s=0.01,
            backoff_cap_s=0.2,
            poll_interval_s=0.01,
        )
        async with connector:
            yield connector, recording


def row(n: int, amount: str, on: date, *, sequence: int = 0) -> LaborCostRate:
    return LaborCostRate(
        worker_id=WORKER,
        rate=Money(Decimal(amount), "USD"),
        effective_from=on,
        key=f"evt-{n}",
        sequence=sequence,
    )


async def test_a_row_costs_a_fixed_few_calls_however_long_the_history() -> None:
    async with netsuite() as (ns, recording):
        today = date(2026, 6, 15)
        rows = [row(n, f"{100 + n}.25", date(2026, 1 + n, 13)) for n in range(8)]
        for n, rate in enumerate(rows):
            assert await ns.put_labor_cost_rate(rate, today=today) == rate
            calls = recording.take()
            due = rate_on(rows[: n + 1], today)
            patched = due == rate  # the new row is in force: the employee's cost follows it
            assert calls == Counter(
                {
                    SUITEQL: 1,
                    ("PUT", RECORD + "/{id}"): 1,
                    ("GET", EMPLOYEE): 1,
                    **({("PATCH", EMPLOYEE): 1} if patched else {}),
                }
            ), (n, calls)
        # a retry after a lost answer: found in the history, nothing written
        assert await ns.put_labor_cost_rate(rows[3], today=today) == rows[3]
        assert recording.take() == Counter({SUITEQL: 1, ("GET", EMPLOYEE): 1})
        # the history, read back in one query, dates in the account's format
        assert await ns.labor_cost_rates(WORKER) == rows
        assert recording.take() == Counter({SUITEQL: 1})
        assert await ns.get_cost_rate(WORKER) == Money(Decimal("105.25"), "USD")


async def test_a_same_day_correction_and_a_back_dated_row_set_the_rate_in_force() -> None:
    async with netsuite() as (ns, recording):
        today = date(2026, 6, 15)
        first = row(1, "80", date(2026, 6, 1), sequence=1)
        corrected = row(2, "85", date(2026, 6, 1), sequence=2)
        back_dated = row(3, "70", date(2026, 5, 1), sequence=3)
        await ns.put_labor_cost_rate(corrected, today=today)
        await ns.put_labor_cost_rate(first, today=today)  # entered earlier, arrives later
        assert await ns.get_cost_rate(WORKER) == Money(Decimal("85"), "USD")
        await ns.put_labor_cost_rate(back_dated, today=today)
        assert await ns.get_cost_rate(WORKER) == Money(Decimal("85"), "USD")
        assert await ns.labor_cost_rates(WORKER) == [back_dated, first, corrected]
        assert recording.take()[("GET", RECORD + "/{id}")] == 0


async def test_the_activity_reads_the_history_for_the_opening_row_once_per_worker() -> None:
    async with netsuite() as (ns, recording):
        activities = WorkforceActivities(FakePsa(), ns)
        today = date(2026, 6, 15)

        async def put(rate: LaborCostRate) -> LaborCostRate:
            return await activities.put_labor_cost_rate(
                PutLaborCostRate(
                    worker_id=WORKER,
                    rate=rate.rate,
                    effective_from=rate.effective_from,
                    key=rate.key,
                    sequence=rate.sequence,
                    today=today,
                )
            )

        await put(row(1, "130.00", date(2026, 6, 1)))
        first = recording.take()
        # the opening check, the opening row, the row: three history reads
        assert first[SUITEQL] == 3 and first[("PUT", RECORD + "/{id}")] == 2
        await put(row(2, "140.00", date(2026, 6, 10)))
        assert recording.take()[SUITEQL] == 1
        history = await ns.labor_cost_rates(WORKER)
        assert [(r.key, r.rate.amount) for r in history] == [
            (OPENING_KEY, Decimal("125.5")),
            ("evt-1", Decimal("130.00")),
            ("evt-2", Decimal("140.00")),
        ]

        recording.take()

        # another process (a fresh activities object) reads the history once, finds rows and
        # adds no opening row
        again = WorkforceActivities(FakePsa(), ns)
        await again.put_labor_cost_rate(
            PutLaborCostRate(
                worker_id=WORKER,
                rate=Money(Decimal("150.00"), "USD"),
                effective_from=date(2026, 6, 12),
                key="evt-3",
                today=today,
            )
        )
        assert recording.take()[SUITEQL] == 2
        assert [r.key for r in await ns.labor_cost_rates(WORKER)] == [
            OPENING_KEY,
            "evt-1",
            "evt-2",
            "evt-3",
        ]
        assert await ns.get_cost_rate(WORKER) == Money(Decimal("150.00"), "USD")
