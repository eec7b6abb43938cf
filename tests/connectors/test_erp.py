"""The ERP connector against the ERP twin over real HTTP (and `FakeErp` held to the same rules):
every port operation, retries through 429/5xx/timeouts/outages, token refresh, idempotency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal

import pytest

from connectors.erp import (
    CostCenterStatus,
    ErpPort,
    FakeErp,
    NetSuiteErp,
    batch_idempotency_key,
)
from contracts.errors import (
    BusinessRuleViolation,
    NotFoundError,
    StaleVersionError,
    TransientError,
)
from contracts.money import Money
from contracts.systems import System
from contracts.v1.models import (
    BillingRule,
    CostPosting,
    Customer,
    Forecast,
    ForecastStatus,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    PostingKind,
    Project,
    ProjectStatus,
)
from sandbox import erp as erp_twin_module
from sandbox.app import create_sandbox
from tests._servers import serve
from tests.connectors._erp_twin import erp, settings, twin
from tests.twins._erp_fixtures import (
    ACTIVE_CC,
    CLOSED_PERIOD,
    CUSTOMER,
    HOLD_CUSTOMER,
    INACTIVE_CC,
    OPEN_PERIOD,
    RECORD,
    WORKER,
    ErpTwin,
    erp_twin,
    small_firm,
)

ENTERPRISE_ID = "01J0000000000000000000PRJ1"

__all__ = ["erp", "settings", "twin"]


def customer(external_id: str = CUSTOMER, name: str = "Acme Corp") -> Customer:
    return Customer(source_system=System.CRM, external_id=external_id, name=name)


def project(cost_center: str = ACTIVE_CC, name: str = "Acme rollout") -> Project:
    return Project(
        source_system=System.PSA,
        name=name,
        customer_id=CUSTOMER,
        billing_rule=BillingRule.TIME_AND_MATERIALS,
        contract_value=Money("120000", "USD"),
        start_date=date(2025, 6, 1),
        end_date=date(2025, 12, 31),
        cost_center=cost_center,
        practice="STRAT",
    )


def posting(
    key: str,
    project_id: str = ENTERPRISE_ID,
    *,
    day: date = date(2025, 6, 10),
    cost_center: str = ACTIVE_CC,
    hours: str = "7.5",
    cost: str = "941.25",
) -> CostPosting:
    return CostPosting(
        source_system=System.PSSYNC,
        idempotency_key=key,
        kind=PostingKind.TIME,
        project_id=project_id,
        worker_id=WORKER,
        source_entry_id=f"TE-{key}",
        posting_date=day,
        period=f"{day.year:04d}-{day.month:02d}",
        hours=Decimal(hours),
        cost_amount=Money(cost, "USD"),
        bill_amount=Money("1500", "USD"),
        cost_center=cost_center,
    )


async def provision(erp: ErpPort, enterprise_id: str = ENTERPRISE_ID) -> str:
    customer_id = await erp.upsert_customer(customer(), enterprise_id="01J00000000000000000000CUS")
    return await erp.upsert_project(
        project(),
        enterprise_id=enterprise_id,
        customer_erp_id=customer_id,
        budget=Money("80000", "USD"),
    )


# --------------------------------------------------------------------------- provisioning


async def test_customer_and_project_upserts_are_idempotent(erp: NetSuiteErp, twin: ErpTwin) -> None:
    first = await provision(erp)
    again = await provision(erp)
    assert first == again
    assert await twin.count("job", f"externalId IS {ENTERPRISE_ID}") == 1
    assert await twin.count("customer") == 2
    erp_project = await erp.get_project(first)
    assert erp_project.status is ProjectStatus.ACTIVE
    assert erp_project.enterprise_id == ENTERPRISE_ID == erp_project.external_id
    assert erp_project.budget == Money("80000", "USD") and erp_project.budget_version == 1
    assert erp_project.cost_center == ACTIVE_CC
    assert (await erp.get_project(ENTERPRISE_ID)).erp_id == first


async def test_close_project_is_idempotent(erp: NetSuiteErp) -> None:
    erp_id = await provision(erp)
    await erp.close_project(erp_id, reason="saga compensation")
    await erp.close_project(erp_id, reason="saga compensation")
    await erp.close_project("999999", reason="never created")
    closed = await erp.get_project(erp_id)
    assert closed.status is ProjectStatus.CLOSED
    # Re-running provisioning does not reopen it, nor reset its budget.
    assert await provision(erp) == erp_id
    assert (await erp.get_project(erp_id)).status is ProjectStatus.CLOSED


async def test_business_refusals_are_typed(erp: NetSuiteErp) -> None:
    held = await erp.upsert_customer(customer(HOLD_CUSTOMER, "Holdco"), enterprise_id="X")
    with pytest.raises(BusinessRuleViolation) as hold:
        await erp.upsert_project(
            project(),
            enterprise_id="01J000000000000000000HOLD1",
            customer_erp_id=held,
            budget=Money("1", "USD"),
        )
    assert (hold.value.code, hold.value.field) == ("CUSTOMER_CREDIT_HOLD", "customer")
    acme = await erp.upsert_customer(customer(), enterprise_id="Y")
    for cost_center in (INACTIVE_CC, "CC-404"):
        with pytest.raises(BusinessRuleViolation) as cc:
            await erp.upsert_project(
                project(cost_center),
                enterprise_id="01J0000000000000000000CC01",
                customer_erp_id=acme,
                budget=Money("1", "USD"),
            )
        assert (cc.value.code, cc.value.field) == ("INVALID_COST_CENTER", "department")


async def test_reference_data(erp: NetSuiteErp) -> None:
    assert await erp.cost_center_status(ACTIVE_CC) is CostCenterStatus.ACTIVE
    assert await erp.cost_center_status(INACTIVE_CC) is CostCenterStatus.INACTIVE
    assert await erp.cost_center_status("CC-404") is CostCenterStatus.UNKNOWN
    assert await erp.period_open(OPEN_PERIOD) is True
    assert await erp.period_open(CLOSED_PERIOD) is False
    assert await erp.period_open("2031-01") is False
    assert await erp.period_open("June '25") is False
    assert await erp.get_cost_rate(WORKER) == Money("125.50", "USD")
    assert await erp.get_cost_rate("E-NOBODY") is None


# --------------------------------------------------------------------------- postings


async def test_post_time_reports_each_record(erp: NetSuiteErp, twin: ErpTwin) -> None:
    job = await provision(erp)
    batch = [
        posting("P-1"),
        posting("P-2", job),  # the internal id works as well as the enterprise id
        posting("P-3", day=date(2025, 5, 20)),
        posting("P-4", cost_center=INACTIVE_CC),
        posting("P-5", cost_center="CC-404"),
        posting("P-6", "01J0000000000000000NOSUCH1"),
    ]
    results = await erp.post_time(batch)
    assert [r.idempotency_key for r in results] == [p.idempotency_key for p in batch]
    assert [r.ok for r in results] == [True, True, False, False, False, False]
    errors = [(r.error.code, r.error.field) for r in results if r.error]
    assert errors == [
        ("PERIOD_CLOSED", "tranDate"),
        ("INVALID_COST_CENTER", "department"),
        ("INVALID_COST_CENTER", "department"),
        ("INVALID_KEY_OR_REF", "customer"),
    ]
    assert all(r.error.kind == "business_rule" for r in results if r.error)
    assert await twin.count("timebill") == 2
    listed = {p.idempotency_key: p for p in await erp.list_postings(ENTERPRISE_ID)}
    assert set(listed) == {"P-1", "P-2"}
    assert listed["P-1"].hours == Decimal("7.5")
    assert listed["P-1"].cost_amount == Money("941.25", "USD")
    assert listed["P-1"].cost_center == ACTIVE_CC and listed["P-1"].worker_id == WORKER
    assert listed["P-1"].project_id == job and listed["P-1"].source_entry_id == "TE-P-1"
    [total] = await erp.posted_totals(job)
    assert (total.period, total.hours, total.cost_amount, total.postings) == (
        OPEN_PERIOD,
        Decimal("15.0"),
        Money("1882.50", "USD"),
        2,
    )


async def test_retried_batch_never_duplicates(erp: NetSuiteErp, twin: ErpTwin) -> None:
    await provision(erp)
    batch = [posting(f"R-{n}") for n in range(5)]
    first = await erp.post_time(batch)
    assert twin.async_jobs() == 1
    # The same batch again (an activity retry) hits the idempotency key and follows the
    # earlier job; a reshuffled one is the same batch.
    second = await erp.post_time(list(reversed(batch)))
    assert [r.erp_id for r in first] == [r.erp_id for r in reversed(second)]
    assert twin.async_jobs() == 1 and twin.state.statuses[400] == 1
    # Part of it in another batch (another key): upserts by externalId.
    third = await erp.post_time([*batch[:2], posting("R-5")])
    assert [r.erp_id for r in third[:2]] == [r.erp_id for r in first[:2]]
    assert twin.async_jobs() == 2
    assert await twin.count("timebill") == 6


async def test_repeated_idempotency_key_yields_one_record(erp: NetSuiteErp, twin: ErpTwin) -> None:
    job = await provision(erp)
    department = (await twin.client.get(f"{RECORD}/department/eid:{ACTIVE_CC}")).json()["id"]
    # Someone (a crashed earlier attempt) already submitted this batch under its key.
    body = {
        "externalId": "K-1",
        "customer": {"id": job},
        "tranDate": "2025-06-10",
        "hours": 7.5,
        "costAmount": 941.25,
        "department": {"id": department},
    }
    key = batch_idempotency_key(["K-1"])
    earlier = await twin.client.post(
        f"{RECORD}/timebill",
        json={"items": [body]},
        headers={"Prefer": "respond-async", "X-NetSuite-Idempotency-Key": key},
    )
    assert earlier.status_code == 202
    [result] = await erp.post_time([posting("K-1")])
    assert result.ok
    assert await twin.count("timebill", "externalId IS K-1") == 1
    assert twin.state.statuses[400] >= 1  # the IDEMPOTENCY_ERROR the connector followed


async def test_refused_records_go_through_once_the_cause_is_fixed(
    erp: NetSuiteErp, twin: ErpTwin
) -> None:
    await provision(erp)
    batch = [posting("F-1"), posting("F-2", day=date(2025, 5, 20))]
    first = await erp.post_time(batch)
    assert [r.ok for r in first] == [True, False]
    period = (await twin.client.get(f"{RECORD}/accountingPeriod/eid:{CLOSED_PERIOD}")).json()
    await twin.client.patch(f"{RECORD}/accountingPeriod/{period['id']}", json={"closed": False})
    second = await erp.post_time(batch)
    assert [r.ok for r in second] == [True, True]
    assert second[0].erp_id == first[0].erp_id
    third = await erp.post_time(batch)
    assert [r.erp_id for r in third] == [r.erp_id for r in second]
    assert await twin.count("timebill") == 2


async def test_reversal_is_a_new_posting(erp: NetSuiteErp, twin: ErpTwin) -> None:
    job = await provision(erp)
    original = posting("V-1")
    assert (await erp.post_time_one(original)).ok
    reversal = await erp.reverse_posting(original)
    assert reversal.ok
    assert await erp.reverse_posting(original) == reversal  # idempotent
    twice = await erp.reverse_posting(original, idempotency_key="V-1-again")
    assert twice.error is not None
    assert (twice.error.code, twice.error.field) == ("ALREADY_REVERSED", "reverses")
    listed = {p.idempotency_key: p for p in await erp.list_postings(job)}
    assert listed["V-1-reversal"].kind is PostingKind.REVERSAL
    assert listed["V-1-reversal"].reverses == "V-1"
    assert listed["V-1-reversal"].hours == Decimal("-7.5")
    [total] = await erp.posted_totals(job)
    assert total.hours == 0 and total.cost_amount == Money("0", "USD")
    assert await twin.count("timebill") == 2


async def test_large_batches_split_and_page(twin: ErpTwin) -> None:
    async with NetSuiteErp(
        settings(twin.base_url), backoff_base_s=0.01, poll_interval_s=0.01, batch_size=50
    ) as erp:
        await provision(erp)
        results = await erp.post_time([posting(f"L-{n:03d}") for n in range(120)])
        assert all(r.ok for r in results)
        assert len({r.erp_id for r in results}) == 120
        assert len(await erp.list_postings(ENTERPRISE_ID)) == 120


# --------------------------------------------------------------------------- invoices, budget


def invoice(key: str = "INV-1", day: date = date(2025, 6, 30)) -> Invoice:
    return Invoice(
        source_system=System.PSSYNC,
        idempotency_key=key,
        project_id=ENTERPRISE_ID,
        customer_id=CUSTOMER,
        milestone_code="M1",
        invoice_date=day,
        lines=[
            InvoiceLine(description="Discovery", quantity=Decimal(1), amount=Money("20000", "USD")),
            InvoiceLine(description="Design", quantity=Decimal(1), amount=Money("5000.50", "USD")),
        ],
    )


async def test_invoice_is_created_once(erp: NetSuiteErp, twin: ErpTwin) -> None:
    job = await provision(erp)
    first = await erp.create_invoice(invoice())
    assert await erp.create_invoice(invoice()) == first
    assert await twin.count("invoice") == 1
    read = await erp.get_invoice(first)
    assert read.total == Money("25000.50", "USD")
    assert read.project_id == job and read.idempotency_key == "INV-1"
    assert read.milestone_code == "M1"
    with pytest.raises(BusinessRuleViolation) as closed:
        await erp.create_invoice(invoice("INV-2", date(2025, 5, 31)))
    assert (closed.value.code, closed.value.field) == ("PERIOD_CLOSED", "tranDate")


async def test_voided_invoice_stays_voided_and_keeps_its_reason(
    erp: NetSuiteErp, twin: ErpTwin
) -> None:
    await provision(erp)
    first = await erp.create_invoice(invoice())
    # Seeded: the first request's answer is lost, the second's is not.
    await twin.client.post("/_admin/erp/lost-responses", json={"rate": 0.5, "seed": 1})
    # The void goes through but its answer is lost; the retried void changes nothing more.
    await erp.void_invoice(first, reason="customer disputes the milestone")
    await twin.client.post("/_admin/erp/lost-responses", json={})
    assert erp.retries >= 1
    record = (await twin.client.get(f"{RECORD}/invoice/{first}")).json()
    assert record["status"] == "Voided"
    assert record["memo"].splitlines() == ["Voided: customer disputes the milestone"]
    assert (await erp.get_invoice(first)).status is InvoiceStatus.VOID
    # Voided is final: an edit is refused; the lines are still there.
    edit = await twin.client.patch(f"{RECORD}/invoice/{first}", json={"memo": "reopened"})
    assert edit.status_code == 400
    assert edit.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_TRANSACTION_STATE"
    assert (await erp.get_invoice(first)).total == Money("25000.50", "USD")
    assert await twin.count("invoice") == 1
    # A paid invoice cannot be voided.
    paid = await erp.create_invoice(invoice("INV-PAID"))
    with twin.state.session() as s:
        row = s.get(erp_twin_module.ErpInvoice, int(paid))
        assert row is not None
        row.status = "Paid In Full"
        s.add(row)
        s.commit()
    with pytest.raises(BusinessRuleViolation) as refused:
        await erp.void_invoice(paid, reason="too late")
    assert refused.value.code == "INVALID_TRANSACTION_STATE"
    assert (await erp.get_invoice(paid)).status is InvoiceStatus.PAID


async def test_budget_revision_with_version(erp: NetSuiteErp) -> None:
    job = await provision(erp)
    budget = await erp.get_budget(job)
    assert (budget.amount, budget.version) == (Money("80000", "USD"), 1)
    revised = await erp.revise_budget(job, amount=Money("90000", "USD"), expected_version=1)
    assert (revised.amount, revised.version) == (Money("90000", "USD"), 2)
    # The same revision retried (its response was lost) is not a conflict.
    again = await erp.revise_budget(job, amount=Money("90000", "USD"), expected_version=1)
    assert again.version == 2
    with pytest.raises(StaleVersionError):
        await erp.revise_budget(job, amount=Money("95000", "USD"), expected_version=1)


async def test_forecast_never_overwrites_an_approved_one(erp: NetSuiteErp) -> None:
    job = await provision(erp)
    assert await erp.get_forecast(job, OPEN_PERIOD) is None
    draft = Forecast(
        source_system=System.PSA,
        project_id=job,
        period=OPEN_PERIOD,
        hours=Decimal(100),
        labor_cost=Money("12500", "USD"),
        version=3,
    )
    written = await erp.put_forecast(draft)
    assert (written.hours, written.version, written.status) == (
        Decimal(100),
        3,
        ForecastStatus.DRAFT,
    )
    with pytest.raises(StaleVersionError):
        await erp.put_forecast(draft.model_copy(update={"version": 2}))
    await erp.put_forecast(draft.model_copy(update={"status": ForecastStatus.APPROVED}))
    with pytest.raises(BusinessRuleViolation) as refused:
        await erp.put_forecast(draft.model_copy(update={"version": 4, "hours": Decimal(90)}))
    assert (refused.value.code, refused.value.field) == ("FORECAST_APPROVED", "status")


async def test_budget_and_forecast_live_in_custom_records(twin: ErpTwin, erp: NetSuiteErp) -> None:
    """What provisioning leaves in NetSuite, and what a person changing those records in
    NetSuite meanwhile does to pssync's next write: it is compared against, not overwritten."""
    job = await provision(erp)
    budget = await twin.client.get(f"{RECORD}/customrecord_pssync_budget/eid:pssync-budget-{job}")
    fields = budget.json()
    assert fields["custrecord_pssync_budget_project"]["id"] == job
    assert (
        fields["custrecord_pssync_budget_amount"],
        fields["custrecord_pssync_budget_version"],
    ) == (
        80000,
        1,
    )
    # Finance revises the budget record in NetSuite: pssync's revision from version 1 is stale.
    changed = await twin.client.patch(
        f"{RECORD}/customrecord_pssync_budget/{fields['id']}",
        json={"custrecord_pssync_budget_amount": 85000, "custrecord_pssync_budget_version": 2},
    )
    assert changed.status_code == 204
    with pytest.raises(StaleVersionError):
        await erp.revise_budget(job, amount=Money("90000", "USD"), expected_version=1)
    assert (await erp.get_budget(job)).amount == Money("85000", "USD")
    # Finance approves a forecast in NetSuite (typing the status): pssync leaves it alone.
    draft = Forecast(
        source_system=System.PSA,
        project_id=job,
        period=OPEN_PERIOD,
        hours=Decimal(100),
        labor_cost=Money("12500", "USD"),
        version=1,
    )
    written = await erp.put_forecast(draft)
    assert written.status is ForecastStatus.DRAFT
    url = f"{RECORD}/customrecord_pssync_labor_forecast/eid:pssync-forecast-{job}-{OPEN_PERIOD}"
    record = (await twin.client.get(url)).json()
    approve = {"custrecord_pssync_lf_status": "Approved"}
    patched = await twin.client.patch(
        f"{RECORD}/customrecord_pssync_labor_forecast/{record['id']}", json=approve
    )
    assert patched.status_code == 204
    with pytest.raises(BusinessRuleViolation) as refused:
        await erp.put_forecast(draft.model_copy(update={"version": 2, "hours": Decimal(90)}))
    assert refused.value.code == "FORECAST_APPROVED"
    assert (await twin.client.get(url)).json()["custrecord_pssync_lf_hours"] == 100
    assert await twin.count("customrecord_pssync_labor_forecast") == 1


