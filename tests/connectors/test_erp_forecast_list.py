"""Reading many projects' labor forecasts at once (`list_forecasts_of`, what forecast
reconciliation reads), against the ERP twin over HTTP: SuiteQL over the custom record type
`customrecord_pssync_labor_forecast`, 100 projects a query, every page of 1,000, the
projects named as reconciliation names them (internal id or `eid:` + enterprise ID), and a
project the ERP does not hold left out rather than read as one with no forecast."""

from __future__ import annotations

from decimal import Decimal

from connectors.erp import NetSuiteErp
from contracts.money import Money
from contracts.systems import System
from contracts.v1.models import Forecast, ForecastStatus
from sandbox import erp as erp_twin_module
from tests.connectors._erp_twin import erp, netsuite_on, twin
from tests.connectors.test_erp import ENTERPRISE_ID, provision
from tests.twins._erp_fixtures import ErpTwin

__all__ = ["erp", "twin"]

OTHER_PROJECT = "01J0000000000000000000PRJ2"
QUIET_PROJECT = "01J0000000000000000000PRJ3"
UNKNOWN_PROJECT = "01J0000000000000000000NOPE"


def forecast(project: str, period: str, hours: str, cost: str, version: int = 1) -> Forecast:
    return Forecast(
        source_system=System.PSA,
        project_id=project,
        period=period,
        hours=Decimal(hours),
        labor_cost=Money(cost, "USD"),
        version=version,
    )


async def test_many_projects_forecasts_by_project_and_month(
    erp: NetSuiteErp, twin: ErpTwin
) -> None:
    mine = await provision(erp)
    other = await provision(erp, OTHER_PROJECT)
    await provision(erp, QUIET_PROJECT)
    await erp.put_forecast(forecast(mine, "2025-06", "40", "5000", version=2))
    await erp.put_forecast(forecast(mine, "2025-07", "80", "10000"))
    await erp.put_forecast(forecast(mine, "2025-08", "8", "1000"))
    await erp.put_forecast(forecast(other, "2025-06", "16", "2000.50"))
    # Finance approves a month in NetSuite: the list reads it as approved.
    url = "/services/rest/record/v1/customrecord_pssync_labor_forecast"
    approved = await twin.client.patch(
        f"{url}/eid:pssync-forecast-{other}-2025-06",
        json={"custrecord_pssync_lf_status": "Approved"},
    )
    assert approved.status_code == 204, approved.text
    eid, quiet, unknown = f"eid:{ENTERPRISE_ID}", f"eid:{QUIET_PROJECT}", f"eid:{UNKNOWN_PROJECT}"

    found = await erp.list_forecasts_of(
        [eid, other, quiet, unknown, "999999"], periods=["2025-06", "2025-07"]
    )

    # The ERP holds three of the five; the quiet one has no forecast in those months.
    assert set(found) == {eid, other, quiet}
    assert found[quiet] == {}
    assert sorted(found[eid]) == ["2025-06", "2025-07"]  # August was not asked for
    june = found[eid]["2025-06"]
    assert (june.project_id, june.hours, june.labor_cost, june.version) == (
        eid,
        Decimal(40),
        Money("5000", "USD"),
        2,
    )
    assert june.status is ForecastStatus.DRAFT and june.source_system is System.ERP
    theirs = found[other]["2025-06"]
    assert theirs.status is ForecastStatus.APPROVED and theirs.labor_cost == Money("2000.50", "USD")
    # What one record read answers, the list answers too.
    assert found[eid]["2025-07"] == await erp.get_forecast(eid, "2025-07")

    every_month = await erp.list_forecasts_of([mine])
    assert sorted(every_month[mine]) == ["2025-06", "2025-07", "2025-08"]
    assert await erp.list_forecasts_of([mine], periods=[]) == {mine: {}}


async def test_over_a_thousand_forecasts_are_read_in_pages(erp: NetSuiteErp, twin: ErpTwin) -> None:
    first = int(await provision(erp))
    second = int(await provision(erp, OTHER_PROJECT))
    months = [f"{year}-{month:02d}" for year in range(1950, 2050) for month in range(1, 13)]
    with twin.state.session() as s:
        for job in (first, second):
            for period in months[:650]:
                s.add(
                    erp_twin_module.ErpLaborForecast(
                        external_id=f"pssync-forecast-{job}-{period}",
                        name=f"pssync labor forecast, project {job}, {period}",
                        job_id=job,
                        period_name=period,
                        hours="8",
                        labor_cost="1000",
                        currency="USD",
                        status="draft",
                        version=1,
                    )
                )
        s.commit()

    async with netsuite_on(twin) as fresh:  # knows no project yet
        found = await fresh.list_forecasts_of([f"eid:{ENTERPRISE_ID}", f"eid:{OTHER_PROJECT}"])
        requests = fresh.http.calls  # its token aside

    assert [len(f) for f in found.values()] == [650, 650]
    assert {f.hours for f in found[f"eid:{ENTERPRISE_ID}"].values()} == {Decimal(8)}
    # One query finds both projects by their enterprise IDs; 1,300 rows come in two pages.
    assert requests == 3
