"""The soak: many signed WeChat messages from many members, a third of them re-deliveries, against a real
gunicorn (2 workers) -> every MsgId answered once and logged once, with no errors.

    .venv/bin/python -m bench.soak [--messages 10000] [--members 500] [--senders 32]

`make bench` runs it as a step (bench/run.py; `--only-soak` runs just this step and rewrites its section of
BENCHMARKS.md). Each distinct message carries its own question text, so the query log shows whether it
was answered once. "Answered once" means: every delivery of one MsgId got the same reply bytes (the
first delivery's reply, replayed), addressed to its sender, and the dedupe table holds one finished row
per MsgId. An error is anything else: a non-200, a connection failure, a body that is not reply XML.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sqlite3
import statistics
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.webhook_load import start_gunicorn, stop
from deploy.ports import free_port
from tests.wechat_client import TOKEN, message_xml, sign

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Soak: signed WeChat messages against gunicorn"
FIRST_MSG_ID = 8_100_000_000_000_000_000


@dataclass
class SoakResult:
    messages: int
    distinct: int
    members: int
    senders: int
    seconds: float
    latencies_ms: list[float]
    errors: list[str] = field(default_factory=list)
    replies_differ: list[int] = field(default_factory=list)  # MsgIds whose deliveries got different replies
    still_working: int = 0  # re-deliveries that waited past the reply budget for the first one
    logged_wrong: list[str] = field(default_factory=list)  # questions not logged exactly once
    dedupe_rows: int = 0  # finished rows in the dedupe table for the soak's MsgIds
    date: str = field(default_factory=lambda: time.strftime("%Y-%m-%d", time.gmtime()))

    @property
    def answered_once(self) -> bool:
        return not self.replies_differ and self.dedupe_rows == self.distinct

    def percentile(self, p: float) -> float:
        values = sorted(self.latencies_ms)
        return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def plan(messages: int, members: int, questions: list[str], seed: int = 15) -> list[tuple[int, str, str]]:
    """(MsgId, sender, body) for every delivery, shuffled: a third are re-deliveries of earlier messages."""
    rng = random.Random(seed)
    distinct = messages - messages // 3
    firsts = []
    for i in range(distinct):
        user = f"o_soak_{i % members:04d}"
        msg_id = FIRST_MSG_ID + i
        body = message_xml("text", user=user, msg_id=msg_id, Content=f"{questions[i % len(questions)]}（{i}）")
        firsts.append((msg_id, user, body))
    deliveries = firsts + [rng.choice(firsts) for _ in range(messages - distinct)]
    rng.shuffle(deliveries)
    return deliveries


def run_soak(port: int, instance: Path, questions: list[str], messages: int = 10_000, members: int = 500,
             senders: int = 32) -> SoakResult:
    deliveries = plan(messages, members, questions)
    distinct = len({msg_id for msg_id, _, _ in deliveries})

    def send(delivery: tuple[int, str, str]) -> tuple[int, str, float, str | None]:
        msg_id, user, body = delivery
        ts, nonce = str(int(time.time())), str(random.randrange(10**9))
        path = f"/wechat?signature={sign(TOKEN, ts, nonce)}&timestamp={ts}&nonce={nonce}&openid={user}"
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", path, body=body.encode(), headers={"Content-Type": "text/xml"})
            response = conn.getresponse()
            text = response.read().decode()
            conn.close()
        except OSError as exc:
            return msg_id, "", (time.perf_counter() - started) * 1000, f"{msg_id}: {exc.__class__.__name__}: {exc}"
        ms = (time.perf_counter() - started) * 1000
        if response.status != 200:
            return msg_id, text, ms, f"{msg_id}: HTTP {response.status} {text[:100]}"
        try:
            root = ET.fromstring(text)
        except ET.ParseError:
            return msg_id, text, ms, f"{msg_id}: not XML: {text[:100]}"
        if root.findtext("ToUserName") != user or root.findtext("MsgType") != "text" or not root.findtext("Content"):
            return msg_id, text, ms, f"{msg_id}: not a text reply to {user}: {text[:100]}"
        return msg_id, text, ms, None

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=senders) as pool:
        outcomes = list(pool.map(send, deliveries))
    seconds = time.perf_counter() - started

    result = SoakResult(messages=len(deliveries), distinct=distinct, members=members, senders=senders,
                        seconds=seconds, latencies_ms=[ms for _, _, ms, _ in outcomes],
                        errors=[error for _, _, _, error in outcomes if error])
    bodies: dict[int, set[str]] = {}
    for msg_id, text, _, error in outcomes:
        if error is None:
            bodies.setdefault(msg_id, set()).add(text)  # a replayed reply is the stored bytes
            result.still_working += "请稍等几秒后再发送“更多”" in text
    result.replies_differ = sorted(msg_id for msg_id, seen in bodies.items() if len(seen) > 1)

    expected = {f"{questions[i % len(questions)]}（{i}）" for i in range(distinct)}
    db = sqlite3.connect(instance / "bot.sqlite3")
    logged: dict[str, int] = {}
    for (question,) in db.execute("SELECT question FROM query_log WHERE channel = 'wechat'"):
        logged[question] = logged.get(question, 0) + 1
    result.logged_wrong = sorted(q for q in expected if logged.get(q) != 1) + sorted(set(logged) - expected)
    (result.dedupe_rows,) = db.execute(
        "SELECT COUNT(*) FROM replies WHERE key LIKE 'msg:o_soak_%' AND state = 'done'").fetchone()
    db.close()
    return result


def run(instance: Path, messages: int = 10_000, members: int = 500, senders: int = 32) -> SoakResult:
    """The soak against a copy of ``instance`` (it must hold a built index), in a fresh gunicorn."""
    questions = [json.loads(line)["q"] for line in
                 (ROOT.parent / "shared" / "eval" / "dev.jsonl").read_text("utf-8").splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "instance"
        _copy_instance(instance, scratch)
        port = free_port()
        proc = start_gunicorn(scratch, port)
        try:
            return run_soak(port, scratch, questions, messages, members, senders)
        finally:
            stop(proc)


def _copy_instance(source: Path, target: Path) -> None:
    import shutil

    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns("bot.sqlite3*"))


def markdown(r: SoakResult) -> list[str]:
    status = "yes" if r.answered_once else f"no ({len(r.replies_differ)} MsgIds differ, {r.dedupe_rows} rows)"
    logged = "yes" if not r.logged_wrong else f"no ({len(r.logged_wrong)} questions)"
    return [
        "", SECTION, "",
        f"`bench.soak` ({r.date}): {r.messages:,} text messages from {r.members} members, "
        f"{r.messages - r.distinct:,} of them "
        f"re-deliveries of an earlier MsgId (shuffled in), {r.senders} concurrent senders, 2 gunicorn workers on "
        "the first document, rate limit off. Answered once: every delivery of a MsgId got the same reply, "
        "addressed to its sender, and the dedupe table holds one finished row per MsgId.",
        "",
        "| messages | distinct MsgIds | members | senders | errors | answered once | logged once | "
        "re-deliveries told to wait | seconds | messages/s | p50 ms | p99 ms | max ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {r.messages:,} | {r.distinct:,} | {r.members} | {r.senders} | {len(r.errors)} | {status} | {logged} | "
        f"{r.still_working} | {r.seconds:.1f} | {r.messages / r.seconds:.0f} | {r.percentile(50):.1f} | "
        f"{r.percentile(99):.1f} | {max(r.latencies_ms):.1f} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--instance", type=Path, default=ROOT / "instance")
    args = parser.parse_args()
    result = run(args.instance, args.messages, args.members, args.senders)
    print("\n".join(markdown(result)))
    for error in result.errors[:10]:
        print("error:", error)
    print(f"p50 {statistics.median(result.latencies_ms):.1f} ms; errors {len(result.errors)}; "
          f"answered once {result.answered_once}; logged once {not result.logged_wrong}")


if __name__ == "__main__":
    main()
