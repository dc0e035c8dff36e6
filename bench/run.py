"""`make bench`: start-up, answer latency by stage, HTTP under load, build throughput -> BENCHMARKS.md.

Every timing is the median of repeated runs with its spread (min–max). Runs in a scratch instance folder
(the model conversion is shared with ./instance/models). Not part of `make test`: figures, not checks.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
REPEATS = 3


def median_spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def rss_mb() -> float:
    """Current resident memory (ru_maxrss would carry the parent's peak across exec on Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), "0")
    import faiss
    import numpy
    import sentence_transformers
    import torch

    return [
        f"- date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}",
        f"- machine: {os.cpu_count()} cores ({cpu}), {int(mem) // 1024 // 1024} GiB, {platform.platform()}",
        f"- python {platform.python_version()}, torch {torch.__version__}, sentence-transformers "
        f"{sentence_transformers.__version__}, faiss {faiss.__version__}, numpy {numpy.__version__}",
    ]


def make_app(instance: Path, backend: str):
    from server import create_app

    return create_app({"INSTANCE_PATH": str(instance), "EMBED_BACKEND": backend})


def bench_startup_and_latency(instance: Path, backend: str, questions: list[str]) -> list[str]:
    """In a child process per repeat, so model and index load from cold each time."""
    code = f"""
import json, sys, time
sys.path.insert(0, {str(ROOT)!r})
t0 = time.perf_counter()
from bench.run import make_app, rss_mb
from index.embed import set_threads
set_threads(1)  # as a serving worker
app = make_app(__import__("pathlib").Path({str(instance)!r}), {backend!r})
engine = app.extensions["engine"]
t1 = time.perf_counter(); engine.embedder(); t2 = time.perf_counter(); engine.current_index(); t3 = time.perf_counter()
questions = json.loads({json.dumps(questions, ensure_ascii=False)!r})
first = engine.answerer.answer(questions[0]); t4 = time.perf_counter()
stages = {{"tokenize": [], "embed": [], "search": [], "fuse": [], "render": [], "total": []}}
for _ in range(5):
    for q in questions:
        a = engine.answerer.answer(q)
        for k in ("tokenize", "embed", "search", "fuse"):
            stages[k].append(a.timings_ms.get(k, 0.0))
        stages["render"].append(max(0.0, a.elapsed_ms - sum(a.timings_ms.values())))
        stages["total"].append(a.elapsed_ms)
print(json.dumps({{"import_app": t1 - t0, "model": t2 - t1, "index": t3 - t2, "first": t4 - t3,
                   "rss_mb": rss_mb(), "stages": stages}}))
"""
    runs = []
    for _ in range(REPEATS):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    lines = [
        f"| {backend} | {median_spread([r['model'] * 1000 for r in runs])} | "
        f"{median_spread([r['index'] * 1000 for r in runs])} | {median_spread([r['first'] * 1000 for r in runs])} | "
        f"{median_spread([r['rss_mb'] for r in runs])} |"
    ]
    stage_lines = []
    for stage in ("tokenize", "embed", "search", "fuse", "render", "total"):
        p50 = [percentile(r["stages"][stage], 50) for r in runs]
        p99 = [percentile(r["stages"][stage], 99) for r in runs]
        stage_lines.append(f"| {backend} | {stage} | {median_spread(p50)} | {median_spread(p99)} |")
    return lines + ["STAGES"] + stage_lines


def bench_http(instance: Path, backend: str, questions: list[str]) -> list[str]:
    from bench.webhook_load import free_port, start_gunicorn, stop
    from tests.wechat_client import TOKEN, message_xml, sign

    os.environ["FLASK_EMBED_BACKEND"] = backend
    port = free_port()
    proc = start_gunicorn(instance, port)
    rows = []
    try:
        for concurrency in (1, 8, 32):
            for kind in ("wechat", "api"):
                from concurrent.futures import ThreadPoolExecutor

                count = 60 * max(1, concurrency // 4) if concurrency > 1 else 60
                errors = 0
                latencies: list[float] = []

                def send(i: int, kind: str = kind, concurrency: int = concurrency,
                         latencies: list[float] = latencies) -> None:
                    nonlocal errors
                    q = questions[i % len(questions)]
                    if kind == "wechat":
                        ts, nonce = str(int(time.time())), str(i)
                        url = (f"http://127.0.0.1:{port}/wechat?signature={sign(TOKEN, ts, nonce)}"
                               f"&timestamp={ts}&nonce={nonce}")
                        msg_id = 7_000_000 + i + concurrency * 100_000
                        body = message_xml("text", user=f"o_bench_{i % 500}", msg_id=msg_id, Content=q).encode()
                    else:
                        url = f"http://127.0.0.1:{port}/api/ask"
                        body = json.dumps({"q": q}).encode()
                    started = time.perf_counter()
                    try:
                        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as r:
                            r.read()
                            if r.status != 200:
                                errors += 1
                    except OSError:
                        errors += 1
                    latencies.append((time.perf_counter() - started) * 1000)

                started = time.perf_counter()
                with ThreadPoolExecutor(max_workers=concurrency) as pool:
                    list(pool.map(send, range(count)))
                elapsed = time.perf_counter() - started
                rows.append(f"| {backend} | {kind} | {concurrency} | {count} | {count / elapsed:.0f} | "
                            f"{percentile(latencies, 50):.1f} | {percentile(latencies, 99):.1f} | {errors} |")
    finally:
        stop(proc)
    return rows


def bench_build(instance: Path, backend: str) -> list[str]:
    """Full build and a re-index after one changed document, on the government work reports."""
    app = make_app(instance, backend)
    engine = app.extensions["engine"]
    from index.ingest import clean

    reports = [json.loads(line) for line in
               (SHARED / "bench" / "state_council_gov_work_reports_1954-2022.jsonl").read_text("utf-8").splitlines()]
    docs = [clean(r["text"], doc_id=f"report-{r['year']}", source=f"{r['year']}.txt") for r in reports]
    for d, r in zip(docs, reports, strict=True):
        d.title = r.get("title") or f"{r['year']}年政府工作报告"
    chars = sum(len(d.text) for d in docs)
    with app.app_context():
        engine.embedder()
        started = time.perf_counter()
        version = engine.store.build(docs, engine.embedder(), cache=engine.cache)
        full = time.perf_counter() - started
        chunks = engine.store.manifest(version)["counts"]["chunks"]
        docs[-1] = clean(docs[-1].text.replace("。", "。 ", 1) + "\n本段为基准测试新增内容。\n", doc_id=docs[-1].doc_id)
        started = time.perf_counter()
        version2 = engine.store.build(docs, engine.embedder(), cache=engine.cache)
        incremental = time.perf_counter() - started
        embedded = engine.store.manifest(version2)["counts"]["embedded"]
    return [f"| {backend} | {len(docs)} | {chars:,} | {chunks} | {full:.1f} | {chunks / full:.1f} | "
            f"{chars / full:,.0f} | {incremental:.1f} | {embedded} |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["onnx", "torch"])
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-peer", action="store_true")
    args = parser.parse_args()
    questions = [json.loads(line)["q"] for line in (SHARED / "eval" / "dev.jsonl").read_text("utf-8").splitlines()]
    models = ROOT / "instance" / "models"
    models.mkdir(parents=True, exist_ok=True)
    out = ["# Benchmarks", "", "Written by `make bench` (bench/run.py). Medians of repeated runs, spread in brackets.",
           ""]
    out += machine()
    startup, stages, http, build = [], [], [], []
    for backend in args.backends:
        with tempfile.TemporaryDirectory() as tmp:
            instance = Path(tmp) / "instance"
            instance.mkdir()
            (instance / "models").symlink_to(models, target_is_directory=True)
            app = make_app(instance, backend)
            with app.app_context():
                app.extensions["engine"].build()
            result = bench_startup_and_latency(instance, backend, questions)
            cut = result.index("STAGES")
            startup += result[:cut]
            stages += result[cut + 1:]
            http += bench_http(instance, backend, questions)
            if not args.skip_build:
                shutil.rmtree(instance / "cache", ignore_errors=True)
                build += bench_build(instance, backend)
            print(f"{backend}: done", file=sys.stderr)
    out += ["", "## Start-up (first document; ms, RSS in MB)", "",
            "| back end | model load | index load | first answer | resident memory |",
            "| --- | --- | --- | --- | --- |"]
    out += startup
    out += ["", "## `answer()` latency on the first document (ms, 48 dev questions × 5)", "",
            "| back end | stage | p50 | p99 |", "| --- | --- | --- | --- |"]
    out += stages
    out += ["", "## HTTP: gunicorn, 2 workers, loopback (load generator on the same 2 cores)", "",
            "| back end | endpoint | concurrency | requests | req/s | p50 ms | p99 ms | errors |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    out += http
    if build:
        out += ["", "## Build: 53 government work reports (1954–2022)", "",
                "| back end | documents | characters | chunks | full build s | chunks/s | chars/s | "
                "re-index after one changed document s | passages re-embedded |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        out += build
    if not args.skip_scale:
        from bench import scale

        scale.cached_vectors(scale.corpus_chunks(max(scale.SIZES)), scale.embedder())
        out += ["", "## Scale: chunks of ../shared/bench/*.jsonl (1M: the 100k repeated), one worker thread", "",
                f"`answer()` over the {len(scale.questions())} questions of ../shared/eval (dev, docs-dev, DomainRAG), "
                "ONNX back end; resident memory of the whole process.", ""]
        out += scale.markdown(scale.run_all())
        r = scale.reindex(10_000)
        out += ["", f"Re-index through `IndexStore.build` at {r['chunks']:,} chunks ({r['documents']:,} documents, "
                    f"vectors cached): full build {r['full_from_cache_s']} s; after one changed document "
                    f"{r['reindex_s']} s, {r['embedded']} passages re-embedded."]
    if not args.skip_peer:
        from bench import peer

        out += ["", "## Peer: txtai hybrid, same model and passages (search only, one thread)", ""]
        out += peer.run()
    out.append("")
    args.out.write_text("\n".join(out), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
