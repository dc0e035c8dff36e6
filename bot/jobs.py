"""Re-index jobs: one at a time, run as a child process, progress and outcome in SQLite.

A build runs in its own process (``flask index build --job ID``) so that it cannot stall the web
workers and so that killing it, at any point, only loses the build: the serving version stays, and
leftovers are removed at the next start. Any worker can report a job's state; one whose process is gone
without finishing is marked failed.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from bot.store import BotStore

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
ACTIVE = ("queued", "running")
FORWARDED_SETTINGS = ("EMBED_MODEL", "EMBED_BACKEND", "CHUNK_TARGET_CHARS", "CORPUS_DIR", "INDEX_KEEP", "SYNONYMS_FILE",
                      "LEARNED_MODELS")


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie has exited


class Jobs:
    def __init__(self, store: BotStore, instance_path: Path, config: dict) -> None:
        self.store = store
        self.instance_path = Path(instance_path)
        self.config = config
        self._children: dict[int, subprocess.Popen] = {}

    def start(self, who: str) -> tuple[int, bool]:
        """Start a re-index unless one is under way. Returns (job id, whether it is new)."""
        self._reap()
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT id, pid, created FROM jobs WHERE state IN ('queued', 'running') ORDER BY id DESC LIMIT 1"
            ).fetchone()
            if row and (process_alive(row[1]) or (row[1] is None and time.time() - row[2] < 30)):
                return row[0], False
            if row:
                db.execute("UPDATE jobs SET state = 'failed', error = ?, finished = ? WHERE id = ?",
                           ("构建进程意外中止", time.time(), row[0]))
            job_id = int(db.execute("INSERT INTO jobs (state, requested_by, created) VALUES ('queued', ?, ?)",
                                    (who, time.time())).lastrowid or 0)
        logs = self.instance_path / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "FLASK_INSTANCE_PATH": str(self.instance_path)}
        for name in FORWARDED_SETTINGS:
            if self.config.get(name) is not None:
                env[f"FLASK_{name}"] = str(self.config[name])
        with open(logs / f"job-{job_id}.log", "ab") as out:
            child = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "server", "index", "build", "--job", str(job_id)],
                cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._children[job_id] = child
        self.update(job_id, pid=child.pid)
        log.info("re-index job %s started by %s (pid %s)", job_id, who, child.pid)
        return job_id, True

    def _reap(self) -> None:
        for job_id, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[job_id]

    def update(self, job_id: int, **fields: object) -> None:
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self.store.transaction() as db:
            db.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*fields.values(), job_id))

    def get(self, job_id: int) -> dict | None:
        self._reap()
        row = self.store.connection().execute(
            "SELECT id, state, done, total, version, error, pid, requested_by, created, finished "
            "FROM jobs WHERE id = ?", (job_id,),
        ).fetchone()
        if row is None:
            return None
        job = dict(zip(("id", "state", "done", "total", "version", "error", "pid", "requested_by", "created",
                        "finished"), row, strict=True))
        stale = job["state"] == "running" or (job["state"] == "queued" and time.time() - job["created"] > 30)
        if job["state"] in ACTIVE and stale and not process_alive(job["pid"]):
            self.update(job_id, state="failed", error="构建进程意外中止", finished=time.time())
            job.update(state="failed", error="构建进程意外中止")
        return {
            "id": job["id"], "state": job["state"], "progress": {"done": job["done"], "total": job["total"]},
            "version": job["version"], "error": job["error"], "requested_by": job["requested_by"],
            "created": job["created"], "finished": job["finished"],
        }

    def wait(self, job_id: int, timeout: float = 600.0) -> dict | None:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job is None or job["state"] not in ACTIVE or time.monotonic() > deadline:
                return job
            time.sleep(0.2)
