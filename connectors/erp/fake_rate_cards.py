"""`FakeErp`'s rate card revisions (in the real ERP, one custom record per revision)."""

from __future__ import annotations

from contracts.v1.rate_cards import ErpRateCardRevision


class FakeErpRateCardsMixin:
    """Rate card revisions in memory, upserted by key; `rate_card_writes` counts the writes
    that changed something."""

    _rate_card_revisions: dict[str, ErpRateCardRevision]
    rate_card_writes: int

    def _revisions(self) -> dict[str, ErpRateCardRevision]:
        if not hasattr(self, "_rate_card_revisions"):
            self._rate_card_revisions = {}
            self.rate_card_writes = 0
        return self._rate_card_revisions

    async def list_rate_card_revisions(self, rate_card_id: str) -> list[ErpRateCardRevision]:
        return sorted(
            (r for r in self._revisions().values() if r.rate_card_id == rate_card_id),
            key=lambda r: (r.effective_from, r.revision_id),
        )

    async def put_rate_card_revision(self, revision: ErpRateCardRevision) -> bool:
        held = self._revisions()
        if held.get(revision.key) == revision:
            return False
        held[revision.key] = revision.model_copy(deep=True)
        self.rate_card_writes += 1
        return True
