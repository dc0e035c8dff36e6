"""The SQL engine and the one ``MetaData`` every table of the bot store is declared on (SQLAlchemy Core).

SQLite in the instance folder is the embedded default; ``DATABASE_URL`` (``postgresql+psycopg://…``)
selects a shared PostgreSQL server for several nodes. Tables of every feature (the bot store, curation)
are declared on ``metadata`` so one migration history (``bot/migrations``, alembic) covers them all.

The only dialect differences live here and in ``bot.store``: locking (``FOR UPDATE SKIP LOCKED`` and
advisory locks on PostgreSQL; SQLite serialises writers with ``BEGIN IMMEDIATE``). Upserts (``upsert``) are
one SQL text both accept.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import (
    Column,
    Connection,
    CursorResult,
    Double,
    Engine,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
    event,
    inspect,
    text,
)

log = logging.getLogger(__name__)
metadata = MetaData()

replies = Table(
    "replies", metadata,
    Column("key", Text, primary_key=True),  # msg:<from>:<MsgId>, or at:<from>:<CreateTime> for events
    Column("state", Text, nullable=False),  # 'pending' while being answered, then 'done'
    Column("content", Text),  # the reply body sent (plain XML or 'success')
    Column("created", Double, nullable=False),  # when the current owner claimed it
    Column("owner", Text),  # the worker answering it (workers.id); a dead owner's claim expires
)
workers = Table(
    "workers", metadata,  # web worker processes of every node, with a heartbeat
    Column("id", Text, primary_key=True),  # <node>:<pid>:<random>
    Column("node", Text, nullable=False),
    Column("seen", Double, nullable=False),
)
user_state = Table(
    "user_state", metadata,
    Column("user", Text, primary_key=True),
    Column("data", Text, nullable=False),  # JSON: last question, passages shown, a late answer
    Column("updated", Double, nullable=False),
)
rate_events = Table(
    "rate_events", metadata,
    Column("user", Text, nullable=False),
    Column("at", Double, nullable=False),
    Index("rate_events_user_at", "user", "at"),
)
query_log = Table(
    "query_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("channel", Text, nullable=False),  # wechat, api, console
    Column("user_hash", Text, nullable=False),
    Column("question", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("abstained", Integer, nullable=False),
    Column("top_doc", Text),
    Column("top_section", Text),
    Column("confidence", Double),
    Column("latency_ms", Double, nullable=False),
    Column("index_version", Text),
    Column("tier", Text),  # answer, related, decline
    Column("node", Text),  # the node that answered
    Column("msg_key", Text),  # the message's dedupe key: a message is logged once, whichever node answers
    Index("query_log_msg_key", "msg_key", unique=True),
    Index("query_log_user_hash", "user_hash", "id"),
)
documents = Table(
    "documents", metadata,
    Column("doc_id", Text, primary_key=True),  # from the file name; the same name replaces (with replace=1)
    Column("file_name", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("date", Text),
    Column("sha256", Text, nullable=False, unique=True),
    Column("chars", Integer, nullable=False),
    Column("uploaded_by", Text, nullable=False),
    Column("uploaded_at", Double, nullable=False),
    Column("text_sha256", Text),  # SHA-256 of the normalised text: the same document in another encoding
    Column("meta", Text),  # JSON: issuer, number, status, replaces … (index.metadata)
)
jobs = Table(
    "jobs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("state", Text, nullable=False),  # queued, running, done, failed
    Column("done", Integer, nullable=False, server_default="0"),
    Column("total", Integer, nullable=False, server_default="0"),
    Column("version", Text),
    Column("error", Text),
    Column("pid", Integer),
    Column("requested_by", Text, nullable=False),
    Column("created", Double, nullable=False),
    Column("finished", Double),
    Column("node", Text),  # the node that claimed it (its pid means something there only)
    Column("heartbeat", Double),  # the build process's last sign of life, for other nodes
)
audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("who", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text),
    Column("result", Text, nullable=False),
)
batches = Table(
    "batches", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("question_set", Text, nullable=False),
    Column("versions", Text, nullable=False),  # JSON list: the serving version, and one to compare with
    Column("state", Text, nullable=False),  # running, done, failed
    Column("done", Integer, nullable=False, server_default="0"),
    Column("total", Integer, nullable=False, server_default="0"),
    Column("results", Text),  # JSON: version -> {metrics, rows}
    Column("error", Text),
    Column("created", Double, nullable=False),
)
settings = Table(
    "settings", metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
)
index_activations = Table(
    "index_activations", metadata,  # the serving index version of every node: the newest row
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version", Text, nullable=False),
    Column("at", Double, nullable=False),
    Column("node", Text, nullable=False),  # where it was activated (a build or a rollback)
)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def is_postgres(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "postgresql"


def upsert(conn: Connection, table: Table, values: dict, key: str, update: Iterable[str] = (),
           returning: str | None = None) -> CursorResult:
    """INSERT ``values`` into ``table``; on a conflict on ``key``, set the ``update`` columns to the new
    values (none given: leave the row as it is). The same SQL runs on SQLite and PostgreSQL. It is written as
    text because SQLAlchemy compiles its dialects' upserts afresh at every call (they have no cache key), and
    a WeChat message makes several (its claim, the worker's heartbeat, the member's state)."""
    quote = conn.dialect.identifier_preparer.quote
    columns, changed = list(values), list(update)
    sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
           f"VALUES ({', '.join(':' + c for c in columns)}) ON CONFLICT ({quote(key)}) ")
    sql += ("DO UPDATE SET " + ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in changed)) if changed \
        else "DO NOTHING"
    if returning:
        sql += f" RETURNING {quote(returning)}"
    return conn.execute(text(sql), values)


WAL_WAIT_SECONDS = 30.0  # as long as the busy timeout


def advisory_lock(conn: Connection, name: str) -> None:
    """Serialise a critical section across nodes until the transaction ends (PostgreSQL); SQLite's
    ``BEGIN IMMEDIATE`` already holds the one write lock."""
    if is_postgres(conn):
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(name.encode())})


def use_wal(cursor: sqlite3.Cursor, wait: float = WAL_WAIT_SECONDS) -> None:
    """Put the SQLite database in WAL mode. SQLite does not wait on the busy timeout to change the journal
    mode: while another connection writes to a database still in its first mode — a fresh one, which the
    first of several workers starting together is filling with tables — the change fails at once with
    "database is locked", and the worker failed to start (gunicorn then stops every worker). The change is
    tried again until ``wait`` has passed; a database already in WAL mode is left as it is."""
    deadline = time.monotonic() + wait
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def make_engine(url: str) -> Engine:
    """An engine for ``url``. SQLite gets WAL mode, a busy timeout, and ``BEGIN IMMEDIATE`` for every
    transaction but reads (``execution_options(readonly=True)``), so that a read-then-write cannot deadlock
    between processes. PostgreSQL gets a small pool that checks connections before use."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            use_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("readonly") else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


