"""A real gunicorn with 2 workers: 200 signed messages, 20 senders, a third re-deliveries."""

import json
import shutil

from bench.webhook_load import run_load, start_gunicorn, stop
from deploy.ports import free_port
from tests.conftest import SHARED


def test_two_workers_answer_every_message_once(built_instance, tmp_path):
    instance = tmp_path / "instance"
    shutil.copytree(built_instance, instance, symlinks=True)
    (instance / "bot.sqlite3").unlink(missing_ok=True)
    questions = [json.loads(line)["q"] for line in (SHARED / "eval" / "dev.jsonl").read_text("utf-8").splitlines()]
    port = free_port()
    proc = start_gunicorn(instance, port)
    try:
        result = run_load(port, questions, instance, messages=200, senders=20)
    finally:
        stop(proc)
    assert result.sent == 200 and result.distinct == 134
    assert result.invalid == []
    assert result.logged == result.expected  # each distinct message answered and logged exactly once
