"""The time pipeline prices each entry at the rate effective on its own date: a rate card
revision re-prices time from its effective date on, not before; a revision held for finance
prices nothing yet."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from contracts.money import Money
from contracts.v1.rate_cards import (
    ErpRateCardRevision,
    RateCardRevision,
    RevisionStatus,
    RoleRate,
)
from tests.workflows.test_time_to_invoice import W1, W2, tti_world


def _revision(effective: date) -> RateCardRevision:
    return RateCardRevision(
        rate_card_id="RC-STD",
        revision_id="2",
        effective_from=effective,
        currency="USD",
        rates=[RoleRate(role="Consultant", bill_rate=Money(Decimal("180.00"), "USD"))],
    )


async def test_entries_on_both_sides_of_the_effective_date_post_at_their_own_rates(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti_world(ts_env, tmp_path) as world:
        effective = world.today - timedelta(days=10)
        world.psa.add_rate_card_revision(_revision(effective))
        pid = world.projects["tm"]
        before = world.psa.add_time_entry(
            pid, W1, effective - timedelta(days=1), 120, approved=True
        )
        on = world.psa.add_time_entry(pid, W2, effective, 120, approved=True)
        after = world.psa.add_time_entry(pid, W1, effective + timedelta(days=3), 60, approved=True)
        await world.signal("tm", [before, on, after])
        await world.settled("tm", done=3)

        billed = {p.source_entry_id: p.bill_amount for p in world.postings("tm")}
        assert billed == {
            before.external_id: Money(Decimal("300.00"), "USD"),
            on.external_id: Money(Decimal("360.00"), "USD"),
            after.external_id: Money(Decimal("180.00"), "USD"),
        }


async def test_a_revision_held_for_finance_prices_no_time(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with tti_world(ts_env, tmp_path) as world:
        effective = world.today - timedelta(days=10)
        rev = _revision(effective)
        world.psa.add_rate_card_revision(rev)
        await world.erp.put_rate_card_revision(
            ErpRateCardRevision(
                rate_card_id="RC-STD",
                revision_id="2",
                effective_from=effective,
                applied_from=None,
                status=RevisionStatus.HELD,
                currency="USD",
                rates=rev.rates,
            )
        )
        pid = world.projects["tm"]
        after = world.psa.add_time_entry(pid, W1, effective + timedelta(days=1), 60, approved=True)
        await world.signal("tm", [after])
        await world.settled("tm", done=1)
        (posting,) = world.postings("tm")
        assert posting.bill_amount == Money(Decimal("150.00"), "USD")
