"""Bring a twin database made before the budget and forecast custom records up to date, so a
sandbox home survives the change (`create_app` runs it around `make_twin_engine`).

Before, the twin kept a budget row per job (`erp_job_budget`, keyed by `job_id`, version 0
until the first budget) and forecast rows without an external ID. Now both are custom record
entries addressed by external ID: `pssync-budget-<job>` and `pssync-forecast-<job>-<YYYY-MM>`.
A budget row at version 0 was "no budget yet", which is now no entry at all."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine, text

_OLD_BUDGETS = "erp_job_budget_before_custom_records"


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {str(row[1]) for row in db.execute(f'PRAGMA table_info("{table}")')}


def before_engine(path: Path | None) -> bool:
    """Set the old budget table aside (its primary key differs, so it cannot be altered in
    place). True when there is old data for `after_engine` to carry over."""
    if path is None or not Path(path).exists():
        return False
    with sqlite3.connect(path) as db:
        budgets = _columns(db, "erp_job_budget")
        forecasts = _columns(db, "erp_labor_forecast")
        old_budgets = bool(budgets) and "id" not in budgets
        if old_budgets:
            db.execute(f'ALTER TABLE erp_job_budget RENAME TO "{_OLD_BUDGETS}"')
        return old_budgets or (bool(forecasts) and "external_id" not in forecasts)


def after_engine(engine: Engine) -> None:
    """Copy the set-aside budgets into the custom record table and give the forecasts (their new
    columns just added) the external IDs the connector reads them by."""
    with engine.begin() as conn:
        old = conn.execute(
            text("SELECT name FROM sqlite_master WHERE type = 'table' AND name = :t"),
            {"t": _OLD_BUDGETS},
        ).first()
        if old is not None:
            conn.execute(
                text(
                    "INSERT INTO erp_job_budget (external_id, last_modified, name, job_id, amount,"
                    " currency, budget_version) SELECT 'pssync-budget-' || job_id, last_modified,"
                    " 'pssync budget, project ' || job_id, job_id, amount, currency,"
                    f' budget_version FROM "{_OLD_BUDGETS}" WHERE budget_version > 0'
                )
            )
            conn.execute(text(f'DROP TABLE "{_OLD_BUDGETS}"'))
        conn.execute(
            text(
                "UPDATE erp_labor_forecast SET external_id = 'pssync-forecast-' || job_id || '-'"
                " || period_name, name = 'pssync labor forecast, project ' || job_id || ', '"
                " || period_name WHERE external_id IS NULL AND name IS NULL"
                " AND job_id IS NOT NULL AND period_name IS NOT NULL"
            )
        )