# --------------------------------------------------------------------------- resilience


@pytest.mark.parametrize("retry_after_s", [0.01, None])
async def test_rate_limits_are_retried(
    erp: NetSuiteErp, twin: ErpTwin, retry_after_s: float | None
) -> None:
    await provision(erp)
    await twin.faults(rate_limit_rate=0.4, retry_after_s=retry_after_s, seed=3)
    results = await erp.post_time([posting(f"Q-{n}") for n in range(10)])
    assert all(r.ok for r in results)
    assert twin.state.statuses[429] >= 1 and erp.retries >= 1
    await twin.faults()
    assert await twin.count("timebill") == 10


async def test_concurrency_limit_is_retried(twin: ErpTwin) -> None:
    async with NetSuiteErp(
        settings(twin.base_url, max_concurrency=8), backoff_base_s=0.01, poll_interval_s=0.01
    ) as erp:
        await provision(erp)
        await twin.faults(quota_concurrency=2, latency_ms=20)
        results = await asyncio.gather(*(erp.post_time_one(posting(f"C-{n}")) for n in range(8)))
        assert all(r.ok for r in results)
        assert twin.state.statuses[429] >= 1
        await twin.faults()
        assert await twin.count("timebill") == 8


async def test_5xx_burst_still_completes(erp: NetSuiteErp, twin: ErpTwin) -> None:
    await provision(erp)
    await twin.faults(error_rate=0.5, seed=11)
    results = await erp.post_time([posting(f"S-{n}") for n in range(20)])
    assert all(r.ok for r in results)
    assert twin.state.injected >= 1 and erp.retries >= 1
    await twin.faults()
    assert await twin.count("timebill") == 20


