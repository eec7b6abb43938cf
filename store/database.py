"""Engines and schema migrations for the store: SQLite by default, PostgreSQL in production.

    engine = make_engine(settings.resolved_database_url)  # contracts.settings decides the URL
    upgrade(engine)            # or upgrade(url); idempotent, safe to run from several processes
    store = Store(engine)

SQLite engines run in WAL mode with a busy timeout, and the store's write transactions start with
``BEGIN IMMEDIATE`` so that concurrent writers queue on the lock instead of failing on a stale
snapshot. PostgreSQL URLs (``postgres://``, ``postgresql://``) are rewritten to psycopg 3.

Must never: create tables outside Alembic (no ``metadata.create_all``), configure logging, or
import Temporal.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Execution option that marks a write transaction (SQLite: BEGIN IMMEDIATE).
WRITE_OPTION = "pssync_store_write"

SQLITE_BUSY_TIMEOUT_S = 30.0

# pg_advisory_xact_lock key serialising concurrent upgrades of one database ("pssy").
_PG_MIGRATION_LOCK = 0x70737379


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; bare PostgreSQL schemes become ``postgresql+psycopg`` (psycopg 3)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _is_file_sqlite(url: URL) -> bool:
    db = url.database
    return bool(db) and db != ":memory:" and not (db or "").startswith("file:")


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """Build an engine for the store; extra ``kwargs`` go to ``create_engine``."""
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if _is_file_sqlite(parsed):
            Path(parsed.database or "").expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args = {
            "check_same_thread": False,
            "timeout": SQLITE_BUSY_TIMEOUT_S,
            **kwargs.pop("connect_args", {}),
        }
        engine = create_engine(parsed, connect_args=connect_args, **kwargs)
        _install_sqlite_hooks(engine)
        return engine
    if backend == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(parsed, **kwargs)
    raise ValueError(f"unsupported database backend {backend!r} (use sqlite or postgresql)")


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from the sqlite3 module (its legacy mode never BEGINs
        # for SELECT or DDL); the "begin" hook below emits BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            _enable_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A deferred transaction that reads first and writes later cannot wait for the write
        # lock in WAL mode (SQLITE_BUSY_SNAPSHOT, no busy handler); IMMEDIATE takes it up front.
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the database file to WAL (persistent, so usually already done).

    The switch needs an exclusive lock and SQLite does not call the busy handler for it: several
    processes opening a new file at once get "database is locked" at once, hence the retries.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def writer(engine: Engine) -> Engine:
    """The same engine (pool and hooks shared), marked so its transactions are write ones."""
    return engine.execution_options(**{WRITE_OPTION: True})


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migrations; no alembic.ini needed."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return cfg


def upgrade(target: str | URL | Engine, revision: str = "head") -> None:
    """Apply the store's migrations up to ``revision``.

    Idempotent. Runs in one transaction holding a lock (PostgreSQL advisory lock, SQLite write
    lock), so processes starting together do not race each other's DDL.
    """
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with writer(engine).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        if engine is not target:
            engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The migration revision the database is at, or None before the first upgrade."""
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
