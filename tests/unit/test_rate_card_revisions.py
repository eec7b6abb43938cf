"""The effective bill rate of a role on a day, with rate card revisions and pssync's decisions
on them: time before a revision keeps its rate, time from it on uses the new one; a held or
rejected revision prices nothing; an acknowledged one only from its first uninvoiced day."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from connectors.psa import FakePsa
from contracts.money import Money
from contracts.systems import System
from contracts.v1 import RateCard, RateCardLine
from contracts.v1.rate_cards import (
    ErpRateCardRevision,
    InvoicedEntry,
    RateCardRevision,
    RevisionStatus,
    RoleRate,
    bill_rate_on,
    difference_of,
    first_uninvoiced_day,
    invoiced_conflicts,
)


def usd(amount: str) -> Money:
    return Money(Decimal(amount), "USD")


def card() -> RateCard:
    return RateCard(
        external_id="RC-1",
        name="Standard",
        currency="USD",
        lines=[
            RateCardLine(role="Consultant", bill_rate=usd("150"), effective_from=date(2026, 1, 1)),
            RateCardLine(role="Architect", bill_rate=usd("220"), effective_from=date(2026, 1, 1)),
        ],
        source_system=System.PSA,
    )


def revision(rid: str, on: date, consultant: str) -> RateCardRevision:
    return RateCardRevision(
        rate_card_id="RC-1",
        revision_id=rid,
        effective_from=on,
        currency="USD",
        rates=[RoleRate(role="Consultant", bill_rate=usd(consultant))],
    )


def revised(*revisions: RateCardRevision) -> RateCard:
    psa = FakePsa()
    psa.add_rate_card(card())
    for r in revisions:
        psa.add_rate_card_revision(r)
    return psa.rate_cards["RC-1"]


def decision(
    rev: RateCardRevision, status: RevisionStatus, applied_from: date | None
) -> ErpRateCardRevision:
    return ErpRateCardRevision(
        rate_card_id=rev.rate_card_id,
        revision_id=rev.revision_id,
        effective_from=rev.effective_from,
        applied_from=applied_from,
        status=status,
        currency="USD",
        rates=rev.rates,
    )


def test_time_on_each_side_of_the_effective_date_keeps_its_own_rate() -> None:
    c = revised(revision("2", date(2026, 3, 1), "180"))
    assert bill_rate_on(c, "Consultant", date(2026, 2, 28)) == usd("150")
    assert bill_rate_on(c, "Consultant", date(2026, 3, 1)) == usd("180")
    assert bill_rate_on(c, "Consultant", date(2026, 12, 31)) == usd("180")
    # A role the revision leaves alone keeps its rate.
    assert bill_rate_on(c, "Architect", date(2026, 3, 2)) == usd("220")
    # Before the card's first rate there is none.
    assert bill_rate_on(c, "Consultant", date(2025, 12, 31)) is None


def test_several_revisions_each_price_their_own_span() -> None:
    r2, r3 = revision("2", date(2026, 3, 1), "180"), revision("3", date(2026, 6, 1), "200")
    c = revised(r2, r3)
    rates = [
        bill_rate_on(c, "Consultant", d)
        for d in (date(2026, 2, 28), date(2026, 5, 31), date(2026, 6, 1))
    ]
    assert rates == [usd("150"), usd("180"), usd("200")]


def test_a_later_line_wins_over_an_open_ended_earlier_one() -> None:
    c = card()
    c.lines = [
        *c.lines,
        RateCardLine(role="Consultant", bill_rate=usd("175"), effective_from=date(2026, 4, 1)),
    ]
    assert bill_rate_on(c, "Consultant", date(2026, 3, 31)) == usd("150")
    assert bill_rate_on(c, "Consultant", date(2026, 4, 1)) == usd("175")


def test_held_rejected_and_acknowledged_revisions() -> None:
    r2 = revision("2", date(2026, 3, 1), "180")
    c = revised(r2)
    held = [decision(r2, RevisionStatus.HELD, None)]
    rejected = [decision(r2, RevisionStatus.REJECTED, None)]
    moved = [decision(r2, RevisionStatus.APPLIED, date(2026, 3, 16))]
    applied = [decision(r2, RevisionStatus.APPLIED, date(2026, 3, 1))]
    assert bill_rate_on(c, "Consultant", date(2026, 3, 20), held) == usd("150")
    assert bill_rate_on(c, "Consultant", date(2026, 3, 20), rejected) == usd("150")
    assert bill_rate_on(c, "Consultant", date(2026, 3, 15), moved) == usd("150")
    assert bill_rate_on(c, "Consultant", date(2026, 3, 16), moved) == usd("180")
    assert bill_rate_on(c, "Consultant", date(2026, 3, 1), applied) == usd("180")


def test_invoiced_time_from_the_effective_date_is_a_conflict_with_its_difference() -> None:
    r2 = revision("2", date(2026, 3, 1), "180")

    def entry(eid: str, on: date, hours: str, role: str = "Consultant") -> InvoicedEntry:
        return InvoicedEntry(
            entry_id=eid,
            project_id="P1",
            role=role,
            date_performed=on,
            hours=Decimal(hours),
            old_rate=usd("150"),
            new_rate=usd("150"),
        )

    found = invoiced_conflicts(
        card(),
        r2,
        [
            entry("before", date(2026, 2, 28), "8"),
            entry("on", date(2026, 3, 1), "8"),
            entry("after", date(2026, 3, 10), "2.5"),
            entry("other-role", date(2026, 3, 10), "4", role="Architect"),
        ],
    )
    assert [e.entry_id for e in found] == ["on", "after"]
    assert difference_of(found, "USD") == usd("315.00")  # 30/h over 10.5 h
    assert first_uninvoiced_day(r2, found) == date(2026, 3, 11)
    assert first_uninvoiced_day(r2, []) == date(2026, 3, 1)