# ------------------------------------------------------------------------------------ migrations

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
LEGACY_REVISION = "0001"  # the schema the SQLite store had before alembic
_LEGACY_COLUMNS = (("documents", "text_sha256", "TEXT"), ("documents", "meta", "TEXT"))
_upgraded: set[str] = set()
_upgrade_lock = threading.Lock()


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest migration (alembic ``upgrade head``), once per process and URL.

    Several workers and nodes start at once: the upgrade runs inside one transaction holding a lock
    (an advisory lock on PostgreSQL, the write lock on SQLite), so the others wait and then find it done.
    A SQLite file from before migrations is stamped at the legacy revision first."""
    from alembic import command
    from alembic.config import Config

    url = engine.url.render_as_string(hide_password=False)
    with _upgrade_lock:
        if url in _upgraded:
            return
        with engine.begin() as conn:
            advisory_lock(conn, "zhengce-wenda:migrations")
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS_DIR))
            config.attributes["connection"] = conn
            have = set(inspect(conn).get_table_names())
            if "replies" in have and "alembic_version" not in have:
                for table, column, definition in _LEGACY_COLUMNS:
                    if column not in {c["name"] for c in inspect(conn).get_columns(table)}:
                        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                command.stamp(config, LEGACY_REVISION)
            command.upgrade(config, "head")
        _upgraded.add(url)
