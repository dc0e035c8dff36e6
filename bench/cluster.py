"""The cluster through nginx: req/s and p99 at 32 and 128 senders with 1 and 2 nodes, and the time of a
re-index job idle and under a 32-sender load (deploy.cluster: PostgreSQL, gunicorn nodes, nginx).

    .venv/bin/python -m bench.cluster [--instance instance] [--seconds 15]

Writes its section of BENCHMARKS.md. Every node runs on the same cores here, so a second node adds no
capacity on this machine: the figures show the cost of the proxy and the shared store, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import ROOT, SHARED, percentile, write_section
from deploy.cluster import Cluster
from deploy.ports import consecutive_free_ports, free_port
from deploy.postgres import Postgres
from tests.wechat_client import TOKEN, message_xml, sign

ADMIN = "bench-admin"
SENDERS = (32, 128)


def questions() -> list[str]:
    return [json.loads(line)["q"] for line in (SHARED / "eval" / "dev.jsonl").read_text("utf-8").splitlines()]


def load(cluster: Cluster, senders: int, seconds: float, offset: int, stop: threading.Event | None = None) -> dict:
    """Distinct signed messages from ``senders`` threads for ``seconds``: req/s, p50/p99 ms, errors."""
    qs = questions()
    stop_at = time.monotonic() + seconds
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = [offset]

    def sender(_: int) -> None:
        rng = random.Random(_)
        while time.monotonic() < stop_at and not (stop and stop.is_set()):
            with lock:
                counter[0] += 1
                n = counter[0]
            body = message_xml("text", user=f"o_bench_{n % 500}", msg_id=5_000_000_000 + n,
                               Content=f"{qs[n % len(qs)]}（{n}）")
            ts, nonce = str(int(time.time())), str(rng.randrange(10**9))
            url = cluster.url(f"/wechat?signature={sign(TOKEN, ts, nonce)}&timestamp={ts}&nonce={nonce}&openid=x")
            started = time.perf_counter()
            try:
                request = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "text/xml"})
                with urllib.request.urlopen(request, timeout=60) as response:
                    ok = response.status == 200 and b"<Content>" in response.read()
            except OSError:
                ok = False
            with lock:
                if ok:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    errors[0] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(sender, range(senders)))
    elapsed = time.monotonic() - started
    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99), "errors": errors[0]}


def reindex_seconds(cluster: Cluster) -> float:
    """A re-index job through the admin API, every node's embedding cache emptied first."""
    for name in cluster.node_names():
        shutil.rmtree(cluster.folder / name / "cache", ignore_errors=True)
    auth = {"Authorization": f"Bearer {ADMIN}"}
    request = urllib.request.Request(cluster.url("/admin/api/reindex"), data=b"", headers=auth, method="POST")
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=30) as response:
        job = json.loads(response.read())["job"]
    while True:
        with urllib.request.urlopen(urllib.request.Request(cluster.url(f"/admin/api/jobs/{job}"), headers=auth),
                                    timeout=30) as response:
            state = json.loads(response.read())
        if state["state"] == "done":
            return time.monotonic() - started
        if state["state"] == "failed":
            raise RuntimeError(f"re-index failed: {state['error']}")
        time.sleep(0.5)


def run(instance: Path, seconds: float = 15.0, corpus: Path = SHARED / "docs") -> list[str]:
    """The table, and a re-index of ``corpus`` (default: the 19 documents of ../shared/docs) idle and loaded."""
    corpus_name = f"{len([p for p in corpus.iterdir() if p.is_file()])} documents of {corpus.name}/"
    rows, builds = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        folder = Path(tmp)
        pg = Postgres(folder / "pg", free_port())
        pg.init()
        pg.start()
        try:
            for nodes in (1, 2):
                root = folder / f"nodes{nodes}"
                (root / "shared").mkdir(parents=True)
                shutil.copytree(instance / "indexes", root / "shared" / "indexes")
                (root / "shared" / "models").symlink_to((instance / "models").resolve(), target_is_directory=True)
                cluster = Cluster(root, nodes=nodes, proxy_port=free_port(),
                                  first_node_port=consecutive_free_ports(nodes),
                                  database_url=pg.create_database(f"bench{nodes}"),
                                  env={"FLASK_WECHAT_TOKEN": TOKEN, "FLASK_WECHAT_RATE_LIMIT": "1000000",
                                       "FLASK_ADMIN_TOKEN": ADMIN, "FLASK_CORPUS_DIR": str(corpus)})
                try:
                    try:
                        cluster.up(build=False)
                    except RuntimeError as exc:  # keep the nodes' logs: the scratch folder goes with the run
                        stamp = time.strftime("%Y%m%d-%H%M%S")
                        kept = ROOT / "instance" / "bench-logs" / f"cluster-{nodes}-nodes-{stamp}"
                        shutil.copytree(cluster.logs, kept, dirs_exist_ok=True)
                        raise RuntimeError(f"{exc}; the logs are kept in {kept}") from exc
                    for senders in SENDERS:
                        r = load(cluster, senders, seconds, offset=nodes * 10_000_000 + senders * 100_000)
                        rows.append(f"| {nodes} | {senders} | {r['requests']} | {r['rps']:.1f} | {r['p50']:.0f} | "
                                    f"{r['p99']:.0f} | {r['errors']} | {_load_average()} |")
                    if nodes == 2:
                        builds["idle"] = reindex_seconds(cluster)
                        stop = threading.Event()
                        loader = threading.Thread(target=load, args=(cluster, 32, 3600, 90_000_000, stop))
                        loader.start()
                        time.sleep(3)  # the load is under way before the build starts
                        try:
                            builds["loaded"] = reindex_seconds(cluster)
                        finally:
                            stop.set()
                            loader.join()
                finally:
                    cluster.down()
        finally:
            pg.stop()
    lines = ["", "## Cluster: nginx in front of gunicorn nodes (2 workers each) on one PostgreSQL, same 2 cores", "",
             f"Distinct signed WeChat messages through the proxy for {seconds:.0f} s per row. Both nodes share "
             "this machine's 2 cores, so a second node adds no capacity here (it adds a second copy of the model "
             "and index in memory); across machines each node brings its own cores.", "",
             "| nodes | senders | answered | req/s | p50 ms | p99 ms | errors | load average after |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += rows
    if builds:
        lines += ["", f"Re-index of {corpus_name} (a job through the admin API, embedding cache emptied, "
                      f"`BUILD_THREADS=1`): idle {builds['idle']:.1f} s; under a 32-sender load "
                      f"through the proxy {builds['loaded']:.1f} s."]
    return lines


def _load_average() -> str:
    """The 1-minute load average: above 2 on these 2 cores, other work shared the machine during the row."""
    return Path("/proc/loadavg").read_text().split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instance", type=Path, default=ROOT / "instance", help="a built instance folder")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--corpus", type=Path, default=SHARED / "docs", help="documents the timed re-index builds")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    lines = run(args.instance.resolve(), args.seconds, args.corpus.resolve())
    print("\n".join(lines))
    write_section(args.out, lines)


if __name__ == "__main__":
    main()
