"""Reading many projects' invoices over SuiteQL (`list_invoices_of`, what billing
reconciliation reads), against the ERP twin over HTTP: the query NetSuite answers (invoices
are `transaction` rows of type `CustInvc`, the project on their lines), every page of it, and
the twin refusing what NetSuite refuses."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

from sqlmodel import select

from connectors.erp import NetSuiteErp
from contracts.money import Money
from contracts.v1.models import InvoiceStatus
from sandbox import erp as erp_twin_module
from tests.connectors._erp_twin import erp, twin
from tests.connectors.test_erp import ENTERPRISE_ID, invoice, provision
from tests.twins._erp_fixtures import ErpTwin

__all__ = ["erp", "twin"]

SUITEQL = "/services/rest/query/v1/suiteql"
OTHER_PROJECT = "01J0000000000000000000PRJ2"
EMPTY_PROJECT = "01J0000000000000000000PRJ3"


async def suiteql(twin: ErpTwin, q: str, **params: int) -> tuple[int, dict[str, object]]:
    response = await twin.client.post(
        SUITEQL, json={"q": q}, params=params, headers={"Prefer": "transient"}
    )
    body: dict[str, object] = response.json()
    return response.status_code, body


async def test_many_projects_invoices_come_from_the_transaction_table(
    erp: NetSuiteErp, twin: ErpTwin
) -> None:
    await provision(erp)
    other = await provision(erp, OTHER_PROJECT)
    empty = await provision(erp, EMPTY_PROJECT)
    milestone = await erp.create_invoice(invoice("inv-a-ms-M1"))
    period = invoice("inv-a-period-2025-06").model_copy(
        update={"milestone_code": None, "period": "2025-06"}
    )
    voided = await erp.create_invoice(period)
    await erp.void_invoice(voided, reason="billed twice")
    theirs = await erp.create_invoice(
        invoice("inv-b-ms-M2").model_copy(update={"project_id": OTHER_PROJECT})
    )

    found = await erp.list_invoices_of([f"eid:{ENTERPRISE_ID}", other, empty, "eid:NOPE"])

    assert set(found) == {f"eid:{ENTERPRISE_ID}", other, empty, "eid:NOPE"}
    assert found[empty] == [] and found["eid:NOPE"] == []
    mine = {h.erp_id: h for h in found[f"eid:{ENTERPRISE_ID}"]}
    assert set(mine) == {milestone, voided}  # two lines each, one header each
    assert mine[milestone].key == "inv-a-ms-M1" and mine[milestone].milestone_code == "M1"
    assert mine[milestone].total == Money("25000.50", "USD")
    assert mine[milestone].status is InvoiceStatus.OPEN
    assert mine[milestone].invoice_date == date(2025, 6, 30)
    assert mine[milestone].updated_at is not None
    assert mine[voided].period == "2025-06" and mine[voided].milestone_code is None
    assert mine[voided].status is InvoiceStatus.VOID
    assert [(h.erp_id, h.key, h.project) for h in found[other]] == [(theirs, "inv-b-ms-M2", other)]


async def test_a_thousand_and_one_invoices_are_read_over_two_pages(
    erp: NetSuiteErp, twin: ErpTwin
) -> None:
    job = int(await provision(erp))
    with twin.state.session() as s:
        customer = s.exec(select(erp_twin_module.ErpJob).where(erp_twin_module.ErpJob.id == job))
        customer_id = customer.one().customer_id
        line = [{"description": "Work", "quantity": "1", "rate": None, "amount": "10"}]
        for n in range(1001):
            s.add(
                erp_twin_module.ErpInvoice(
                    external_id=f"inv-x-period-{n}",
                    customer_id=customer_id,
                    job_id=job,
                    tran_date=date(2025, 6, 30),
                    lines_json=json.dumps(line),
                    total="10",
                )
            )
        s.commit()
    requests_before = twin.state.stats().requests

    [headers] = (await erp.list_invoices_of([str(job)])).values()

    assert len({h.erp_id for h in headers}) == 1001
    assert {h.total.amount for h in headers} == {Decimal(10)}
    # An internal id needs no look-up: two SuiteQL pages, nothing else.
    assert twin.state.stats().requests - requests_before == 2


async def test_the_twin_refuses_what_netsuite_refuses(twin: ErpTwin) -> None:
    status, body = await suiteql(twin, "SELECT * FROM invoice WHERE job IN (1)")
    assert status == 400 and "Record 'invoice' was not found" in json.dumps(body)
    status, body = await suiteql(twin, "SELECT t.id FROM transaction t WHERE t.job IN (1)")
    assert status == 400 and "Field 'job' for record 'transaction'" in json.dumps(body)
    status, _ = await suiteql(twin, "SELECT id FROM transaction", limit=10, offset=5)
    assert status == 400
    status, body = await suiteql(twin, "SELECT id FROM transaction", limit=10, offset=10)
    assert status == 200 and body["items"] == []
