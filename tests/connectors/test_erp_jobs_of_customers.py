"""Reading many customers' projects over SuiteQL (`jobs_of_customers`, what project-master
reconciliation reads to find a job a person made by hand), against the ERP twin over HTTP:
pssync's job and the hand-made ones, every page of a customer with more than 1,000 jobs, 100
customers a query."""

from __future__ import annotations

from sqlmodel import select

from connectors.erp import NetSuiteErp
from contracts.v1.models import ProjectStatus
from sandbox import erp as erp_twin_module
from tests.connectors._erp_twin import erp, twin
from tests.connectors.test_erp import ENTERPRISE_ID, provision
from tests.twins._erp_fixtures import CUSTOMER, HOLD_CUSTOMER, RECORD, ErpTwin

__all__ = ["erp", "twin"]

MANY = 1_100


def customer_id(twin: ErpTwin, external_id: str) -> str:
    with twin.state.session() as s:
        table = erp_twin_module.ErpCustomer
        [row] = s.exec(select(table).where(table.external_id == external_id))
        return str(row.id)


async def test_every_job_of_each_customer_comes_back_over_every_page(
    erp: NetSuiteErp, twin: ErpTwin
) -> None:
    ours = await provision(erp)
    acme, hold = customer_id(twin, CUSTOMER), customer_id(twin, HOLD_CUSTOMER)
    # a person re-keys the deal by hand: same customer, no external or enterprise ID
    made = await twin.client.post(
        f"{RECORD}/job",
        json={
            "companyName": "Data platform",
            "customer": {"id": acme},
            "comments": "won deal 006ACME re-keyed",
        },
    )
    assert made.status_code == 204, made.text
    by_hand = made.headers["location"].rsplit("/", 1)[-1]
    with twin.state.session() as s:  # many more of Acme's, and a closed one of Holdco's
        for n in range(MANY):
            s.add(erp_twin_module.ErpJob(company_name=f"Acme {n}", customer_id=int(acme)))
        s.add(erp_twin_module.ErpJob(company_name="Old", customer_id=int(hold), status="1"))
        s.commit()
    unknown = [str(900_000 + n) for n in range(148)]
    requests_before = twin.state.stats().requests

    found = await erp.jobs_of_customers([acme, hold, *unknown, acme])

    # 150 customers: two queries, the first of two pages (1,102 rows), the second of one
    assert twin.state.stats().requests - requests_before == 3
    assert set(found) == {acme, hold, *unknown}
    assert all(found[c] == [] for c in unknown)
    jobs = {j.erp_id: j for j in found[acme]}
    assert len(found[acme]) == len(jobs) == MANY + 2
    assert jobs[ours].enterprise_id == ENTERPRISE_ID and jobs[ours].customer_erp_id == acme
    assert jobs[by_hand].enterprise_id is None
    assert (jobs[by_hand].name, jobs[by_hand].reference) == (
        "Data platform",
        "won deal 006ACME re-keyed",
    )
    assert {j.status for j in found[acme]} == {ProjectStatus.ACTIVE}
    [old] = found[hold]
    assert (old.name, old.status, old.enterprise_id) == ("Old", ProjectStatus.CLOSED, None)


async def test_no_customers_no_query(erp: NetSuiteErp, twin: ErpTwin) -> None:
    requests_before = twin.state.stats().requests
    assert await erp.jobs_of_customers([]) == {}
    assert twin.state.stats().requests == requests_before
