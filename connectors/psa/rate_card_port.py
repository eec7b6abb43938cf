"""What the rate card sync needs from the PSA beyond `PsaPort`: a rate card's revisions and
the projects priced from it. The PSA owns rate cards (contracts/ownership.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from contracts.v1.rate_cards import PublishedRevision, RateCardRevision


class PsaRateCardRevisionsPort(Protocol):
    async def list_rate_card_revisions(self, rate_card_id: str) -> list[RateCardRevision]:
        """The card's revisions (Kantata's rate card versions), oldest effective date first;
        NotFoundError for an unknown card."""
        ...

    async def list_projects_on_rate_card(self, rate_card_id: str) -> list[str]:
        """The PSA ids of the projects priced from the card."""
        ...

    async def list_revisions_published_since(self, since: datetime) -> list[PublishedRevision]:
        """Every card's revisions published after `since`, oldest first (the sweep's window;
        the card named by its PSA id, as the PSA's webhook names it)."""
        ...
