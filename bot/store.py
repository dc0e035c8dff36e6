"""SQLite in the instance folder: reply dedupe, per-user state, rate limits and the query log.

One file shared by every gunicorn worker (WAL mode, short transactions). The methods are the seam a
shared store (Redis, PostgreSQL) would implement to run on several machines.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, current_app

SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,           -- MsgId, or FromUserName + CreateTime for events
    state TEXT NOT NULL,            -- 'pending' while being answered, then 'done'
    content TEXT,                   -- the reply body sent (plain XML or 'success')
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS user_state (
    user TEXT PRIMARY KEY,
    data TEXT NOT NULL,             -- JSON: last question, passages shown, a late answer
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rate_events (
    user TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_events_user_at ON rate_events (user, at);
CREATE TABLE IF NOT EXISTS query_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    channel TEXT NOT NULL,          -- 'wechat' or 'console'
    user_hash TEXT NOT NULL,
    question TEXT NOT NULL,
    kind TEXT NOT NULL,
    abstained INTEGER NOT NULL,
    top_doc TEXT,
    top_section TEXT,
    confidence REAL,
    latency_ms REAL NOT NULL,
    index_version TEXT
);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,        -- from the file name; the same name replaces (with replace=1)
    file_name TEXT NOT NULL,
    title TEXT NOT NULL,
    date TEXT,
    sha256 TEXT NOT NULL UNIQUE,
    chars INTEGER NOT NULL,
    uploaded_by TEXT NOT NULL,
    uploaded_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL,            -- queued, running, done, failed
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    version TEXT,
    error TEXT,
    pid INTEGER,
    requested_by TEXT NOT NULL,
    created REAL NOT NULL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    result TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    question_set TEXT NOT NULL,
    versions TEXT NOT NULL,         -- JSON list: the serving version, and one to compare with
    state TEXT NOT NULL,            -- running, done, failed
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    results TEXT,                   -- JSON: version -> {metrics, rows}
    error TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# Columns added after a table was first created: (table, column, definition), applied once, in order.
MIGRATIONS: list[tuple[str, str, str]] = [
    ("documents", "text_sha256", "TEXT"),  # SHA-256 of the normalised text: the same document in another encoding
    ("documents", "meta", "TEXT"),  # JSON: issuer, number, status, replaces … (index.metadata)
]


@dataclass
class LogEntry:
    id: int
    at: float
    channel: str
    user_hash: str
    question: str
    kind: str
    abstained: bool
    top_doc: str | None
    top_section: str | None
    confidence: float | None
    latency_ms: float
    index_version: str | None


class BotStore:
    def __init__(self, path: Path, salt: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._salt = salt or self._initialise()

    def _initialise(self) -> str:
        """Create the tables (and the log salt). Several workers start at once: wait for each other."""
        for attempt in range(50):
            try:
                self.connection().executescript(SCHEMA)  # executescript manages its own transaction
                self._migrate()
                return self._stored_salt()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.1 + 0.05 * attempt)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ connection

    def connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        db = self.connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _migrate(self) -> None:
        with self.transaction() as db:
            for table, column, definition in MIGRATIONS:
                have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    def _stored_salt(self) -> str:
        with self.transaction() as db:
            row = db.execute("SELECT value FROM settings WHERE name = 'user_salt'").fetchone()
            if row:
                return row[0]
            salt = secrets.token_hex(16)
            db.execute("INSERT INTO settings (name, value) VALUES ('user_salt', ?)", (salt,))
            return salt

    # ------------------------------------------------------------------ audit

    def audit(self, who: str, action: str, target: str | None, result: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO audit (at, who, action, target, result) VALUES (?, ?, ?, ?, ?)",
                       (time.time(), who, action, target, result))

    def audit_log(self, limit: int = 50) -> list[dict]:
        rows = self.connection().execute(
            "SELECT at, who, action, target, result FROM audit ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [dict(zip(("at", "who", "action", "target", "result"), r, strict=True)) for r in rows]

    def setting(self, name: str) -> str | None:
        row = self.connection().execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_setting_once(self, name: str, value: str) -> None:
        """Store ``value`` unless another worker stored one first."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)", (name, value))

    def set_setting(self, name: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)", (name, value))

    # --------------------------------------------------------------- batches

    def create_batch(self, question_set: str, versions: list[str]) -> int:
        with self.transaction() as db:
            cur = db.execute("INSERT INTO batches (question_set, versions, state, created) VALUES (?, ?, 'running', ?)",
                             (question_set, json.dumps(versions), time.time()))
            return int(cur.lastrowid or 0)

    def update_batch(self, batch_id: int, **fields: object) -> None:
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self.transaction() as db:
            db.execute(f"UPDATE batches SET {columns} WHERE id = ?", (*fields.values(), batch_id))

    def get_batch(self, batch_id: int) -> dict | None:
        row = self.connection().execute(
            "SELECT id, question_set, versions, state, done, total, results, error, created FROM batches WHERE id = ?",
            (batch_id,),
        ).fetchone()
        if row is None:
            return None
        keys = ("id", "question_set", "versions", "state", "done", "total", "results", "error", "created")
        run = dict(zip(keys, row, strict=True))
        run["versions"] = json.loads(run["versions"])
        run["results"] = json.loads(run["results"]) if run["results"] else None
        return run

    def recent_batches(self, limit: int = 10) -> list[dict]:
        ids = [r[0] for r in self.connection().execute("SELECT id FROM batches ORDER BY id DESC LIMIT ?", (limit,))]
        return [b for b in (self.get_batch(i) for i in ids) if b]

    # ---------------------------------------------------------------- dedupe

    def claim(self, key: str) -> bool:
        """True when this caller is the first to see ``key`` and must answer it."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO replies (key, state, created) VALUES (?, 'pending', ?)", (key, time.time())
            )
            return cur.rowcount == 1

    def finish(self, key: str, content: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE replies SET state = 'done', content = ? WHERE key = ?", (content, key))

    def release(self, key: str) -> None:
        """Forget a claim that produced no reply, so a retry is answered afresh."""
        with self.transaction() as db:
            db.execute("DELETE FROM replies WHERE key = ? AND state = 'pending'", (key,))

    def stored_reply(self, key: str) -> tuple[str, str | None] | None:
        row = self.connection().execute("SELECT state, content FROM replies WHERE key = ?", (key,)).fetchone()
        return (row[0], row[1]) if row else None

    def wait_for_reply(self, key: str, timeout: float, poll: float = 0.05) -> str | None:
        """The reply stored for ``key`` once its first delivery is answered (None if not in time)."""
        deadline = time.monotonic() + timeout
        while True:
            row = self.stored_reply(key)
            if row and row[0] == "done":
                return row[1]
            if row is None or time.monotonic() >= deadline:
                return None
            time.sleep(poll)

    def purge(self, older_than: float) -> None:
        cutoff = time.time() - older_than
        with self.transaction() as db:
            db.execute("DELETE FROM replies WHERE created < ? AND state = 'done'", (cutoff,))
            db.execute("DELETE FROM rate_events WHERE at < ?", (time.time() - 3600,))

    # ------------------------------------------------------------ user state

    def get_state(self, user: str, max_age: float) -> dict:
        row = self.connection().execute("SELECT data, updated FROM user_state WHERE user = ?", (user,)).fetchone()
        if not row or time.time() - row[1] > max_age:
            return {}
        return json.loads(row[0])

    def set_state(self, user: str, data: dict) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO user_state (user, data, updated) VALUES (?, ?, ?) "
                "ON CONFLICT(user) DO UPDATE SET data = excluded.data, updated = excluded.updated",
                (user, json.dumps(data, ensure_ascii=False), time.time()),
            )

    # ------------------------------------------------------------ rate limit

    def hit_rate_limit(self, user: str, limit: int, window: float = 60.0) -> bool:
        """Record one message from ``user``; True when it is over ``limit`` in the last ``window`` s."""
        now = time.time()
        with self.transaction() as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM rate_events WHERE user = ? AND at > ?", (user, now - window)
            ).fetchone()
            if count >= limit:
                return True
            db.execute("INSERT INTO rate_events (user, at) VALUES (?, ?)", (user, now))
            return False

    # ------------------------------------------------------------- query log

    def hash_user(self, user: str) -> str:
        return hmac.new(self._salt.encode(), user.encode(), hashlib.sha256).hexdigest()[:16]

    def log_query(self, *, channel: str, user: str, question: str, kind: str, abstained: bool,
                  top_doc: str | None, top_section: str | None, confidence: float | None,
                  latency_ms: float, index_version: str | None) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO query_log (at, channel, user_hash, question, kind, abstained, top_doc, top_section,"
                " confidence, latency_ms, index_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), channel, self.hash_user(user), question, kind, int(abstained), top_doc,
                 top_section, confidence, latency_ms, index_version),
            )

    def recent_queries(self, limit: int = 20, abstained_only: bool = False,
                       channel: str | None = None) -> list[LogEntry]:
        sql = "SELECT * FROM query_log WHERE 1 = 1"
        params: list = []
        if abstained_only:
            sql += " AND abstained = 1"
        if channel:
            sql += " AND channel = ?"
            params.append(channel)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        rows = self.connection().execute(sql, params).fetchall()
        return [
            LogEntry(id=r[0], at=r[1], channel=r[2], user_hash=r[3], question=r[4], kind=r[5], abstained=bool(r[6]),
                     top_doc=r[7], top_section=r[8], confidence=r[9], latency_ms=r[10], index_version=r[11])
            for r in rows
        ]


def init_app(app: Flask, store: BotStore) -> BotStore:
    app.extensions["bot_store"] = store
    return store


def get_store() -> BotStore:
    return current_app.extensions["bot_store"]
