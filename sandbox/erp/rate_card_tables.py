"""The ERP twin's table of pssync's rate card revision custom record
(`customrecord_pssync_rate_card_revision`, served by `records.rate_card`)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(UTC)


class ErpRateCardRevisionRow(SQLModel, table=True):
    """A `customrecord_pssync_rate_card_revision` entry."""

    __tablename__ = "erp_rate_card_revision"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, unique=True, index=True)
    last_modified: datetime = Field(default_factory=_now)
    name: str | None = None
    rate_card: str | None = Field(default=None, index=True)
    revision: str | None = None
    effective: date | None = None
    applied_from: date | None = None
    status: str | None = None
    currency: str | None = None
    rates: str | None = None
