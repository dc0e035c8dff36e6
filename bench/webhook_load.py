"""Signed WeChat messages against a real gunicorn (2 workers) over loopback.

    .venv/bin/python -m bench.webhook_load [--messages 200] [--senders 20] [--instance DIR]

Sends ``--messages`` text messages from ``--senders`` concurrent threads; a third of them are
re-deliveries of an earlier message (same MsgId), as WeChat sends when it misses a reply. Checks that
every response is valid reply XML and that each distinct message was answered and logged once, and
prints latency percentiles. The instance folder must hold a built index (``make index``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from deploy.ports import free_port
from tests.wechat_client import TOKEN, message_xml, sign

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LoadResult:
    sent: int
    distinct: int
    invalid: list[str]
    latencies_ms: list[float]
    logged: dict[str, int]  # question -> rows in the query log
    expected: dict[str, int]  # question -> distinct messages carrying it

    def percentile(self, p: float) -> float:
        values = sorted(self.latencies_ms)
        return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def start_gunicorn(instance: Path, port: int, workers: int = 2) -> subprocess.Popen:
    env = {**os.environ, "FLASK_INSTANCE_PATH": str(instance), "FLASK_WECHAT_TOKEN": TOKEN,
           "FLASK_WECHAT_RATE_LIMIT": "100000", "HF_HUB_OFFLINE": "1"}
    gunicorn = Path(sys.executable).parent / "gunicorn"
    proc = subprocess.Popen(
        [str(gunicorn), "--workers", str(workers), "--bind", f"127.0.0.1:{port}", "--timeout", "60",
         'server:create_app({"PRELOAD": True})'],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    healthy = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("gunicorn exited: " + proc.stderr.read().decode()[-2000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                healthy = healthy + 1 if r.status == 200 else 0
        except OSError:
            healthy = 0
        if healthy >= 4:  # several answers in a row: both workers are likely up
            return proc
        time.sleep(0.5)
    stop(proc)
    raise RuntimeError("gunicorn did not become healthy in 120 s")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_load(port: int, questions: list[str], instance: Path, messages: int = 200, senders: int = 20,
             seed: int = 7) -> LoadResult:
    rng = random.Random(seed)
    distinct = messages - messages // 3
    bodies = []
    expected: dict[str, int] = {}
    for i in range(distinct):
        question = f"{questions[i % len(questions)]}（{i}）"
        expected[question] = expected.get(question, 0) + 1
        bodies.append(message_xml("text", user=f"o_load_{i % 50}", msg_id=9_000_000 + i, Content=question))
    plan = bodies + [rng.choice(bodies[: max(1, len(bodies) // 2)]) for _ in range(messages - distinct)]
    rng.shuffle(plan)

    def send(body: str) -> tuple[float, str]:
        ts, nonce = str(int(time.time())), str(rng.randrange(10**9))
        url = (f"http://127.0.0.1:{port}/wechat?signature={sign(TOKEN, ts, nonce)}&timestamp={ts}"
               f"&nonce={nonce}&openid=x")
        started = time.perf_counter()
        request = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "text/xml"})
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
        return (time.perf_counter() - started) * 1000, text

    with ThreadPoolExecutor(max_workers=senders) as pool:
        results = list(pool.map(send, plan))
    invalid = []
    for _, text in results:
        try:
            root = ET.fromstring(text)
            if root.findtext("MsgType") != "text" or not root.findtext("Content"):
                invalid.append(text[:200])
        except ET.ParseError:
            invalid.append(text[:200])
    db = sqlite3.connect(instance / "bot.sqlite3")
    logged: dict[str, int] = {}
    for (question,) in db.execute("SELECT question FROM query_log WHERE channel = 'wechat'"):
        logged[question] = logged.get(question, 0) + 1
    db.close()
    return LoadResult(sent=len(plan), distinct=distinct, invalid=invalid,
                      latencies_ms=[ms for ms, _ in results], logged=logged, expected=expected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--instance", type=Path, default=ROOT / "instance")
    parser.add_argument("--questions", type=Path, default=ROOT.parent / "shared" / "eval" / "dev.jsonl")
    args = parser.parse_args()
    questions = [json.loads(line)["q"] for line in args.questions.read_text(encoding="utf-8").splitlines() if line]
    with tempfile.TemporaryDirectory() as tmp:
        # a scratch copy of the instance keeps the load test's log out of the real one
        instance = Path(tmp) / "instance"
        subprocess.run(["cp", "-a", str(args.instance), str(instance)], check=True)
        (instance / "bot.sqlite3").unlink(missing_ok=True)
        port = free_port()
        proc = start_gunicorn(instance, port)
        try:
            result = run_load(port, questions, instance, args.messages, args.senders)
        finally:
            stop(proc)
    once = all(result.logged.get(q, 0) == n for q, n in result.expected.items())
    print(f"sent {result.sent} ({result.distinct} distinct, {result.sent - result.distinct} re-deliveries), "
          f"{args.senders} senders, 2 workers")
    print(f"invalid replies: {len(result.invalid)}; every distinct message logged once: {once}")
    print(f"latency ms: p50 {result.percentile(50):.1f}  p90 {result.percentile(90):.1f}  "
          f"p99 {result.percentile(99):.1f}  max {max(result.latencies_ms):.1f}")


if __name__ == "__main__":
    main()
