"""The SQLite store shared by worker processes."""

import subprocess
import sys

from tests.conftest import ROOT

INIT = """
import sys
sys.path.insert(0, {root!r})
from pathlib import Path
from bot.store import BotStore
store = BotStore(Path({db!r}))
print(store.hash_user("o_same"))
"""


def test_workers_starting_together_share_one_schema_and_salt(tmp_path):
    db = tmp_path / "bot.sqlite3"
    code = INIT.format(root=str(ROOT), db=str(db))
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-500:] for _, err in results]
    assert len({out.strip() for out, _ in results}) == 1  # one salt: the same user hashes alike everywhere
