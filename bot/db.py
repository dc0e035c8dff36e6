"""The SQL engine and the one ``MetaData`` every table of the bot store is declared on (SQLAlchemy Core).

SQLite in the instance folder is the embedded default; ``DATABASE_URL`` (``postgresql+psycopg://…``)
selects a shared PostgreSQL server for several nodes. Tables of every feature (the bot store, curation)
are declared on ``metadata`` so one migration history covers them all.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, MetaData, create_engine, event

metadata = MetaData()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL mode and a busy timeout so several workers share one file."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
