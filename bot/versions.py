"""The serving index version of a cluster, published in the shared database.

Why the database rather than a ``CURRENT`` file in a shared folder: every node already holds a connection
to it and reads it on every message; an activation is one row committed in a transaction (atomic,
ordered, with when and which node), which also keeps the history a rollback and pruning need; and a
network file system caches file attributes for seconds, so a replaced file is not seen everywhere at
once. The index files themselves stay in a folder every node reads (``INDEX_DIR``): they are large
arrays that each node memory-maps, not rows.

Nodes poll (``Engine`` re-reads the pointer at most every ``POLL_SECONDS``, and a background thread
asks every ``POLL_SECONDS`` too), so an activation serves everywhere within a few seconds without a
failed request: the new version loads beside the old one, then is swapped in.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import select

from bot.db import index_activations
from bot.store import BotStore
from index.store import FilePointer

POLL_SECONDS = 2.0


class DatabasePointer:
    """``index.store.VersionPointer`` on the ``index_activations`` table: the newest row serves.
    A store that has no row yet (an instance from before) reads the ``CURRENT`` file beside the versions."""

    def __init__(self, store: BotStore, root: Path, max_age: float = 1.0) -> None:
        self.store = store
        self.legacy = FilePointer(root)
        self.max_age = max_age  # a read is reused this long (every request asks; the database need not)
        self._cached: tuple[float, str | None] | None = None

    def read(self) -> str | None:
        cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < self.max_age:
            return cached[1]
        history = self.history(limit=1)
        version = history[0] if history else self.legacy.read()
        self._cached = (time.monotonic(), version)
        return version

    def write(self, version: str) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(index_activations.insert().values(version=version, at=time.time(), node=self.store.node))
        self._cached = (time.monotonic(), version)
        self.legacy.write(version)  # a readable mirror for someone looking at the folder; never read back

    def history(self, limit: int = 10) -> list[str]:
        with self.store.engine.connect().execution_options(readonly=True) as conn:
            rows = conn.execute(select(index_activations.c.version)
                                .order_by(index_activations.c.id.desc()).limit(limit)).scalars().all()
        return list(rows)
