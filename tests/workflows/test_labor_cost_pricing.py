"""Time is costed at the labor cost in force on its own date: a cost-rate change from HCM
(written by the worker-lifecycle activity as a row of the ERP's rate history) costs time from
its effective date on, while time dated before it keeps the rate the worker had — in the
time-to-invoice pipeline and in the termination's final posting alike."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from activities.time_posting import post_approved_time
from activities.workforce import PutLaborCostRate, WorkforceActivities
from contracts.money import Money
from tests.workflows.test_time_to_invoice import W1, W2, tti_world


async def test_entries_either_side_of_a_cost_rate_change_post_at_their_own_cost(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti_world(ts_env, tmp_path) as world:
        effective = world.today - timedelta(days=10)
        # the change took effect: the employee's labor cost is now 100 (it was 80)
        await WorkforceActivities(world.psa, world.erp).put_labor_cost_rate(
            PutLaborCostRate(
                worker_id=W1,
                rate=Money("100.00", "USD"),
                effective_from=effective,
                key="evt-raise",
                today=world.today,
            )
        )
        assert await world.erp.get_cost_rate(W1) == Money("100.00", "USD")
        pid = world.projects["tm"]
        before = world.psa.add_time_entry(
            pid, W1, effective - timedelta(days=1), 120, approved=True
        )
        on = world.psa.add_time_entry(pid, W1, effective, 120, approved=True)
        other = world.psa.add_time_entry(pid, W2, effective - timedelta(days=1), 60, approved=True)
        await world.signal("tm", [before, on, other])
        await world.settled("tm", done=3)

        cost = {p.source_entry_id: p.cost_amount for p in world.postings("tm")}
        assert cost == {
            before.external_id: Money(Decimal("160.00"), "USD"),
            on.external_id: Money(Decimal("200.00"), "USD"),
            other.external_id: Money(Decimal("90.00"), "USD"),  # no history: today's rate
        }


async def test_final_posting_costs_each_entry_at_the_rate_of_its_date(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti_world(ts_env, tmp_path) as world:
        effective = world.today - timedelta(days=3)
        await WorkforceActivities(world.psa, world.erp).put_labor_cost_rate(
            PutLaborCostRate(
                worker_id=W1,
                rate=Money("120.00", "USD"),
                effective_from=effective,
                key="evt-raise",
                today=world.today,
            )
        )
        pid = world.projects["tm"]
        before = world.psa.add_time_entry(pid, W1, effective - timedelta(days=2), 60, approved=True)
        after = world.psa.add_time_entry(pid, W1, effective + timedelta(days=1), 60, approved=True)

        report = await post_approved_time(world.psa, world.erp, W1, through=world.today)

        assert sorted(report.posted) == sorted([before.external_id, after.external_id])
        cost = {p.source_entry_id: p.cost_amount for p in world.postings("tm")}
        assert cost == {
            before.external_id: Money(Decimal("80.00"), "USD"),
            after.external_id: Money(Decimal("120.00"), "USD"),
        }
