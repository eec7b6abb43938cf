"""Kantata rate card versions (a rate card's revisions, effective from a date): list (by rate
card, or those created after a time: Kantata's `created_after`) and read, with their rate card
roles as an include."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlmodel import col

from sandbox.psa.rate_card_tables import PsaRateCardVersion
from sandbox.psa.responses import _parse_when
from sandbox.psa.routes import _crud as crud

router = APIRouter()


def version_filters(rate_card_id: int | None = None, created_after: str | None = None) -> list[Any]:
    """`rate_card_id` is the twin's own filter: one card's versions (Kantata filters them
    through the card's rate card set). `created_after` (an ISO 8601 date-time) is Kantata's."""
    clauses: list[Any] = []
    if rate_card_id is not None:
        clauses.append(col(PsaRateCardVersion.rate_card_id) == rate_card_id)
    since = _parse_when(created_after, "created_after")
    if since is not None:
        clauses.append(col(PsaRateCardVersion.created_at) > since)
    return clauses


crud.add_list_route(
    router,
    "/rate_card_versions.json",
    PsaRateCardVersion,
    version_filters,
    orderable=("id", "effective_date", "created_at", "updated_at"),
)
crud.add_get_route(
    router,
    "/rate_card_versions/{rate_card_version_id}.json",
    PsaRateCardVersion,
    "rate card version",
)
