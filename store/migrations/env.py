"""Alembic environment of the store.

``store.upgrade()`` hands over an open connection (already inside a transaction and holding the
migration lock) through ``config.attributes["connection"]``. From the CLI the URL comes from
``sqlalchemy.url`` or else pssync's settings (``PSSYNC_DATABASE_URL``, default SQLite under
``.pssync/``). Must never configure logging: the service owns it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from store.database import make_engine, normalize_url, writer
from store.models import metadata

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from contracts.settings import load_settings

        url = load_settings().resolved_database_url
    return normalize_url(url).render_as_string(hide_password=False)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with writer(engine).begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