async def test_lost_responses_are_replayed_not_duplicated(erp: NetSuiteErp, twin: ErpTwin) -> None:
    await provision(erp)
    lost = await twin.client.post("/_admin/erp/lost-responses", json={"rate": 0.4, "seed": 5})
    assert lost.status_code == 200
    results = []
    for batch in range(10):  # one after the other: the seeded faults fall the same each run
        results += await erp.post_time([posting(f"LR-{batch}-{n}") for n in range(4)])
    await erp.create_invoice(invoice())
    dropped = (await twin.client.post("/_admin/erp/lost-responses", json={})).json()["dropped"]
    assert all(r.ok for r in results) and dropped >= 1
    # Some batch was processed but its answer lost: the retry met its idempotency key.
    assert twin.state.statuses[400] >= 1
    assert await twin.count("timebill") == 40 and await twin.count("invoice") == 1


async def test_timeouts_become_transient_then_recover(twin: ErpTwin) -> None:
    async with NetSuiteErp(
        settings(twin.base_url, timeout_s=0.1, retry_budget_s=0.5), backoff_base_s=0.01
    ) as erp:
        # A token first: the token request is not what this test times out.
        assert await erp.cost_center_status(ACTIVE_CC) is CostCenterStatus.ACTIVE
        await twin.faults(hang_ms=400)
        with pytest.raises(TransientError):
            await erp.cost_center_status(ACTIVE_CC)
        assert erp.retries >= 1
        await twin.faults()
        assert await erp.cost_center_status(ACTIVE_CC) is CostCenterStatus.ACTIVE


