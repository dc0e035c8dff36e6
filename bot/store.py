"""The bot store on SQLAlchemy Core: reply dedupe, per-user state, rate limits, the query log, audit,
batches and settings (documents: ``bot.library``; jobs: ``bot.jobs``). Tables: ``bot.db``.

One store for every gunicorn worker of every node: SQLite in the instance folder (one machine), or
PostgreSQL (``DATABASE_URL``) for a cluster. Everything that must hold across nodes holds in the database:

- a message (dedupe key) is claimed by one worker; a re-delivery to any node waits for that worker's
  reply; a claim whose owner stopped beating (a killed node) or that outlived ``claim_lease`` is taken
  over, so a later try is answered;
- a message is logged at most once (a unique ``msg_key``), whichever node answers it;
- rate limits count every node's messages (per-user serialised).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import socket
import threading
import time
import weakref
from dataclasses import dataclass

from flask import Flask, current_app
from sqlalchemy import Connection, Engine, and_, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from bot import db
from bot.db import (
    advisory_lock,
    audit,
    batches,
    query_log,
    rate_events,
    replies,
    settings,
    upsert,
    user_state,
    workers,
)

HEARTBEAT_SECONDS = 0.5  # how often a web worker answering a message says it is alive
OWNER_STALE_SECONDS = 2.0  # a claim whose owner has not beaten for this long is taken over (a retry is
# answered within the 4 s reply budget; a false takeover of a slow owner only answers twice, logged once)
CLAIM_LEASE_SECONDS = 30.0  # a claim older than this is taken over whatever its owner (a stuck worker)

CLAIMED = "claimed"  # this caller must answer (returned by claim and await_reply)
DONE = "done"
WAITING = "waiting"


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
    tier: str | None = None
    node: str | None = None

    def to_json(self) -> dict:
        return {"id": self.id, "at": self.at, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.at)),
                "question": self.question, "tier": self.tier or ("decline" if self.abstained else self.kind),
                "kind": self.kind, "node": self.node, "channel": self.channel, "index_version": self.index_version,
                "top_doc": self.top_doc, "latency_ms": self.latency_ms}


def default_node_name() -> str:
    return os.environ.get("FLASK_NODE_NAME") or socket.gethostname()


class BotStore:
    def __init__(self, engine: Engine, salt: str | None = None, node: str | None = None) -> None:
        self.engine = engine
        self.node = node or default_node_name()
        db.upgrade(engine)
        self._salt = salt or self.setting_once("user_salt", secrets.token_hex(16))
        self._worker_id: str | None = None
        self._worker_pid = 0
        self._heartbeat_lock = threading.Lock()
        self._held = 0  # claims this process is answering: it beats while there are any

    @classmethod
    def open(cls, url: str, salt: str | None = None, node: str | None = None) -> BotStore:
        return cls(db.make_engine(url), salt=salt, node=node)

    @property
    def is_postgres(self) -> bool:
        return db.is_postgres(self.engine)

    def _read(self):  # type: ignore[no-untyped-def]
        """A read-only connection (a deferred transaction on SQLite: it takes no write lock)."""
        return self.engine.connect().execution_options(readonly=True)

    # ------------------------------------------------------------------ audit

    def audit(self, who: str, action: str, target: str | None, result: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(audit.insert().values(at=time.time(), who=who, action=action, target=target, result=result))

    def audit_log(self, limit: int = 50) -> list[dict]:
        with self._read() as conn:
            rows = conn.execute(select(audit.c.at, audit.c.who, audit.c.action, audit.c.target, audit.c.result)
                                .order_by(audit.c.id.desc()).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def setting(self, name: str) -> str | None:
        with self._read() as conn:
            return conn.execute(select(settings.c.value).where(settings.c.name == name)).scalar()

    def setting_once(self, name: str, value: str) -> str:
        """The stored value of ``name``; ``value`` is stored first when there is none (when several workers
        start at once, the first to store wins and all get its value)."""
        with self.engine.begin() as conn:
            upsert(conn, settings, {"name": name, "value": value}, "name")
            return conn.execute(select(settings.c.value).where(settings.c.name == name)).scalar_one()

    def set_setting(self, name: str, value: str) -> None:
        with self.engine.begin() as conn:
            upsert(conn, settings, {"name": name, "value": value}, "name", update=["value"])

    # --------------------------------------------------------------- batches

    def create_batch(self, question_set: str, versions: list[str]) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(batches.insert().values(question_set=question_set, versions=json.dumps(versions),
                                                          state="running", created=time.time()))
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def update_batch(self, batch_id: int, **fields: object) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(batches).where(batches.c.id == batch_id).values(**fields))

    def get_batch(self, batch_id: int) -> dict | None:
        with self._read() as conn:
            row = conn.execute(select(batches).where(batches.c.id == batch_id)).mappings().first()
        if row is None:
            return None
        run = dict(row)
        run["versions"] = json.loads(run["versions"])
        run["results"] = json.loads(run["results"]) if run["results"] else None
        return run

    def recent_batches(self, limit: int = 10) -> list[dict]:
        with self._read() as conn:
            ids = conn.execute(select(batches.c.id).order_by(batches.c.id.desc()).limit(limit)).scalars().all()
        return [b for b in (self.get_batch(i) for i in ids) if b]

    # ------------------------------------------------------------- workers

    def worker_id(self) -> str:
        """This process's id in ``workers`` (new in each process: gunicorn forks workers after the app is
        created). While the worker holds claims it beats every HEARTBEAT_SECONDS from a daemon thread; an
        idle worker writes nothing (a refused request must leave the store untouched)."""
        with self._heartbeat_lock:
            if self._worker_id is None or self._worker_pid != os.getpid():
                self._worker_pid = os.getpid()
                self._worker_id = f"{self.node}:{os.getpid()}:{secrets.token_hex(3)}"
                self._held = 0
                threading.Thread(target=_beat_forever, args=(weakref.ref(self), self._worker_id),
                                 name="store-heartbeat", daemon=True).start()
            return self._worker_id

    def _hold(self, change: int) -> None:
        with self._heartbeat_lock:
            self._held = max(0, self._held + change)

    def beat(self, worker: str) -> None:
        with self.engine.begin() as conn:
            self._beat(conn, worker, time.time())

    def _beat(self, conn: Connection, worker: str, now: float) -> None:
        upsert(conn, workers, {"id": worker, "node": self.node, "seen": now}, "id", update=["seen"])


    # ---------------------------------------------------------------- dedupe

    def claim(self, key: str, owner: str | None = None) -> bool:
        """True when this caller must answer ``key``: it is the first to see it, or the claim it finds was
        left by a worker that is gone (no heartbeat for OWNER_STALE_SECONDS) or is older than the lease."""
        mine = owner is None or owner == self._worker_id
        owner = owner or self.worker_id()
        now = time.time()
        with self.engine.begin() as conn:
            self._beat(conn, owner, now)  # the owner of a fresh claim is alive now
            inserted = upsert(conn, replies, {"key": key, "state": "pending", "created": now, "owner": owner}, "key",
                              returning="key")
            claimed = inserted.first() is not None  # (rowcount is not reliable across drivers)
            if not claimed:
                row = conn.execute(select(replies.c.state, replies.c.owner, replies.c.created)
                                   .where(replies.c.key == key).with_for_update()).first()
                if row is None or row.state != "pending" or not self._expired(conn, row.owner, row.created, now):
                    return False
                conn.execute(update(replies).where(replies.c.key == key).values(owner=owner, created=now))
        if mine:
            self._hold(+1)
        return True

    def _expired(self, conn: Connection, owner: str | None, created: float, now: float) -> bool:
        if now - created > CLAIM_LEASE_SECONDS:
            return True
        if owner is None:
            return False
        seen = conn.execute(select(workers.c.seen).where(workers.c.id == owner)).scalar()
        return seen is None or now - seen > OWNER_STALE_SECONDS

    def finish(self, key: str, content: str) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(update(replies).where(replies.c.key == key).values(state="done", content=content))
        finally:
            self._hold(-1)

    def release(self, key: str) -> None:
        """Forget a claim that produced no reply, so a retry is answered afresh."""
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(replies).where(and_(replies.c.key == key, replies.c.state == "pending")))
        finally:
            self._hold(-1)

    def stored_reply(self, key: str) -> tuple[str, str | None] | None:
        with self._read() as conn:
            row = conn.execute(select(replies.c.state, replies.c.content).where(replies.c.key == key)).first()
        return (row.state, row.content) if row else None

    def await_reply(self, key: str, timeout: float, poll: float = 0.05,
                    owner: str | None = None) -> tuple[str, str | None]:
        """Wait for the reply to ``key`` being answered elsewhere (another worker or node):
        (DONE, reply), or (CLAIMED, None) when its owner died and this caller took the claim over and
        must answer, or (WAITING, None) when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        checked = time.monotonic()
        while True:
            row = self.stored_reply(key)
            if row and row[0] == "done":
                return DONE, row[1]
            if row is None or time.monotonic() - checked > 0.5:  # gone (released), or check the owner
                checked = time.monotonic()
                if self.claim(key, owner):
                    return CLAIMED, None
            if time.monotonic() >= deadline:
                return WAITING, None
            time.sleep(poll)

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
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(delete(replies).where(and_(replies.c.created < now - older_than, replies.c.state == "done")))
            conn.execute(delete(rate_events).where(rate_events.c.at < now - 3600))
            conn.execute(delete(workers).where(workers.c.seen < now - 3600))

    # ------------------------------------------------------------ user state

    def get_state(self, user: str, max_age: float) -> dict:
        with self._read() as conn:
            row = conn.execute(select(user_state.c.data, user_state.c.updated)
                               .where(user_state.c.user == user)).first()
        if not row or time.time() - row.updated > max_age:
            return {}
        return json.loads(row.data)

    def set_state(self, user: str, data: dict) -> None:
        with self.engine.begin() as conn:
            self._set_state(conn, user, data)

    def _set_state(self, conn: Connection, user: str, data: dict) -> None:
        value = json.dumps(data, ensure_ascii=False)
        upsert(conn, user_state, {"user": user, "data": value, "updated": time.time()}, "user",
               update=["data", "updated"])

    # ------------------------------------------------------------ rate limit

    def hit_rate_limit(self, user: str, limit: int, window: float = 60.0) -> bool:
        """Record one message from ``user``; True when it is over ``limit`` in the last ``window`` s
        (counted over every node; one user's messages are counted one at a time)."""
        now = time.time()
        with self.engine.begin() as conn:
            advisory_lock(conn, f"rate:{user}")
            count = conn.execute(select(func.count()).select_from(rate_events).where(
                and_(rate_events.c.user == user, rate_events.c.at > now - window))).scalar_one()
            if count >= limit:
                return True
            conn.execute(rate_events.insert().values(user=user, at=now))
            return False

    # ------------------------------------------------------------- query log

    def hash_user(self, user: str) -> str:
        return hmac.new(self._salt.encode(), user.encode(), hashlib.sha256).hexdigest()[:16]

    def log_query(self, *, channel: str, user: str, question: str, kind: str, abstained: bool,
                  top_doc: str | None, top_section: str | None, confidence: float | None,
                  latency_ms: float, index_version: str | None, tier: str | None = None,
                  msg_key: str | None = None, state: dict | None = None) -> int | None:
        """Log a question; its row id, or None when its message (``msg_key``) is logged already (answered
        twice). ``state``, when given, becomes ``user``'s state (``set_state``) in the same transaction: one
        write for the two that every answered message makes."""
        values = dict(at=time.time(), channel=channel, user_hash=self.hash_user(user), question=question, kind=kind,
                      abstained=int(abstained), top_doc=top_doc, top_section=top_section, confidence=confidence,
                      latency_ms=latency_ms, index_version=index_version, tier=tier, node=self.node, msg_key=msg_key)
        try:
            with self.engine.begin() as conn:
                if state is not None:
                    self._set_state(conn, user, state)
                result = conn.execute(query_log.insert().values(**values))
        except IntegrityError:
            if state is not None:
                self.set_state(user, state)
            return None
        key = result.inserted_primary_key
        return int(key[0]) if key else None

    def recent_queries(self, limit: int = 20, abstained_only: bool = False, channel: str | None = None,
                       user: str | None = None) -> list[LogEntry]:
        """The newest entries; ``user`` (an OpenID, or ``api:<id>``) keeps that member's only."""
        stmt = select(*(query_log.c[name] for name in LogEntry.__dataclass_fields__))
        if abstained_only:
            stmt = stmt.where(query_log.c.abstained == 1)
        if channel:
            stmt = stmt.where(query_log.c.channel == channel)
        if user is not None:
            stmt = stmt.where(query_log.c.user_hash == self.hash_user(user))
        with self._read() as conn:
            rows = conn.execute(stmt.order_by(query_log.c.id.desc()).limit(limit)).mappings().all()
        return [LogEntry(**{**row, "abstained": bool(row["abstained"])}) for row in rows]

    def count_logged(self, msg_key: str | None = None) -> int:
        stmt = select(func.count()).select_from(query_log)
        if msg_key is not None:
            stmt = stmt.where(query_log.c.msg_key == msg_key)
        with self._read() as conn:
            return int(conn.execute(stmt).scalar_one())


def _beat_forever(ref: weakref.ref[BotStore], worker: str) -> None:
    """The heartbeat loop; it holds the store weakly, so a discarded store (tests) is freed and it ends."""
    while True:
        time.sleep(HEARTBEAT_SECONDS)
        store = ref()
        if store is None or store._worker_id != worker:
            return
        try:
            if store._held:
                store.beat(worker)
        except Exception:  # the database is briefly unreachable: try again at the next beat
            pass
        del store


def init_app(app: Flask, store: BotStore) -> BotStore:
    app.extensions["bot_store"] = store
    return store


def get_store() -> BotStore:
    return current_app.extensions["bot_store"]
