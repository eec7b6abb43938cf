"""Time to invoice through outages, over the in-memory fakes (on the time-skipping server,
but for the long ERP outage, which runs on the real dev server: see there).

- A long ERP outage while approvals keep coming: the pipeline continues as new (its history
  must not grow without bound), carrying what waits, and posts everything exactly once when
  the ERP is back. Before, a run could never continue as new while batches were in flight, and
  with a free batch slot it spun inside one activation until the deadlock detector failed it.
- A PSA that does not answer while an invoice is being marked: the ERP invoice stands and the
  marking waits (before, five quick attempts and the invoice was voided); past the configured
  bound a person is asked, and a retry marks the same invoice, never a second one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from contracts import Money, System
from contracts.errors import TransientError
from contracts.v1 import InvoiceStatus, PostingKind
from tests.workflows import test_time_to_invoice as tti

ts_env = tti.ts_env  # this module's own time-skipping server


def erp_outage(world: tti.World) -> dict[str, bool]:
    """The ERP refuses every posting (a transient error) while `state["down"]`."""
    state = {"down": True}
    original = world.erp.post_time

    async def post_time(postings: Any) -> Any:
        if state["down"]:
            raise TransientError("ERP unavailable", system=System.ERP)
        return await original(postings)

    world.erp.post_time = post_time  # type: ignore[method-assign]
    return state


async def test_a_long_erp_outage_continues_as_new_and_posts_everything_once(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    # On the real dev server: the drain cancels batches that are failing over and over, and
    # the time-skipping test server never answers a cancel that lands while an attempt is
    # running and then fails (no retry, no failure event: the run waits forever), where the
    # real server reports the failure at once.
    async with tti.tti_world(dev_env, tmp_path) as world:
        outage = erp_outage(world)
        entries = tti._approved(world, "tm", 400)
        max_events = 100
        overrides = {
            "max_history_events": max_events,
            "drain_grace_s": 2.0,
            "max_batches_in_flight": 3,
        }
        # Two full batches go out (and fail on and on); approvals keep coming one by one
        # until the run's history is past its bound. How many that takes depends on how the
        # worker coalesces signals into workflow tasks, so count the history, not the signals
        # (each signal adds at least one event: at most ~100 are needed).
        await world.signal("tm", entries[:250], **overrides)
        first = await world.client.get_workflow_handle(world.workflow_id("tm")).describe()
        old_run = world.client.get_workflow_handle(world.workflow_id("tm"), run_id=first.run_id)
        sent = 250
        for entry in entries[250:]:
            await world.signal("tm", [entry], **overrides)
            sent += 1
            info = (await old_run.describe()).raw_description.workflow_execution_info
            if info.history_length > max_events:
                break
        assert sent < len(entries), "the history never passed its bound"
        await world.signal("tm", entries[sent:], **overrides)  # the rest at once
        deadline = asyncio.get_running_loop().time() + 60
        while (await old_run.describe()).status is not WorkflowExecutionStatus.CONTINUED_AS_NEW:
            assert asyncio.get_running_loop().time() < deadline, "never continued as new"
            await asyncio.sleep(0.2)
        history = [e.event_type for e in (await old_run.fetch_history()).events]
        assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in history
        assert len(history) < 400  # it drained, not grew on
        assert world.postings("tm") == []  # still down: nothing posted, nothing lost

        outage["down"] = False
        await world.settled("tm", done=len(entries), timeout_s=90)
        postings = [p for p in world.postings("tm") if p.kind is PostingKind.TIME]
        assert len(postings) == len(entries)
        assert len({p.source_entry_id for p in postings}) == len(entries)
        assert world.erp_by_period("tm") == world.psa_by_period("tm", tti.RATE)


def _all_invoiced(world: tti.World, period: str) -> bool:
    """The PSA has time in `period`, and all of it is marked invoiced."""
    in_period = [
        e for e in world.psa.time_entries.values() if f"{e.date_performed:%Y-%m}" == period
    ]
    return bool(in_period) and all(e.invoiced for e in in_period)


async def test_a_psa_outage_while_marking_an_invoice_does_not_void_it(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti.tti_world(ts_env, tmp_path) as world:
        entries = await tti._posted(world, "tm", 6)
        period = f"{entries[0].date_performed:%Y-%m}"
        # Six failed attempts in a row: about 25 s of a PSA that does not answer.
        world.psa.fail_next("mark_invoiced", TransientError("PSA 503", system=System.PSA), times=6)
        await world.close_period("tm", period)
        await world.settled("tm", done=6, key="invoices", timeout_s=90)
        (invoice,) = world.erp.invoices.values()
        assert invoice.status is not InvoiceStatus.VOID
        assert _all_invoiced(world, period)
        assert not tti._open_items(world, "tm")


async def test_a_psa_outage_past_the_bound_asks_a_person_and_keeps_the_invoice(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti.tti_world(ts_env, tmp_path) as world:
        entries = await tti._posted(world, "tm", 6, billing_psa_wait_s=3.0)
        period = f"{entries[0].date_performed:%Y-%m}"
        world.psa.fail_next(
            "mark_invoiced", TransientError("PSA 503", system=System.PSA), times=100
        )
        await world.close_period("tm", period)
        await world.item_opens("tm", "BillingStalled", timeout_s=60, poll_s=0.1)
        (invoice,) = world.erp.invoices.values()
        assert invoice.status is not InvoiceStatus.VOID  # the invoice stands
        status = await world.status("tm")
        assert [b.status for b in status.billed] == ["stalled"]

        world.psa.failures["mark_invoiced"] = []  # the PSA is back
        item = tti._open_items(world, "tm")["BillingStalled"]
        response = await tti._resolve(world, item.id, "retry")
        assert response.status_code == 200, response.text
        await world.settled("tm", done=6, key="invoices", timeout_s=60)
        assert len(world.erp.invoices) == 1  # marked again, not invoiced again
        (invoice,) = world.erp.invoices.values()
        assert invoice.status is not InvoiceStatus.VOID
        assert _all_invoiced(world, period)


async def test_a_cost_in_another_currency_is_held_for_a_person_not_retried_forever(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A worker whose labor cost is kept in EUR, on a project that bills in USD: the ERP takes
    one currency per posting. Before, building the posting raised a validation error that the
    batch retried without end, holding every other entry of the batch back."""
    async with tti.tti_world(ts_env, tmp_path) as world:
        world.erp.cost_rates[tti.W1] = Money("75.00", "EUR")
        await tti._posted(world, "tm", 6)  # three by W1, three by W2
        items = [
            i
            for i in world.store.list_exceptions(workflow_id=world.workflow_id("tm"))
            if i.status != "resolved"
        ]
        assert {i.cause_code for i in items} == {"CurrencyMismatch"}
        assert len(items) == 3
        assert len(world.postings("tm")) == 3  # the rest of the batch posted

        world.erp.cost_rates[tti.W1] = Money("80.00", "USD")  # finance fixes the cost rate
        for item in items:
            response = await tti._resolve(world, item.id, "retry")
            assert response.status_code == 200, response.text
            assert response.json()["result"]["outcome"] == "posted"
        assert len(world.postings("tm")) == 6
        assert world.erp_by_period("tm") == world.psa_by_period("tm", tti.RATE)
