"""The ERP twin's table of pssync's labor cost rate custom record
(`customrecord_pssync_labor_cost_rate`, served by `records.labor_cost`)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(UTC)


class ErpLaborCostRateRow(SQLModel, table=True):
    """A `customrecord_pssync_labor_cost_rate` entry: one row of a worker's rate history."""

    __tablename__ = "erp_labor_cost_rate"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, unique=True, index=True)
    last_modified: datetime = Field(default_factory=_now)
    name: str | None = None
    employee: str | None = Field(default=None, index=True)
    rate: str | None = None
    currency: str | None = None
    effective: date | None = None
    event: str | None = None
    sequence: int | None = None