async def test_outage_then_recovery(erp: NetSuiteErp, twin: ErpTwin) -> None:
    await provision(erp)
    twin.set_faults(outage=True)
    call = asyncio.create_task(erp.post_time_one(posting("O-1")))
    while twin.state.injected < 2 and not call.done():  # noqa: ASYNC110 - the twin's counter
        await asyncio.sleep(0.01)
    assert not call.done()
    twin.set_faults()
    result = await call
    assert result.ok
    assert await twin.count("timebill") == 1


async def test_revoked_token_is_refreshed(erp: NetSuiteErp, twin: ErpTwin) -> None:
    assert await erp.cost_center_status(ACTIVE_CC) is CostCenterStatus.ACTIVE
    revoked = await twin.client.post("/_admin/tokens/revoke")
    assert revoked.json()["revoked"] == 1
    assert await provision(erp)
    assert twin.state.statuses[401] == 1
    assert len(twin.state.tokens) == 1


# --------------------------------------------------------------------------- the same rules


@pytest.fixture(params=["fake", "twin"])
async def any_erp(request: pytest.FixtureRequest) -> AsyncIterator[ErpPort]:
    if request.param == "fake":
        fake = FakeErp(
            cost_centers=[ACTIVE_CC],
            inactive_cost_centers=[INACTIVE_CC],
            open_periods=[OPEN_PERIOD, "2025-07"],
            closed_periods=[CLOSED_PERIOD],
            cost_rates={WORKER: Money("125.50", "USD")},
        )
        await fake.upsert_customer(customer(HOLD_CUSTOMER, "Holdco"), enterprise_id="H")
        fake.set_credit_hold(HOLD_CUSTOMER)
        yield fake
        return
    async with erp_twin() as twin:
        async with NetSuiteErp(
            settings(twin.base_url), backoff_base_s=0.01, poll_interval_s=0.01
        ) as connector:
            yield connector


