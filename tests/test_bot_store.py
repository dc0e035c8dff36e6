"""The bot store on both engines (SQLite and a real PostgreSQL): every test runs twice.

Two ``BotStore`` objects on one database stand for two nodes (their own connection pools, node names
and worker heartbeats), as two gunicorn nodes behind a proxy would be."""

import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import inspect, text

from bot import db
from bot.jobs import Jobs
from bot.store import CLAIMED, DONE, OWNER_STALE_SECONDS, WAITING, BotStore
from tests.conftest import ROOT

INIT = """
import sys
sys.path.insert(0, {root!r})
from bot.store import BotStore
store = BotStore.open({url!r})
print(store.hash_user("o_same"))
"""


@pytest.fixture
def other_node(db_url):
    store = BotStore.open(db_url, node="node-b")
    yield store
    store.engine.dispose()


def log(store, key, question="问题"):
    return store.log_query(channel="wechat", user="o_user", question=question, kind="answer", abstained=False,
                           top_doc="d", top_section="s", confidence=0.9, latency_ms=5.0, index_version="v1",
                           tier="answer", msg_key=key)


def test_workers_starting_together_share_one_schema_and_salt(db_url):
    code = INIT.format(root=str(ROOT), url=db_url)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-800:] for _, err in results]
    assert len({out.strip() for out, _ in results}) == 1  # one salt: the same user hashes alike everywhere


def test_migrations_reach_the_newest_revision(bot_store):
    with bot_store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
        assert set(db.metadata.tables) <= set(inspect(conn).get_table_names())
        columns = {c["name"] for c in inspect(conn).get_columns("query_log")}
    assert {"node", "tier", "msg_key"} <= columns


