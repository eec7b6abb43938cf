"""Builders of the canonical records many tests make alike: rate cards and their lines."""

from __future__ import annotations

from datetime import date

from contracts import Money, System
from contracts.v1 import RateCard, RateCardLine


def rate(role: str, bill_rate: Money, start: date, end: date | None = None) -> RateCardLine:
    """A bill rate per hour for `role`, effective from `start` (to `end`, when given)."""
    return RateCardLine(role=role, bill_rate=bill_rate, effective_from=start, effective_to=end)


def rate_card(
    *lines: RateCardLine, external_id: str = "RC-STD-USD", name: str = "Standard USD"
) -> RateCard:
    """A PSA rate card in USD."""
    return RateCard(
        external_id=external_id,
        name=name,
        currency="USD",
        source_system=System.PSA,
        lines=list(lines),
    )