async def test_void_is_a_compensation_for_create_invoice(any_erp: ErpPort) -> None:
    erp = any_erp
    await provision(erp)
    billed = invoice().model_copy(
        update={
            "period": "2025-06",
            "lines": [
                InvoiceLine(
                    description="June time",
                    quantity=Decimal("7.5"),
                    amount=Money("1125.00", "USD"),
                    source_entry_ids=["TE-1", "TE-2"],
                )
            ],
        }
    )
    first = await erp.create_invoice(billed)
    created = await erp.get_invoice(first)
    assert (created.status, created.period) == (InvoiceStatus.OPEN, "2025-06")
    await erp.void_invoice(first, reason="entries were reversed")
    await erp.void_invoice(first, reason="entries were reversed")
    await erp.void_invoice("eid:INV-1", reason="again, by its key")
    voided = await erp.get_invoice(first)
    assert voided.status is InvoiceStatus.VOID
    assert (voided.period, voided.total, voided.idempotency_key) == (
        "2025-06",
        Money("1125.00", "USD"),
        "INV-1",
    )
    if isinstance(erp, FakeErp):  # the twin has no field for the entries behind a line
        assert voided.lines[0].source_entry_ids == ["TE-1", "TE-2"]
        assert erp.void_reasons[first] == "entries were reversed"
    # The key stays with the voided invoice: creating it again returns that one.
    assert await erp.create_invoice(billed) == first
    assert (await erp.get_invoice(first)).status is InvoiceStatus.VOID
    # A new attempt takes a new key.
    second = await erp.create_invoice(billed.model_copy(update={"idempotency_key": "INV-1-2"}))
    assert second != first
    assert (await erp.get_invoice(second)).status is InvoiceStatus.OPEN
    with pytest.raises(NotFoundError):
        await erp.void_invoice("987654", reason="no such invoice")


