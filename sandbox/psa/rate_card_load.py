"""Seeding a rate card revision in the PSA twin, as an administrator publishing a new rate card
set version would: a `rate_card_versions` row effective from a date, and for each role it
prices the card's current rate ending the day before and a new rate from the date. The twin
then sends the thin `rate_card_version.published` webhook (when it has a target)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from fastapi import FastAPI
from sqlmodel import col, select

from sandbox._twin import TwinState
from sandbox.psa.load import _state_of
from sandbox.psa.rate_card_tables import PsaRateCardVersion
from sandbox.psa.routes._shared import emit
from sandbox.psa.tables import PsaRateCard, PsaRateCardRole

RATE_CARD_VERSION_PUBLISHED = "rate_card_version.published"


def add_rate_card_version(
    app_or_state: FastAPI | TwinState,
    rate_card_id: int,
    effective_date: date,
    roles: Sequence[tuple[str, int]],
) -> int:
    """Publish a revision of rate card `rate_card_id`: `(role, rate_in_cents)` from
    `effective_date`. Returns the version's id. A card the twin lacks is a KeyError."""
    state = _state_of(app_or_state)
    with state.session() as s:
        card = s.get(PsaRateCard, rate_card_id)
        if card is None:
            raise KeyError(f"rate card {rate_card_id} does not exist")
        version = PsaRateCardVersion(rate_card_id=rate_card_id, effective_date=effective_date)
        s.add(version)
        s.flush()
        assert version.id is not None
        for role, cents in roles:
            current = s.exec(
                select(PsaRateCardRole).where(
                    PsaRateCardRole.rate_card_id == rate_card_id,
                    PsaRateCardRole.role == role,
                    col(PsaRateCardRole.effective_from) < effective_date,
                )
            ).all()
            for line in current:
                if line.effective_to is None or line.effective_to >= effective_date:
                    line.effective_to = effective_date - timedelta(days=1)
                    s.add(line)
            s.add(
                PsaRateCardRole(
                    rate_card_id=rate_card_id,
                    role=role,
                    rate_in_cents=cents,
                    effective_from=effective_date,
                    rate_card_version_id=version.id,
                )
            )
        card.updated_at = datetime.now(UTC)
        s.add(card)
        s.commit()
        version_id = version.id
    emit(
        state,
        RATE_CARD_VERSION_PUBLISHED,
        {"rate_card_id": str(rate_card_id), "rate_card_version_id": str(version_id)},
    )
    return version_id
