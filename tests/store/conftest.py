"""Fixtures for the store's tests: every test that takes ``database_url`` (or ``engine`` /
``store``) runs once on SQLite (a file under tmp_path) and once on PostgreSQL.

PostgreSQL runs only when PSSYNC_TEST_DATABASE_URL is set. Each test gets its own schema
(``pssync_test_<epoch>_<hex>``) selected through libpq's ``options=-csearch_path=...``, so
tests are isolated from each other and from concurrent runs; the schema is dropped afterwards,
and schemas left by killed runs are swept once they are an hour old.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, text

from store import Store, make_engine, normalize_url, upgrade

PG_ENV = "PSSYNC_TEST_DATABASE_URL"
SCHEMA_PREFIX = "pssync_test_"
T = TypeVar("T")
STALE_AFTER_S = 3600


def _pg_admin_url() -> str | None:
    return os.environ.get(PG_ENV) or None


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    url = _pg_admin_url()
    if url is None:
        pytest.skip(f"{PG_ENV} is not set")
    engine = make_engine(url)
    _sweep_stale_schemas(engine)
    yield engine
    engine.dispose()


def _sweep_stale_schemas(engine: Engine) -> None:
    cutoff = int(time.time()) - STALE_AFTER_S
    with engine.begin() as conn:
        names = conn.scalars(
            text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"),
            {"p": SCHEMA_PREFIX + "%"},
        ).all()
        for name in names:
            try:
                created = int(name.removeprefix(SCHEMA_PREFIX).split("_")[0])
            except ValueError:
                continue
            if created < cutoff:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty database (no tables yet); SQLite's file sits in a directory not yet created."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('store')}/nested/dir/store.db"
        return
    admin: Engine = request.getfixturevalue("pg_admin")
    schema = f"{SCHEMA_PREFIX}{int(time.time())}_{uuid.uuid4().hex[:8]}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = normalize_url(admin.url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a migrated database."""
    upgrade(database_url)
    # Room for one connection per thread in the concurrency tests, so they really race.
    eng = make_engine(database_url, pool_size=5, max_overflow=60)
    yield eng
    eng.dispose()


@pytest.fixture
def store(engine: Engine) -> Store:
    return Store(engine)


RowCount = Callable[..., int]


@pytest.fixture
def row_count(engine: Engine) -> RowCount:
    """``row_count("xref", "system = :s", s="PSA")``: rows in the database, read with plain SQL."""

    def count(table: str, where: str = "", **params: object) -> int:
        sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
        with engine.connect() as conn:
            return int(conn.execute(text(sql), params).scalar_one())

    return count


def run_together(n: int, fn: Callable[[int], T]) -> list[T | BaseException]:
    """Call ``fn(i)`` from ``n`` threads released at the same instant by a barrier; returns each
    call's result or the exception it raised, in order of ``i``."""
    barrier = threading.Barrier(n)

    def call(i: int) -> T:
        barrier.wait(timeout=30)
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(call, i) for i in range(n)]
        outcomes: list[T | BaseException] = []
        for future in futures:
            error = future.exception(timeout=120)
            outcomes.append(error if error is not None else future.result())
        return outcomes


@pytest.fixture
def together() -> Callable[[int, Callable[[int], Any]], list[Any]]:
    return run_together