def test_a_store_from_before_migrations_is_upgraded_in_place(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE replies (key TEXT PRIMARY KEY, state TEXT NOT NULL, content TEXT, created REAL NOT NULL);
        CREATE TABLE user_state (user TEXT PRIMARY KEY, data TEXT NOT NULL, updated REAL NOT NULL);
        CREATE TABLE rate_events (user TEXT NOT NULL, at REAL NOT NULL);
        CREATE TABLE query_log (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, channel TEXT NOT NULL,
            user_hash TEXT NOT NULL, question TEXT NOT NULL, kind TEXT NOT NULL, abstained INTEGER NOT NULL,
            top_doc TEXT, top_section TEXT, confidence REAL, latency_ms REAL NOT NULL, index_version TEXT);
        CREATE TABLE documents (doc_id TEXT PRIMARY KEY, file_name TEXT NOT NULL, title TEXT NOT NULL, date TEXT,
            sha256 TEXT NOT NULL UNIQUE, chars INTEGER NOT NULL, uploaded_by TEXT NOT NULL, uploaded_at REAL NOT NULL);
        CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, state TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0,
            total INTEGER NOT NULL DEFAULT 0, version TEXT, error TEXT, pid INTEGER, requested_by TEXT NOT NULL,
            created REAL NOT NULL, finished REAL);
        CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, who TEXT NOT NULL,
            action TEXT NOT NULL, target TEXT, result TEXT NOT NULL);
        CREATE TABLE batches (id INTEGER PRIMARY KEY AUTOINCREMENT, question_set TEXT NOT NULL, versions TEXT NOT NULL,
            state TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0, results TEXT,
            error TEXT, created REAL NOT NULL);
        CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO settings VALUES ('user_salt', 'old-salt');
        INSERT INTO query_log (at, channel, user_hash, question, kind, abstained, latency_ms)
            VALUES (1.0, 'wechat', 'h', '旧问题', 'answer', 0, 3.0);
    """)
    old.close()
    store = BotStore.open(f"sqlite:///{path}")
    assert [e.question for e in store.recent_queries()] == ["旧问题"]  # kept, with the new columns empty
    assert store.setting("user_salt") == "old-salt"
    assert log(store, "msg:o:1")


def test_the_first_claim_answers_and_a_retry_gets_its_reply(bot_store):
    assert bot_store.claim("msg:o:1")
    assert not bot_store.claim("msg:o:1")
    bot_store.finish("msg:o:1", "<xml>reply</xml>")
    assert bot_store.await_reply("msg:o:1", timeout=1) == (DONE, "<xml>reply</xml>")


def test_a_retry_on_another_node_waits_for_the_first_reply(bot_store, other_node):
    assert bot_store.claim("msg:o:2")
    timer = threading.Timer(0.5, bot_store.finish, ("msg:o:2", "<xml>first</xml>"))
    timer.start()
    started = time.monotonic()
    outcome = other_node.await_reply("msg:o:2", timeout=4)
    timer.join()
    assert outcome == (DONE, "<xml>first</xml>")
    assert 0.4 < time.monotonic() - started < 3  # it waited for the first node rather than answering itself


def test_a_retry_waits_no_longer_than_its_budget(bot_store, other_node):
    assert bot_store.claim("msg:o:3")
    assert other_node.await_reply("msg:o:3", timeout=0.3) == (WAITING, None)  # the owner is alive: no takeover


def test_a_claim_left_by_a_dead_worker_expires(bot_store, other_node):
    bot_store.beat("node-a:999:dead")  # a worker that beat once, then was killed
    assert bot_store.claim("msg:o:4", owner="node-a:999:dead")
    assert not other_node.claim("msg:o:4")  # still fresh
    started = time.monotonic()
    outcome = other_node.await_reply("msg:o:4", timeout=OWNER_STALE_SECONDS + 3)
    assert outcome == (CLAIMED, None)  # the retry answers it itself
    assert OWNER_STALE_SECONDS - 1 < time.monotonic() - started < OWNER_STALE_SECONDS + 2.5
    other_node.finish("msg:o:4", "<xml>second</xml>")
    assert bot_store.stored_reply("msg:o:4") == ("done", "<xml>second</xml>")


def test_one_concurrent_claimer_wins(bot_store, other_node):
    wins = []

    def claim(store):
        if store.claim("msg:o:5"):
            wins.append(store.node)

    threads = [threading.Thread(target=claim, args=(s,)) for s in [bot_store, other_node] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1


def test_a_members_answers_remembered_at_once_on_two_nodes_all_succeed(bot_store, other_node):
    # two of one member's messages answered together: each remembers its answer for 有用/没用 feedback
    from bot.curation.store import CurationStore

    stores = [CurationStore(bot_store.engine), CurationStore(other_node.engine)]
    failures, barrier = [], threading.Barrier(8)

    def remember(store, i):
        barrier.wait()
        try:
            for j in range(5):
                store.set_pending("member-hash", {"answer": i * 10 + j})
        except Exception as exc:  # noqa: BLE001 - the test collects what failed
            failures.append(exc)

    threads = [threading.Thread(target=remember, args=(stores[i % 2], i)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert stores[1].pending("member-hash", max_age=60)["answer"] in {i * 10 + 4 for i in range(8)}
    stores[0].set_pending("member-hash", None)
    assert stores[1].pending("member-hash", max_age=60) is None


def test_a_message_is_logged_once_whichever_node_logs_it(bot_store, other_node):
    assert log(bot_store, "msg:o:6")
    assert not log(other_node, "msg:o:6")
    assert log(other_node, None) and log(other_node, None)  # entries without a message key are all kept
    assert bot_store.count_logged("msg:o:6") == 1
    assert bot_store.count_logged() == 3


def test_a_members_log_names_the_node(bot_store, other_node):
    log(bot_store, "msg:o_user:7", "第一个问题")
    log(other_node, "msg:o_user:8", "第二个问题")
    other_node.log_query(channel="wechat", user="o_else", question="别人的问题", kind="answer", abstained=False,
                         top_doc=None, top_section=None, confidence=None, latency_ms=1.0, index_version=None)
    entries = bot_store.recent_queries(user="o_user")
    assert [(e.question, e.node, e.tier) for e in entries] == [("第二个问题", "node-b", "answer"),
                                                               ("第一个问题", "node-a", "answer")]
    assert entries[0].to_json()["node"] == "node-b"


def test_rate_limits_count_every_node(bot_store, other_node):
    admitted = []

    def send(store):
        if not store.hit_rate_limit("o_fast", limit=5):
            admitted.append(store.node)

    threads = [threading.Thread(target=send, args=(s,)) for s in [bot_store, other_node] * 6]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 5
    assert other_node.hit_rate_limit("o_fast", limit=5)


def test_follow_up_state_is_shared(bot_store, other_node):
    bot_store.set_state("o_user", {"question": "海燕归巢计划", "shown": 1})
    assert other_node.get_state("o_user", max_age=60) == {"question": "海燕归巢计划", "shown": 1}
    other_node.set_state("o_user", {"question": "海燕归巢计划", "shown": 3})
    assert bot_store.get_state("o_user", max_age=60)["shown"] == 3


def test_settings_audit_and_batches(bot_store, other_node):
    bot_store.set_setting("seeded", "1")
    other_node.set_setting("seeded", "2")
    assert bot_store.setting("seeded") == "2"
    other_node.audit("admin", "activate", "v1", "serving")
    assert bot_store.audit_log(limit=1)[0]["action"] == "activate"
    batch = bot_store.create_batch("set.jsonl", ["v1"])
    other_node.update_batch(batch, state="done", done=3, total=3)
    assert bot_store.get_batch(batch)["state"] == "done"
    assert [b["id"] for b in other_node.recent_batches()] == [batch]


def test_a_queued_job_is_claimed_by_exactly_one_node(bot_store, other_node, tmp_path):
    nodes = [Jobs(bot_store, tmp_path, {}), Jobs(other_node, tmp_path, {})]
    with bot_store.engine.begin() as conn:
        conn.execute(db.jobs.insert().values(state="queued", requested_by="t", created=time.time()))
    claimed = []

    def claim(jobs):
        job = jobs.claim_next()
        if job is not None:
            claimed.append((job, jobs.node))

    threads = [threading.Thread(target=claim, args=(j,)) for j in nodes * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == 1
    job = nodes[0].get(claimed[0][0])
    assert job["state"] == "running" and job["node"] == claimed[0][1]


def test_a_job_on_another_node_fails_when_its_heartbeat_stops(bot_store, other_node, tmp_path):
    with other_node.engine.begin() as conn:
        fresh = conn.execute(db.jobs.insert().values(state="running", requested_by="t", created=time.time(),
                                                     node="node-b", pid=1, heartbeat=time.time())).inserted_primary_key[0]
        stale = conn.execute(db.jobs.insert().values(state="running", requested_by="t", created=time.time() - 600,
                                                     node="node-b", pid=1, heartbeat=time.time() - 600)
                             ).inserted_primary_key[0]
    jobs = Jobs(bot_store, tmp_path, {})
    assert jobs.get(fresh)["state"] == "running"  # pid 1 means nothing here: the heartbeat decides
    assert jobs.get(stale)["state"] == "failed"


def test_two_nodes_asked_to_reindex_at_once_start_one_job(bot_store, other_node, tmp_path, monkeypatch):
    spawned = []
    monkeypatch.setattr(Jobs, "_spawn", lambda self, job_id: spawned.append((job_id, self.node)))
    nodes = [Jobs(bot_store, tmp_path, {}), Jobs(other_node, tmp_path, {})]
    results = []
    threads = [threading.Thread(target=lambda j=j: results.append(j.start("admin"))) for j in nodes * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({job for job, _ in results}) == 1  # every caller got the one job
    assert [new for _, new in results].count(True) == 1
    assert len(spawned) == 1 and spawned[0][0] == results[0][0]


def test_an_upsert_inserts_updates_only_the_named_columns_and_returns_only_what_it_inserted(bot_store):
    with bot_store.engine.begin() as conn:  # "user" and "key" are reserved words on PostgreSQL: quoted
        db.upsert(conn, db.user_state, {"user": "o_1", "data": "{}", "updated": 1.0}, "user", update=["data"])
        db.upsert(conn, db.user_state, {"user": "o_1", "data": '{"a": 1}', "updated": 2.0}, "user", update=["data"])
        row = conn.execute(text("SELECT data, updated FROM user_state")).one()
        assert (row.data, row.updated) == ('{"a": 1}', 1.0)
        first = db.upsert(conn, db.replies, {"key": "k", "state": "pending", "created": 1.0, "owner": "w"}, "key",
                          returning="key").all()
        again = db.upsert(conn, db.replies, {"key": "k", "state": "done", "created": 2.0, "owner": "v"}, "key",
                          returning="key").all()
        assert [r[0] for r in first] == ["k"] and again == []
        assert conn.execute(text("SELECT state, owner FROM replies")).one() == ("pending", "w")


def test_a_logged_question_sets_the_members_state_even_when_its_message_was_logged_before(bot_store):
    first = bot_store.log_query(channel="wechat", user="o_user", question="问一", kind="answer", abstained=False,
                                top_doc=None, top_section=None, confidence=0.9, latency_ms=5.0, index_version="v1",
                                msg_key="m1", state={"question": "问一", "shown": 1})
    again = bot_store.log_query(channel="wechat", user="o_user", question="问二", kind="answer", abstained=False,
                                top_doc=None, top_section=None, confidence=0.9, latency_ms=5.0, index_version="v1",
                                msg_key="m1", state={"question": "问二", "shown": 2})
    assert first is not None and again is None  # the message is logged once
    assert bot_store.get_state("o_user", max_age=60) == {"question": "问二", "shown": 2}
    assert [e.question for e in bot_store.recent_queries()] == ["问一"]


def test_a_worker_starting_while_another_fills_a_fresh_database_waits_for_wal_mode(tmp_path):
    """SQLite changes a database's journal mode without waiting on the busy timeout: a second worker's
    connection, made while the first writes to a fresh (not yet WAL) database, failed at once with
    "database is locked" and the worker did not start."""
    import sqlite3

    path = tmp_path / "bot.sqlite3"
    first = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    first.execute("BEGIN IMMEDIATE")
    first.execute("CREATE TABLE filling (x)")
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # the plain change gives up at once
        sqlite3.connect(path, timeout=30, isolation_level=None).execute("PRAGMA journal_mode=WAL")
    threading.Timer(0.5, lambda: first.execute("COMMIT")).start()
    started = time.monotonic()
    with db.make_engine(f"sqlite:///{path}").connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert 0.4 < time.monotonic() - started < 10
    first.close()
