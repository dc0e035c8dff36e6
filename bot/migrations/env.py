"""Alembic environment: runs on the connection ``bot.db.upgrade`` passes (inside its locked transaction),
or on ``sqlalchemy.url`` for the alembic command line."""

from alembic import context
from sqlalchemy import create_engine

from bot.db import metadata

config = context.config
connection = config.attributes.get("connection")


def run(conn) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=conn, target_metadata=metadata, render_as_batch=conn.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    with create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://").begin() as conn:
        run(conn)
