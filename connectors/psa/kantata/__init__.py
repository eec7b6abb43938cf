"""The Kantata (Mavenlink) API v1 client: `KantataPsa`, one mixin per vendor resource on a
shared core (`KantataBase`)."""

from __future__ import annotations

from connectors.psa.kantata._base import KantataBase, parse_error
from connectors.psa.kantata.billing import BillingMixin
from connectors.psa.kantata.projects import ProjectsMixin
from connectors.psa.kantata.rate_cards import RateCardsMixin
from connectors.psa.kantata.resources import ResourcesMixin
from connectors.psa.kantata.staffing import StaffingMixin
from connectors.psa.kantata.time import TimeMixin


class KantataPsa(
    ResourcesMixin,
    RateCardsMixin,
    ProjectsMixin,
    StaffingMixin,
    TimeMixin,
    BillingMixin,
    KantataBase,
):
    """`PsaPort` over Kantata API v1 (or its twin)."""


__all__ = ["KantataBase", "KantataPsa", "parse_error"]
