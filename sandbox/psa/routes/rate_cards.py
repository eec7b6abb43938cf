"""Kantata rate cards: list, read (with their roles as an include)."""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.psa.routes import _crud as crud
from sandbox.psa.tables import PsaRateCard

router = APIRouter()

crud.add_list_route(router, "/rate_cards.json", PsaRateCard)
crud.add_get_route(router, "/rate_cards/{rate_card_id}.json", PsaRateCard, "rate card")
