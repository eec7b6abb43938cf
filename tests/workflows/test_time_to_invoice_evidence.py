"""A held time entry's item says what pssync checked and what it found: the entry (date, hours,
role, worker, period), and for a missing rate the rate card and the roles it does have; for an
unknown or inactive cost center, the cost center and its state in the ERP."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.workflows.test_time_to_invoice import W1, _held_for_a_rate, _open_items, tti_world


async def test_a_missing_rate_item_names_the_rate_card_and_the_roles_it_has(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti_world(ts_env, tmp_path) as world:
        entry, item = await _held_for_a_rate(world, days_ago=2, minutes=75)
        world.erp.set_cost_center("CC-300", active=False)
        cc_entry = world.psa.add_time_entry(
            world.projects["cc"], W1, world.today - timedelta(days=1), 60, approved=True
        )
        await world.signal("cc", [cc_entry])
        await world.settled("cc", done=1)
        cc_item = _open_items(world, "cc")["InvalidCostCenter"]
    context = item.context or {}
    assert context["entry"] == {
        "kind": "time",
        "entry_id": entry.external_id,
        "date": entry.date_performed.isoformat(),
        "period": f"{entry.date_performed:%Y-%m}",
        "hours": "1.25",
        "role": "Architect",
        "task_id": entry.task_id,
        "worker_id": W1,
        "billable": True,
    }
    checked = context["checked"]
    assert checked["rate_card_id"] == "RC-STD" and checked["role"] == "Architect"
    assert checked["roles_on_card"] == ["Consultant"]
    assert checked["rate_card_lines"][0]["bill_rate"] == {"amount": "150.00", "currency": "USD"}
    assert context["worker_id"] == W1
    cc_checked = (cc_item.context or {})["checked"]
    assert cc_checked == {"cost_center": "CC-300", "state_in_erp": "inactive"}
