"""Kantata rate card versions (a rate card's revisions, effective from a date): list (by rate
card) and read, with their rate card roles as an include."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlmodel import col

from sandbox.psa.rate_card_tables import PsaRateCardVersion
from sandbox.psa.routes import _crud as crud

router = APIRouter()


def version_filters(rate_card_id: int | None = None) -> list[Any]:
    """The twin's own filter: one card's versions (Kantata filters them through the card's
    rate card set)."""
    if rate_card_id is None:
        return []
    return [col(PsaRateCardVersion.rate_card_id) == rate_card_id]


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
