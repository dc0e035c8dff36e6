"""The cluster for real: PostgreSQL (the session's throw-away server), two gunicorn nodes and nginx in
front (deploy.cluster, as `make cluster` starts them), over loopback.

- the same MsgId sent to both nodes at once gets one reply text and one log row;
- an activation on one node serves on the other within 10 s;
- `kill -9` of one node during a 32-sender load through nginx: every request is answered (nginx retries
  the other node, which takes over the dead node's claims), nothing is logged twice.
"""

from __future__ import annotations

import http.client
import random
import shutil
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, text

from deploy.cluster import Cluster
from deploy.ports import consecutive_free_ports, free_port
from tests.wechat_client import TOKEN, message_xml, sign

ADMIN = "cluster-admin"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
QUESTIONS = ["怎样防止干部带病提拔？", "海燕归巢计划是做什么的？", "年轻干部怎么培养？", "基层党组织书记怎么选？",
             "干部考核看哪些方面？", "怎样激励干部担当作为？", "人才工作有什么新举措？", "组织部门自身建设有什么要求？"]


@pytest.fixture(scope="module")
def cluster(built_instance, postgres, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster")
    (folder / "shared").mkdir()
    shutil.copytree(built_instance / "indexes", folder / "shared" / "indexes")
    (folder / "shared" / "models").symlink_to((built_instance / "models").resolve(), target_is_directory=True)
    url = postgres.create_database("cluster_test")
    cluster = Cluster(folder, proxy_port=free_port(), first_node_port=consecutive_free_ports(), database_url=url,
                      env={"FLASK_WECHAT_TOKEN": TOKEN, "FLASK_WECHAT_RATE_LIMIT": "100000",
                           "FLASK_ADMIN_TOKEN": ADMIN})
    try:
        cluster.up(build=False)
        engine = create_engine(url)
        yield cluster, engine
        engine.dispose()
    finally:
        cluster.down()


def post_message(base: str, body: str, timeout: float = 30) -> str:
    ts, nonce = str(int(time.time())), str(random.randrange(10**9))
    url = f"{base}/wechat?signature={sign(TOKEN, ts, nonce)}&timestamp={ts}&nonce={nonce}&openid=x"
    request = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "text/xml"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        assert response.status == 200
        return response.read().decode()


def content(reply: str) -> str:
    root = ET.fromstring(reply)
    assert root.findtext("MsgType") == "text"
    return root.findtext("Content") or ""


def get_json(url: str, headers: dict | None = None, data: bytes | None = None) -> dict:
    import json

    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def logged(engine, question: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM query_log WHERE question = :q"), {"q": question}).scalar_one()


def logged_errors(c: Cluster) -> str:
    """The nodes' logged errors with their tracebacks: what a failed assertion shows, to find the cause."""
    lines = []
    for log in sorted(c.logs.glob("node*.log")):
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()
        for i, line in enumerate(text):
            if "ERROR" in line or "Traceback" in line:
                lines += [f"{log.name}: {x}" for x in text[i:i + 30]]
    return "\n".join(lines[-200:])


def test_each_node_names_itself_and_serves_one_version(cluster):
    c, _ = cluster
    health = [get_json(c.node_url(name, "/healthz")) for name in c.node_names()]
    assert [h["node"] for h in health] == ["node1", "node2"]
    assert health[0]["index_version"] == health[1]["index_version"] is not None


def test_the_same_msgid_to_both_nodes_gets_one_reply_and_one_log_row(cluster):
    c, engine = cluster
    question = "怎样防止干部带病提拔？（同一条消息）"
    body = message_xml("text", user="o_both", msg_id=7_000_001, Content=question)
    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda name: post_message(c.node_url(name), body), c.node_names()))
    assert content(replies[0]) == content(replies[1])
    assert "稍等" not in content(replies[0]) and "出了点问题" not in content(replies[0])
    assert logged(engine, question) == 1
    assert content(post_message(c.url(), body)) == content(replies[0])  # a third try through nginx
    assert logged(engine, question) == 1
    entries = get_json(c.url("/admin/api/log?user=o_both"), AUTH)["entries"]
    assert [e["question"] for e in entries] == [question] and entries[0]["node"] in ("node1", "node2")


def test_an_activation_on_one_node_serves_on_the_other_within_10_s(cluster):
    c, _ = cluster
    indexes = c.shared / "indexes"
    serving = get_json(c.node_url("node2", "/healthz"))["index_version"]
    copy = f"{serving}-copy"
    shutil.copytree(indexes / serving, indexes / copy)
    try:
        started = time.monotonic()
        assert get_json(c.node_url("node1", f"/admin/api/versions/{copy}/activate"), AUTH, b"")["current"] == copy
        seen = 0
        while seen < 6 and time.monotonic() - started < 10:  # several answers in a row: both workers
            seen = seen + 1 if get_json(c.node_url("node2", "/healthz"))["index_version"] == copy else 0
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        assert seen >= 6, f"node2 did not serve {copy} within 10 s"
        assert elapsed < 10
    finally:
        get_json(c.node_url("node1", f"/admin/api/versions/{serving}/activate"), AUTH, b"")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all(get_json(c.node_url(n, "/healthz"))["index_version"] == serving for n in c.node_names() * 3):
                break
            time.sleep(0.2)


def test_killing_a_node_under_load_loses_no_request_and_logs_nothing_twice(cluster):
    c, engine = cluster
    rng = random.Random(14)
    distinct = 180
    bodies, questions = [], []
    for i in range(distinct):
        question = f"{QUESTIONS[i % len(QUESTIONS)]}（负载{i}）"
        questions.append(question)
        bodies.append(message_xml("text", user=f"o_load_{i % 40}", msg_id=8_000_000 + i, Content=question))
    plan = bodies + [rng.choice(bodies[: distinct // 2]) for _ in range(distinct // 3)]  # and re-deliveries
    rng.shuffle(plan)
    done = []
    killed = threading.Event()

    cut: list[str] = []

    def send(body: str) -> str:
        try:
            reply = post_message(c.url(), body, timeout=60)
        except (http.client.IncompleteRead, ConnectionError):
            # a reply the killed node had begun to write (nginx had passed its headers on, so it cannot try the
            # other node): WeChat sends the same message again, as it does for any reply it did not get whole
            cut.append(body)
            reply = post_message(c.url(), body, timeout=60)
        done.append(1)
        if len(done) == len(plan) // 4 and not killed.is_set():
            killed.set()
            c.kill_node("node2")  # kill -9 of the master and its workers, with requests in flight
        return reply

    with ThreadPoolExecutor(max_workers=32) as pool:
        replies = list(pool.map(send, plan))
    assert killed.is_set()
    assert len(cut) <= 32  # at most the requests in flight on the killed node
    texts = [content(r) for r in replies]
    assert all(texts)  # every request answered with a text reply
    assert not [t for t in texts if "出了点问题" in t], logged_errors(c)
    waiting = [t for t in texts if "稍等几秒" in t]  # "still looking, send 更多": answered, but not with the answer
    assert len(waiting) <= len(plan) // 20, waiting[:2]
    counts = {q: logged(engine, q) for q in questions}
    assert max(counts.values()) == 1  # nothing logged twice
    assert sum(counts.values()) >= distinct - 2  # and (almost) every message logged, on whichever node
