"""Kantata rate card versions (a rate card's revisions) and the workspaces priced from a card.

A version's rates are its `rate_card_roles` (side-loaded); its effective date the twin keeps
on the version (`effective_date`; in Kantata it comes from the rate card set version). The
canonical revision names the card as the caller did (its source id or Kantata's) and the
revision by Kantata's version id."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from connectors.psa._constants import SYSTEM
from connectors.psa._values import _when, missing
from connectors.psa.kantata._base import Included
from connectors.psa.kantata.projects import ProjectsMixin
from contracts.errors import BusinessRuleViolation, NotFoundError
from contracts.money import Money
from contracts.v1.rate_cards import PublishedRevision, RateCardRevision, RoleRate


class RateCardsMixin(ProjectsMixin):
    async def _card_psa_id(self, rate_card_id: str) -> str:
        try:
            return await self._resolve_rate_card(rate_card_id)
        except BusinessRuleViolation as exc:
            raise NotFoundError(exc.detail, system=SYSTEM) from exc

    async def list_rate_card_revisions(self, rate_card_id: str) -> list[RateCardRevision]:
        psa_id = await self._card_psa_id(rate_card_id)
        card = self._one(await self._call("GET", f"/rate_cards/{psa_id}.json"))
        currency = str(card.get("currency") or "USD")
        side = await self._all_included(
            "/rate_card_versions.json",
            {"rate_card_id": psa_id, "include": "rate_card_roles", "order": "effective_date:asc"},
            ("rate_card_versions", "rate_card_roles"),
        )
        revisions = [_revision(rate_card_id, version, side, currency) for version in side.objects]
        return sorted(revisions, key=lambda r: (r.effective_from, int(r.revision_id)))

    async def list_projects_on_rate_card(self, rate_card_id: str) -> list[str]:
        psa_id = int(await self._card_psa_id(rate_card_id))
        workspaces = await self._all("/workspaces.json", {})
        return sorted(
            (str(ws["id"]) for ws in workspaces if ws.get("rate_card_id") == psa_id), key=int
        )

    async def list_revisions_published_since(self, since: datetime) -> list[PublishedRevision]:
        """`GET /rate_card_versions.json?created_after=<since>&order=created_at:asc`: Kantata's
        own filter (a version is immutable once published, so its `created_at` is when it was
        published, and new ones only join the end of the walk)."""
        versions = await self._all(
            "/rate_card_versions.json",
            {"created_after": since.isoformat(), "order": "created_at:asc"},
        )
        published: list[PublishedRevision] = []
        for version in versions:
            if version.get("rate_card_id") is None:
                raise missing("rate card version", version, "rate_card_id")
            published.append(
                PublishedRevision(
                    rate_card_id=str(version["rate_card_id"]),
                    revision_id=str(version["id"]),
                    published_at=_when(version.get("created_at")),
                )
            )
        return published


def _revision(
    rate_card_id: str, version: dict[str, Any], side: Included, currency: str
) -> RateCardRevision:
    rates: list[RoleRate] = []
    for ident in version.get("rate_card_role_ids") or []:
        role = side.get("rate_card_roles", ident)
        if role is None:
            raise missing(
                "rate card version",
                version,
                "rate_card_role_ids",
                f"rate_card_roles {ident} is not in the response",
            )
        rates.append(
            RoleRate(
                role=str(role["role"]),
                bill_rate=Money.from_minor(int(role["rate_in_cents"]), currency),
            )
        )
    return RateCardRevision(
        rate_card_id=rate_card_id,
        revision_id=str(version["id"]),
        effective_from=date.fromisoformat(str(version["effective_date"])),
        currency=currency,
        rates=rates,
    )
