"""A PostgreSQL server in a local data folder, for tests (throw-away) and ``make cluster``.

Debian's server binaries (``apt-get install -y postgresql``) live in /usr/lib/postgresql/<major>/bin.
``initdb`` and ``pg_ctl`` refuse to run as root: as root they run as an unprivileged user (``postgres``,
which the Debian package creates, or ``PG_USER``), and the data folder is handed to that user. The server
listens on loopback only, with ``trust`` authentication: a local development and test server.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class PostgresError(RuntimeError):
    pass


def bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        path = shutil.which("initdb")
        if path is None:
            raise PostgresError("PostgreSQL server binaries not found: apt-get install -y postgresql")
        return Path(path).parent
    return Path(found[-1]).parent


def run_as() -> str | None:
    """The user to run the server as: None when not root, else PG_USER or ``postgres``."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("PG_USER", "postgres")
    try:
        pwd.getpwnam(name)
    except KeyError as exc:
        raise PostgresError(f"running as root needs an unprivileged user {name!r} for PostgreSQL "
                            "(apt-get install -y postgresql creates one; or set PG_USER)") from exc
    return name


def _command(args: list[str]) -> list[str]:
    user = run_as()
    return ["runuser", "-u", user, "--", *args] if user else args


@dataclass
class Postgres:
    data: Path
    port: int
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{name}"

    def init(self) -> None:
        """initdb into ``data`` unless it holds a cluster already."""
        if (self.data / "PG_VERSION").exists():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        user = run_as()
        if user:
            entry = pwd.getpwnam(user)
            os.chown(self.data, entry.pw_uid, entry.pw_gid)
            for parent in self.data.parents:  # the user must be able to reach its folder
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)
        subprocess.run(_command([str(bin_dir() / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                                 "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self, max_connections: int = 200) -> None:
        options = (f"-c listen_addresses={self.host} -c port={self.port} -c unix_socket_directories={self.data} "
                   f"-c max_connections={max_connections} -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c shared_buffers=64MB")
        subprocess.run(_command([str(bin_dir() / "pg_ctl"), "-D", str(self.data), "-l", str(self.data / "server.log"),
                                 "-o", options, "-w", "-t", "60", "start"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.wait()

    def wait(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(host=self.host, port=self.port, user="postgres", dbname="postgres"):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(_command([str(bin_dir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
                           check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def create_database(self, name: str) -> str:
        """A new empty database; its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)
