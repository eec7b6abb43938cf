"""What the rate card sync needs from the ERP: the revisions of a rate card it keeps, each
with pssync's decision (applies from a date, held for finance, rejected). Upserted by the
revision's key, so a repeated write changes nothing."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from contracts.v1.rate_cards import ErpRateCardRevision


@runtime_checkable
class ErpRateCardsPort(Protocol):
    async def list_rate_card_revisions(self, rate_card_id: str) -> list[ErpRateCardRevision]:
        """The card's revisions the ERP keeps, oldest effective date first (none: empty)."""
        ...

    async def put_rate_card_revision(self, revision: ErpRateCardRevision) -> bool:
        """Upsert by `revision.key`; True when the ERP record changed, False when it already
        held exactly this."""
        ...