async def test_fake_and_twin_apply_the_same_rules(any_erp: ErpPort) -> None:
    erp = any_erp
    job = await provision(erp)
    assert await provision(erp) == job
    hold = await erp.upsert_customer(customer(HOLD_CUSTOMER, "Holdco"), enterprise_id="H")
    with pytest.raises(BusinessRuleViolation) as held:
        await erp.upsert_project(
            project(),
            enterprise_id="01J000000000000000000HOLD1",
            customer_erp_id=hold,
            budget=Money("1", "USD"),
        )
    assert held.value.code == "CUSTOMER_CREDIT_HOLD"
    batch = [
        posting("A-1"),
        posting("A-2", day=date(2025, 5, 2)),
        posting("A-3", cost_center=INACTIVE_CC),
        posting("A-4", cost_center="CC-404"),
        posting("A-5", "01J0000000000000000NOSUCH1"),
    ]
    results = await erp.post_time(batch)
    outcome = [(r.ok, r.error.code if r.error else None) for r in results]
    assert outcome == [
        (True, None),
        (False, "PERIOD_CLOSED"),
        (False, "INVALID_COST_CENTER"),
        (False, "INVALID_COST_CENTER"),
        (False, "INVALID_KEY_OR_REF"),
    ]
    assert (await erp.post_time(batch[:1]))[0].erp_id == results[0].erp_id
    reversal = await erp.reverse_posting(batch[0])
    assert reversal.ok
    second = await erp.reverse_posting(batch[0], idempotency_key="A-1-other")
    assert second.error is not None and second.error.code == "ALREADY_REVERSED"
    totals = await erp.posted_totals(job)
    assert [(t.period, t.hours, t.postings) for t in totals] == [(OPEN_PERIOD, Decimal(0), 2)]
    await erp.close_project(job, reason="test")
    closed = await erp.post_time_one(posting("A-6"))
    assert closed.error is not None
    assert (closed.error.code, closed.error.field) == ("PROJECT_CLOSED", "customer")
    # An idempotent retry of an accepted posting still answers with its record.
    assert (await erp.post_time_one(batch[0])).erp_id == results[0].erp_id
    assert (await erp.get_project(job)).status is ProjectStatus.CLOSED
    assert await erp.cost_center_status(INACTIVE_CC) is CostCenterStatus.INACTIVE
    assert await erp.period_open(CLOSED_PERIOD) is False
    assert await erp.get_cost_rate(WORKER) == Money("125.50", "USD")
    budget = await erp.get_budget(job)
    assert budget.version == 1
    with pytest.raises(StaleVersionError):
        await erp.revise_budget(job, amount=Money("2", "USD"), expected_version=0)
    with pytest.raises(BusinessRuleViolation) as closed_budget:
        await erp.revise_budget(job, amount=Money("2", "USD"), expected_version=1)
    assert closed_budget.value.code == "PROJECT_CLOSED"
    assert (await erp.get_budget(job)).version == 1
    for unknown in ("987654", "01J0000000000000000NOSUCH1"):
        with pytest.raises(NotFoundError):
            await erp.get_budget(unknown)
        with pytest.raises(NotFoundError):
            await erp.get_forecast(unknown, OPEN_PERIOD)
    invoice_id = await erp.create_invoice(invoice())
    assert await erp.create_invoice(invoice()) == invoice_id
    assert (await erp.get_invoice(invoice_id)).total == Money("25000.50", "USD")


async def test_works_under_the_sandbox_mount() -> None:
    sandbox = create_sandbox(None)
    erp_twin_module.load_firm(sandbox.state("erp"), small_firm())
    async with serve(sandbox.app) as base_url:
        async with NetSuiteErp(settings(f"{base_url}/erp"), poll_interval_s=0.01) as erp:
            job = await provision(erp)
            [result] = await erp.post_time([posting("M-1")])
            assert result.ok
            assert [p.idempotency_key for p in await erp.list_postings(job)] == ["M-1"]
