"""The in-memory PSA's rate card revisions (Kantata's rate card versions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from connectors.psa.fake._base import FakePsaBase, _found
from contracts.v1 import RateCardLine
from contracts.v1.rate_cards import PublishedRevision, RateCardRevision


@dataclass
class FakeRateCardsMixin(FakePsaBase):
    """`FakePsa`'s rate card revisions: seeding one re-prices the card like the PSA does (the
    role's open line ends the day before, a new line starts on the effective date)."""

    rate_card_revisions: dict[str, dict[str, RateCardRevision]] = field(default_factory=dict)
    """Rate card id -> revision id -> revision."""
    rate_card_published: dict[tuple[str, str], datetime] = field(default_factory=dict)
    """(rate card id, revision id) -> when it was published."""

    def add_rate_card_revision(
        self, revision: RateCardRevision, *, published_at: datetime | None = None
    ) -> None:
        """Publish `revision` (now, unless `published_at` says when). Like the PSA without a
        webhook target: nothing is announced; the sweep or a test does that."""
        card = _found(self.rate_cards, revision.rate_card_id, "rate card")
        self.rate_card_revisions.setdefault(card.external_id, {})[revision.revision_id] = revision
        self.rate_card_published[(card.external_id, revision.revision_id)] = (
            published_at or datetime.now(UTC)
        )
        lines = list(card.lines)
        for rate in revision.rates:
            for i, line in enumerate(lines):
                if (
                    line.role == rate.role
                    and line.effective_from < revision.effective_from
                    and (line.effective_to is None or line.effective_to >= revision.effective_from)
                ):
                    lines[i] = line.model_copy(
                        update={"effective_to": revision.effective_from - timedelta(days=1)}
                    )
            lines.append(
                RateCardLine(
                    role=rate.role, bill_rate=rate.bill_rate, effective_from=revision.effective_from
                )
            )
        self.rate_cards[card.external_id] = card.model_copy(update={"lines": lines})

    async def list_rate_card_revisions(self, rate_card_id: str) -> list[RateCardRevision]:
        self._enter("list_rate_card_revisions")
        _found(self.rate_cards, rate_card_id, "rate card")
        revisions = self.rate_card_revisions.get(rate_card_id, {})
        return sorted(revisions.values(), key=lambda r: (r.effective_from, r.revision_id))

    async def list_revisions_published_since(self, since: datetime) -> list[PublishedRevision]:
        self._enter("list_revisions_published_since")
        found = [
            PublishedRevision(rate_card_id=card, revision_id=rev, published_at=when)
            for (card, rev), when in self.rate_card_published.items()
            if when > since
        ]
        return sorted(found, key=lambda p: (p.published_at, p.rate_card_id, p.revision_id))

    async def list_projects_on_rate_card(self, rate_card_id: str) -> list[str]:
        self._enter("list_projects_on_rate_card")
        return sorted(
            psa_id
            for psa_id, fp in self.projects.items()
            if fp.project.rate_card_id == rate_card_id
        )
