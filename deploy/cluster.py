"""A cluster on one machine: PostgreSQL, app nodes (gunicorn) and nginx in front, all on loopback.

    .venv/bin/python -m deploy.cluster up      # make cluster
    .venv/bin/python -m deploy.cluster down    # make cluster-down
    .venv/bin/python -m deploy.cluster status

Layout under the cluster folder (default ``instance/cluster``)::

    postgres/          the PostgreSQL data folder (the shared store)
    shared/            what every node reads: indexes/ (versions), documents/, models/ (the converted model)
    node1/, node2/     each node's own instance folder (logs, embedding cache, question sets)
    run/               pid files: nginx.pid, node1.pid, node2.pid (gunicorn masters); nginx temp folders
    logs/              nginx and gunicorn logs
    nginx.conf

nginx retries a request on the other node when a node fails (``proxy_next_upstream error timeout
non_idempotent``): WeChat messages and ``/api/ask`` are POSTs, which nginx does not retry unless told to;
retrying is safe here because replies are deduplicated by MsgId in the shared store.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from deploy.postgres import Postgres

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "zhengce"

NGINX_CONF = """\
{user}worker_processes 1;
pid {run}/nginx.pid;
error_log {logs}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {logs}/nginx-access.log;
    client_body_temp_path {run}/nginx-body;
    proxy_temp_path {run}/nginx-proxy;
    fastcgi_temp_path {run}/nginx-fastcgi;
    uwsgi_temp_path {run}/nginx-uwsgi;
    scgi_temp_path {run}/nginx-scgi;
    client_max_body_size 25m;

    upstream bot {{
{servers}
        keepalive 32;
    }}
    server {{
        listen {host}:{port};
        location / {{
            proxy_pass http://bot;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            # a node that dies or stalls: the request (POSTs too) goes to the next node
            proxy_next_upstream error timeout non_idempotent;
            proxy_next_upstream_tries 2;
            proxy_connect_timeout 2s;
            proxy_read_timeout 20s;
        }}
    }}
}}
"""


@dataclass
class Cluster:
    folder: Path
    nodes: int = 2
    proxy_port: int = 8080
    first_node_port: int = 8081
    pg_port: int = 55432
    workers: int = 2
    host: str = "127.0.0.1"
    database_url: str | None = None  # an existing database (tests); None: the cluster's own PostgreSQL
    env: dict[str, str] = field(default_factory=dict)  # extra settings for every node (FLASK_…)

    @property
    def run_dir(self) -> Path:
        return self.folder / "run"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    @property
    def shared(self) -> Path:
        return self.folder / "shared"

    @property
    def postgres(self) -> Postgres:
        return Postgres(self.folder / "postgres", self.pg_port, self.host)

    def node_names(self) -> list[str]:
        return [f"node{i + 1}" for i in range(self.nodes)]

    def node_port(self, name: str) -> int:
        return self.first_node_port + self.node_names().index(name)

    def url(self, path: str = "") -> str:
        return f"http://{self.host}:{self.proxy_port}{path}"

    def node_url(self, name: str, path: str = "") -> str:
        return f"http://{self.host}:{self.node_port(name)}{path}"

    # ------------------------------------------------------------------ pieces

    def db_url(self) -> str:
        return self.database_url or self.postgres.database_url(DATABASE)

    def start_postgres(self) -> None:
        if self.database_url:
            return
        pg = self.postgres
        pg.init()
        if not (pg.data / "postmaster.pid").exists():
            pg.start()
        import psycopg

        with psycopg.connect(host=pg.host, port=pg.port, user="postgres", dbname="postgres", autocommit=True) as c:
            if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
                c.execute(f'CREATE DATABASE "{DATABASE}"')

    def node_env(self, name: str) -> dict[str, str]:
        instance = self.folder / name
        return {**os.environ, "FLASK_INSTANCE_PATH": str(instance), "DATABASE_URL": self.db_url(),
                "FLASK_NODE_NAME": name, "FLASK_INDEX_DIR": str(self.shared / "indexes"),
                "FLASK_DOCUMENTS_DIR": str(self.shared / "documents"), "HF_HUB_OFFLINE": "1", **self.env}

    def prepare(self) -> None:
        """Folders, each node's instance with the shared model folder linked in."""
        for path in (self.run_dir, self.logs, self.shared / "indexes", self.shared / "documents",
                     self.shared / "models"):
            path.mkdir(parents=True, exist_ok=True)
        for name in self.node_names():
            instance = self.folder / name
            instance.mkdir(parents=True, exist_ok=True)
            if not (instance / "models").exists():
                (instance / "models").symlink_to(self.shared / "models", target_is_directory=True)

    def build_index_if_missing(self) -> None:
        name = self.node_names()[0]
        subprocess.run([sys.executable, "-m", "flask", "--app", "server", "index", "build", "--if-missing"],
                       cwd=ROOT, env=self.node_env(name), check=True)

    def start_node(self, name: str) -> None:
        gunicorn = Path(sys.executable).parent / "gunicorn"
        pid_file = self.run_dir / f"{name}.pid"
        pid_file.unlink(missing_ok=True)
        with open(self.logs / f"{name}.log", "ab") as out:
            subprocess.Popen(
                [str(gunicorn), "--workers", str(self.workers), "--bind", f"{self.host}:{self.node_port(name)}",
                 "--timeout", "60", "--graceful-timeout", "10", "--pid", str(pid_file),
                 'server:create_app({"PRELOAD": True})'],
                cwd=ROOT, env=self.node_env(name), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: kill_node takes the master and its workers
            )

    def node_pids(self, name: str) -> list[int]:
        """The node's gunicorn master and its workers."""
        master = read_pid(self.run_dir / f"{name}.pid")
        if master is None:
            return []
        pids = [master]
        for child in Path("/proc").glob("[0-9]*"):
            try:
                if int((child / "stat").read_text().rsplit(")", 1)[1].split()[1]) == master:
                    pids.append(int(child.name))
            except (OSError, ValueError, IndexError):
                continue
        return pids

    def kill_node(self, name: str, sig: int = signal.SIGKILL) -> None:
        """``kill -9`` a node: its master and every worker at once (a machine that died)."""
        master = read_pid(self.run_dir / f"{name}.pid")
        if master is not None:
            try:
                os.killpg(os.getpgid(master), sig)
            except ProcessLookupError:
                pass
            if sig == signal.SIGKILL:
                (self.run_dir / f"{name}.pid").unlink(missing_ok=True)

    def stop_node(self, name: str) -> None:
        pid_file = self.run_dir / f"{name}.pid"
        master = read_pid(pid_file)
        if master is None:
            return
        try:
            os.kill(master, signal.SIGTERM)
        except ProcessLookupError:
            pid_file.unlink(missing_ok=True)
            return
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process_alive(master):
            time.sleep(0.2)
        if process_alive(master):
            self.kill_node(name)
        pid_file.unlink(missing_ok=True)

    def write_nginx_conf(self) -> Path:
        servers = "\n".join(f"        server {self.host}:{self.node_port(n)} max_fails=1 fail_timeout=5s;"
                            for n in self.node_names())
        user = "user root root;\n" if os.geteuid() == 0 else ""
        conf = self.folder / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, run=self.run_dir, logs=self.logs, servers=servers,
                                          host=self.host, port=self.proxy_port), encoding="utf-8")
        return conf

    def start_nginx(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise RuntimeError("nginx not found: apt-get install -y nginx")
        conf = self.write_nginx_conf()
        subprocess.run([nginx, "-p", str(self.folder), "-c", str(conf), "-e", str(self.logs / "nginx-error.log")],
                       check=True)

    def stop_nginx(self) -> None:
        pid = read_pid(self.run_dir / "nginx.pid")
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGQUIT)  # graceful: finish the requests in flight
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process_alive(pid):
            time.sleep(0.1)
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)

    def wait_healthy(self, url: str, timeout: float = 300.0, times: int = 3) -> None:
        deadline = time.monotonic() + timeout
        healthy = 0
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=3) as r:
                    healthy = healthy + 1 if r.status == 200 else 0
            except OSError:
                healthy = 0
            if healthy >= times:  # several answers in a row: every worker is likely up
                return
            time.sleep(0.5)
        raise RuntimeError(f"{url} did not become healthy in {timeout:.0f} s (see {self.logs})")

    # ------------------------------------------------------------------- whole

    def up(self, build: bool = True) -> None:
        self.prepare()
        self.start_postgres()
        if build:
            self.build_index_if_missing()
        for name in self.node_names():
            if read_pid(self.run_dir / f"{name}.pid") is None:
                self.start_node(name)
        for name in self.node_names():
            self.wait_healthy(self.node_url(name, "/healthz"))
        if read_pid(self.run_dir / "nginx.pid") is None:
            self.start_nginx()
        self.wait_healthy(self.url("/healthz"))

    def down(self) -> None:
        self.stop_nginx()
        for name in self.node_names():
            self.stop_node(name)
        if not self.database_url:
            self.postgres.stop()


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid) else None


def process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def main() -> None:
    parser = argparse.ArgumentParser(description="A local cluster: PostgreSQL, app nodes, nginx.")
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--folder", type=Path, default=Path(os.environ.get("CLUSTER_DIR", ROOT / "instance/cluster")))
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "2")))
    args = parser.parse_args()
    cluster = Cluster(args.folder.resolve(), nodes=args.nodes, workers=args.workers)
    if args.action == "up":
        cluster.up()
        print(f"cluster up: nginx {cluster.url()} -> " + ", ".join(cluster.node_url(n) for n in cluster.node_names())
              + f"; PostgreSQL {cluster.db_url()}; pid files in {cluster.run_dir}")
    elif args.action == "down":
        cluster.down()
        print("cluster down")
    else:
        for name in cluster.node_names():
            print(name, cluster.node_pids(name) or "stopped")
        print("nginx", read_pid(cluster.run_dir / "nginx.pid") or "stopped")


if __name__ == "__main__":
    main()
