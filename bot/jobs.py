"""Re-index jobs: one at a time across every node, run as a child process, progress and outcome in the store.

A build runs in its own process (``flask index build --job ID``) so that it cannot stall the web
workers and so that killing it, at any point, only loses the build: the serving version stays, and
leftovers are removed at the next start. A queued job is claimed by exactly one node (``claim_next``).
Any worker of any node can report a job's state; one whose process is gone without finishing (its pid on
the node that runs it, its heartbeat elsewhere) is marked failed.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select, update

from bot.db import advisory_lock, jobs
from bot.store import BotStore

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
ACTIVE = ("queued", "running")
DIED = "构建进程意外中止"
JOB_STALE_SECONDS = 30.0  # a build on another node that has not beaten for this long is taken for dead
FORWARDED_SETTINGS = ("EMBED_MODEL", "EMBED_BACKEND", "CHUNK_TARGET_CHARS", "CORPUS_DIR", "INDEX_KEEP", "SYNONYMS_FILE",
                      "LEARNED_MODELS", "DATABASE_URL", "INDEX_DIR", "DOCUMENTS_DIR", "BUILD_THREADS", "BUILD_NICE")


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

    @property
    def node(self) -> str:
        return self.store.node

    def start(self, who: str) -> tuple[int, bool]:
        """Start a re-index unless one is under way on any node. Returns (job id, whether it is new)."""
        self._reap()
        engine = self.store.engine
        with engine.begin() as conn:
            advisory_lock(conn, "jobs:start")  # two nodes asked at once: one inserts, the other sees it
            row = conn.execute(select(jobs).where(jobs.c.state.in_(ACTIVE)).order_by(jobs.c.id.desc())
                               .limit(1)).mappings().first()
            if row and self._alive(row):
                return row["id"], False
            if row:
                conn.execute(update(jobs).where(jobs.c.id == row["id"])
                             .values(state="failed", error=DIED, finished=time.time()))
            job_id = int(conn.execute(jobs.insert().values(state="queued", requested_by=who, created=time.time()))
                         .inserted_primary_key[0])  # type: ignore[index]
        claimed = self.claim_next()
        if claimed is None:  # another node took it first (it runs it)
            return job_id, True
        self._spawn(claimed)
        log.info("re-index job %s started by %s on %s", claimed, who, self.node)
        return job_id, True

    def claim_next(self) -> int | None:
        """Claim the oldest queued job for this node: exactly one claimer gets each job
        (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's write lock does the same)."""
        with self.store.engine.begin() as conn:
            job_id = conn.execute(select(jobs.c.id).where(jobs.c.state == "queued").order_by(jobs.c.id).limit(1)
                                  .with_for_update(skip_locked=True)).scalar()
            if job_id is None:
                return None
            conn.execute(update(jobs).where(jobs.c.id == job_id)
                         .values(state="running", node=self.node, heartbeat=time.time()))
            return int(job_id)

    def _spawn(self, job_id: int) -> None:
        logs = self.instance_path / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        threads = str(self.config.get("BUILD_THREADS") or 1)
        env = {**os.environ, "FLASK_INSTANCE_PATH": str(self.instance_path), "FLASK_NODE_NAME": self.node,
               # the build's thread budget, for libraries that read it only when they load (BLAS, OpenMP)
               "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
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

    def _alive(self, job) -> bool:  # type: ignore[no-untyped-def]
        """Whether an active job's build is still going: its process, on this node; its heartbeat elsewhere."""
        now = time.time()
        if job["node"] == self.node and job["pid"]:
            return process_alive(job["pid"])
        last = max(job["heartbeat"] or 0.0, job["created"])
        return now - last < JOB_STALE_SECONDS

    def _reap(self) -> None:
        for job_id, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[job_id]

    def update(self, job_id: int, **fields: object) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**fields))

    def beat(self, job_id: int) -> None:
        """The build process says it is alive (every few seconds), for nodes that cannot see its pid."""
        self.update(job_id, heartbeat=time.time())

    def get(self, job_id: int) -> dict | None:
        self._reap()
        with self.store.engine.connect().execution_options(readonly=True) as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
        if row is None:
            return None
        job = dict(row)
        if job["state"] in ACTIVE and not self._alive(job):
            self.update(job_id, state="failed", error=DIED, finished=time.time())
            job.update(state="failed", error=DIED)
        return {
            "id": job["id"], "state": job["state"], "progress": {"done": job["done"], "total": job["total"]},
            "version": job["version"], "error": job["error"], "requested_by": job["requested_by"],
            "created": job["created"], "finished": job["finished"], "node": job["node"],
        }

    def wait(self, job_id: int, timeout: float = 600.0) -> dict | None:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job is None or job["state"] not in ACTIVE or time.monotonic() > deadline:
                return job
            time.sleep(0.2)
