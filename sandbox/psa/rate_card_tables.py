"""The PSA twin's rate card versions: a revision of a rate card taking effect on a date (in
Kantata a rate card version belongs to a rate card set version, which carries the effective
date; the twin keeps the date on the version). Its rates are the card's `rate_card_roles` rows
with its `rate_card_version_id`."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(UTC)


class PsaRateCardVersion(SQLModel, table=True):
    __tablename__ = "psa_rate_card_version"

    id: int | None = Field(default=None, primary_key=True)
    rate_card_id: int = Field(index=True)
    effective_date: date
    active: bool = True
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)
