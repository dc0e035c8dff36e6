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
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench.common import ROOT, SHARED, make_app, median_spread, percentile, write_section

REPEATS = 3
HTTP_SECONDS = 15


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


def bench_startup_and_latency(instance: Path, backend: str, questions: list[str]) -> list[str]:
    """In a child process per repeat, so model and index load from cold each time."""
    code = f"""
import json, sys, time
sys.path.insert(0, {str(ROOT)!r})
t0 = time.perf_counter()
from bench.common import make_app, rss_mb
from index.embed import set_threads
set_threads(1)  # as a serving worker
import index.search
index.search.QUERY_VECTORS_KEPT = 0  # each repeat embeds its question again, as a new question is
app = make_app(__import__("pathlib").Path({str(instance)!r}), {backend!r})
engine = app.extensions["engine"]
t1 = time.perf_counter(); engine.embedder(); t2 = time.perf_counter(); engine.current_index(); t3 = time.perf_counter()
questions = json.loads({json.dumps(questions, ensure_ascii=False)!r})
first = engine.answerer.answer(questions[0]); t4 = time.perf_counter()
stages = {{"tokenize": [], "embed": [], "search": [], "rank": [], "render": [], "total": []}}
for _ in range(5):
    for q in questions:
        a = engine.answerer.answer(q)
        for k in ("tokenize", "embed", "search", "rank"):
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
    for stage in ("tokenize", "embed", "search", "rank", "render", "total"):
        p50 = [percentile(r["stages"][stage], 50) for r in runs]
        p99 = [percentile(r["stages"][stage], 99) for r in runs]
        stage_lines.append(f"| {backend} | {stage} | {median_spread(p50)} | {median_spread(p99)} |")
    return lines + ["STAGES"] + stage_lines


def bench_http(instance: Path, backend: str, questions: list[str]) -> list[str]:
    """gunicorn (2 workers) under wrk: signed WeChat text messages and /api/ask, concurrency 1, 8, 32."""
    from bench.webhook_load import start_gunicorn, stop
    from deploy.ports import free_port
    from tests.wechat_client import TOKEN, sign

    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("make bench needs wrk for the HTTP figures: apt-get install -y wrk")
    os.environ["FLASK_EMBED_BACKEND"] = backend
    port = free_port()
    proc = start_gunicorn(instance, port)
    rows = []
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as fh:
        fh.write("\n".join(q.replace('"', "").replace("\\", "") for q in questions))
    try:
        for concurrency in (1, 8, 32):
            for kind in ("wechat", "api"):
                ts, nonce = str(int(time.time())), f"bench{concurrency}"
                url = (f"http://127.0.0.1:{port}/wechat?signature={sign(TOKEN, ts, nonce)}&timestamp={ts}"
                       f"&nonce={nonce}" if kind == "wechat" else f"http://127.0.0.1:{port}/api/ask")
                out = subprocess.run(
                    [wrk, "-t", str(min(2, concurrency)), "-c", str(concurrency), "-d", f"{HTTP_SECONDS}s",
                     "--latency", "-s", str(ROOT / "bench" / "wrk.lua"), url, "--", kind, fh.name,
                     str(int(time.time()) % 1_000_000 * 1_000_000_000)],
                    capture_output=True, text=True, check=True).stdout
                figures = parse_wrk(out)
                rows.append(f"| {backend} | {kind} | {concurrency} | {figures['requests']} | "
                            f"{figures['rate']:.0f} | {figures['p50']:.1f} | {figures['p99']:.1f} | "
                            f"{figures['errors']} |")
    finally:
        stop(proc)
        os.unlink(fh.name)
    return rows


def parse_wrk(out: str) -> dict:
    """Requests, rate, p50/p99 in ms and errors (non-2xx answers and socket errors) from wrk --latency."""
    def ms(value: str) -> float:
        number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors += sum(int(n) for n in socket.groups()) if socket else 0
    return {"requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
            "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50": ms(latency["50"]), "p99": ms(latency["99"]), "errors": errors}


def build_section(rows: list[str]) -> list[str]:
    return ["", "## Build: 53 government work reports (1954–2022)", "",
            "| back end | documents | characters | chunks | full build s | chunks/s | chars/s | "
            "re-index after one changed document s | passages re-embedded |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |", *rows]


def build_step(models: Path, backends: list[str], written: Path) -> list[str]:
    """The build rows alone, each back end on a fresh first-document instance with an empty cache; the rows
    of other back ends already in ``written`` are kept."""
    heading = build_section([])[1]
    text = written.read_text(encoding="utf-8") if written.exists() else ""
    old = text[text.index(heading):].split("\n\n## ")[0].splitlines()[4:] if heading in text else []
    rows = [row for row in old if row.startswith("| ") and row.split("|")[1].strip() not in backends]
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            instance = first_document_instance(Path(tmp), models, backend)
            shutil.rmtree(instance / "cache", ignore_errors=True)
            rows[:0] = bench_build(instance, backend)
    return build_section(rows)


def bench_build(instance: Path, backend: str) -> list[str]:
    """Full build and a re-index after one changed document, on the government work reports, with the
    sentence vectors a build makes by the settings (``SENTENCE_VECTORS``: pooled where the model has a map)."""
    app = make_app(instance, backend)
    engine = app.extensions["engine"]
    pooled = app.config["SENTENCE_VECTORS"] == "pooled"
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
        version = engine.store.build(docs, engine.embedder(), cache=engine.cache, pooled_sentences=pooled)
        full = time.perf_counter() - started
        chunks = engine.store.manifest(version)["counts"]["chunks"]
        docs[-1] = clean(docs[-1].text.replace("。", "。 ", 1) + "\n本段为基准测试新增内容。\n", doc_id=docs[-1].doc_id)
        started = time.perf_counter()
        version2 = engine.store.build(docs, engine.embedder(), cache=engine.cache, pooled_sentences=pooled)
        incremental = time.perf_counter() - started
        embedded = engine.store.manifest(version2)["counts"]["embedded"]
    return [f"| {backend} | {len(docs)} | {chars:,} | {chunks} | {full:.1f} | {chunks / full:.1f} | "
            f"{chars / full:,.0f} | {incremental:.1f} | {embedded} |"]


def soak_step(models: Path, backend: str, instance: Path | None = None) -> list[str]:
    """bench.soak against a built instance (built here, on the first document, when none is given)."""
    from bench import soak

    os.environ["FLASK_EMBED_BACKEND"] = backend
    if instance is not None:
        return soak.markdown(soak.run(instance))
    with tempfile.TemporaryDirectory() as tmp:
        return soak.markdown(soak.run(first_document_instance(Path(tmp), models, backend)))


def first_document_instance(folder: Path, models: Path, backend: str) -> Path:
    """An instance in ``folder`` with the shared models and an index of the first document."""
    instance = folder / "instance"
    instance.mkdir()
    (instance / "models").symlink_to(models, target_is_directory=True)
    app = make_app(instance, backend)
    with app.app_context():
        app.extensions["engine"].build()
    return instance


def measured(name: str, section: Callable[[], list[str]]) -> list[str]:
    """A late section's lines; when it fails, a line saying so (and the traceback on stderr) instead, so the
    sections measured before it — an hour of a full run — still reach the file."""
    try:
        return section()
    except Exception as exc:  # any failure: the other sections' figures must not be lost with it
        traceback.print_exc()
        return ["", f"## {name}", "", f"Not measured in this run: {exc.__class__.__name__}: {exc}"]


def scale_section() -> list[str]:
    from bench import scale

    scale.fill_cache(scale.corpus_chunks(max(scale.SIZES)), scale.embedder())
    out = ["", "## Scale: chunks of ../shared/bench/*.jsonl (1M: the 100k repeated), one worker thread", "",
           f"`answer()` over the {len(scale.questions())} questions of ../shared/eval (dev, docs-dev, DomainRAG), "
           "ONNX back end; resident memory of the whole process.", ""]
    out += scale.markdown(scale.run_all())
    r = scale.reindex()
    return out + ["", f"Re-index through `IndexStore.build` at {r['chunks']:,} chunks ({r['documents']:,} documents, "
                      f"vectors cached): full build {r['full_from_cache_s']} s; after one changed document "
                      f"{r['reindex_s']} s, {r['embedded']} passages re-embedded."]


def cluster_section(models: Path, backend: str) -> list[str]:
    from bench import cluster

    with tempfile.TemporaryDirectory() as tmp:
        return cluster.run(first_document_instance(Path(tmp), models, backend))


def peer_section() -> list[str]:
    from bench import peer

    return ["", "## Peer: txtai hybrid, same model and passages (search only, one thread)", "", *peer.run()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["onnx", "torch"])
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--skip-soak", action="store_true")
    parser.add_argument("--skip-cluster", action="store_true")
    parser.add_argument("--skip-curation", action="store_true")
    parser.add_argument("--only-soak", action="store_true",
                        help="run only the soak and rewrite its section of --out, keeping the rest")
    parser.add_argument("--only-scale", action="store_true",
                        help="run only the scale runs and rewrite their section of --out, keeping the rest")
    parser.add_argument("--only-build", action="store_true",
                        help="run only the builds (of --backends) and rewrite their section of --out")
    args = parser.parse_args()
    questions = [json.loads(line)["q"] for line in (SHARED / "eval" / "dev.jsonl").read_text("utf-8").splitlines()]
    models = ROOT / "instance" / "models"
    models.mkdir(parents=True, exist_ok=True)
    out = ["# Benchmarks", "", "Written by `make bench` (bench/run.py). Medians of repeated runs, spread in brackets.",
           ""]
    out += machine()
    if args.only_soak:
        write_section(args.out, soak_step(models, args.backends[0]))
        print(f"wrote the soak section of {args.out}")
        return
    if args.only_build:
        write_section(args.out, build_step(models, args.backends, args.out))
        print(f"wrote the build section of {args.out}")
        return
    if args.only_scale:
        write_section(args.out, scale_section())
        print(f"wrote the scale section of {args.out}")
        return
    startup, stages, http, build, soak_lines, curation_lines = [], [], [], [], [], []
    for backend in args.backends:
        with tempfile.TemporaryDirectory() as tmp:
            instance = first_document_instance(Path(tmp), models, backend)
            if backend == args.backends[0] and not args.skip_soak:
                soak_lines = soak_step(models, backend, instance)
            result = bench_startup_and_latency(instance, backend, questions)
            cut = result.index("STAGES")
            startup += result[:cut]
            stages += result[cut + 1:]
            http += bench_http(instance, backend, questions)
            if backend == args.backends[0] and not args.skip_curation:
                from bench import curation

                curation_lines = curation.markdown(instance)  # adds 1,000 official answers: after the HTTP rows
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
    out += ["", "## HTTP: gunicorn, 2 workers, loopback, wrk on the same 2 cores (15 s a row)", "",
            "| back end | endpoint | concurrency | requests | req/s | p50 ms | p99 ms | errors |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    out += http
    out += soak_lines
    out += curation_lines
    if build:
        out += build_section(build)
    if not args.skip_scale:
        out += measured("Scale", scale_section)
    if not args.skip_cluster:
        out += measured("Cluster", lambda: cluster_section(models, args.backends[0]))
    if not args.skip_peer:
        out += measured("Peer", peer_section)
    out.append("")
    args.out.write_text("\n".join(out), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
