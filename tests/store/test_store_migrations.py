"""Migrations: from empty to head, twice, concurrently; and they match the models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from store import current_revision, make_engine, metadata, normalize_url, upgrade
from store.database import alembic_config

TABLES = {
    "xref", "inbox", "exception_item", "lineage", "outbox", "sync_state", "time_posting", "audit",
    "reconciliation_run", "drift", "invoice",
}  # fmt: skip


def head() -> str:
    rev = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert rev is not None
    return rev


def test_upgrade_from_empty_then_again(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert TABLES.isdisjoint(inspect(engine).get_table_names())
        assert current_revision(engine) is None

        upgrade(database_url)
        assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
        assert current_revision(engine) == head()

        upgrade(database_url)  # second run is a no-op
        upgrade(engine)  # an Engine works too
        assert current_revision(engine) == head()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1
    finally:
        engine.dispose()


def test_concurrent_upgrades_do_not_race(
    database_url: str, together: Callable[[int, Callable[[int], Any]], list[Any]]
) -> None:
    outcomes = together(4, lambda _: upgrade(database_url))
    assert outcomes == [None] * 4
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) == head()
    finally:
        engine.dispose()


def test_migrations_match_models(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, metadata) == []
    finally:
        engine.dispose()


def test_sqlite_engine_creates_directory_and_uses_wal(tmp_path: Any) -> None:
    db = tmp_path / "a" / "b" / "store.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert db.parent.is_dir()
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p@h:5432/d",
        "postgresql://u:p@h:5432/d",
        "postgresql+psycopg://u:p@h:5432/d",
    ],
)
def test_postgres_urls_use_psycopg3(url: str) -> None:
    assert normalize_url(url).drivername == "postgresql+psycopg"


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        make_engine("mysql://u@h/d")
