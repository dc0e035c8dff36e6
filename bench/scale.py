"""Scale: answer latency, memory and ANN recall at 1k, 10k, 100k and 1M chunks of real text.

The chunks come from ../shared/bench/*.jsonl (regulations, news items, government work reports),
cleaned and chunked like any uploaded document, documents in a fixed shuffled order so every size mixes
the three corpora. Their vectors come from the real model (the ONNX back end) and are cached by content
hash in instance/bench-cache, so only the first run embeds (about an hour for 100k chunks on 2 cores).
1M chunks repeat the 100k ten times, text and vectors alike.

Each size is served by the same HybridSearcher the bot uses, with the FAISS index type that
``index.dense`` chooses for that size; where that is an approximate index, recall@10 is measured
against exact search over the same vectors, on the questions of ../shared/eval.

    python -m bench.scale --embed-only     # fill the vector cache (resumable)
    python -m bench.scale                  # measure; prints a Markdown section for BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CORPORA = ("lawrefbook_local_regulations.jsonl", "xinwenlianbo_items.jsonl",
           "state_council_gov_work_reports_1954-2022.jsonl")
SIZES = (1_000, 10_000, 100_000)
REPEAT_TO = 1_000_000
CACHE = ROOT / "instance" / "bench-cache" / "scale-vectors.sqlite"
CHUNKS_FILE = ROOT / "instance" / "bench-cache" / "scale-chunks.jsonl"


def documents() -> Iterator[tuple[str, str, str]]:
    """(doc_id, title, text) of every item in the bench corpora, in a fixed shuffled order."""
    items = []
    for name in CORPORA:
        with open(SHARED / "bench" / name, encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                title = row.get("title") or f"{row.get('year', '')}年政府工作报告"
                items.append((str(row["id"]), title, row["text"]))
    random.Random(20261125).shuffle(items)
    yield from items


def corpus_chunks(limit: int) -> list:
    """The first ``limit`` chunks (cached as JSONL: cleaning and chunking 100k chunks takes minutes)."""
    from index.chunk import Chunk, chunk_document
    from index.ingest import IngestError, clean

    if CHUNKS_FILE.exists():
        with open(CHUNKS_FILE, encoding="utf-8") as fh:
            cached = [Chunk.from_dict(json.loads(line)) for _, line in zip(range(limit), fh, strict=False)]
        if len(cached) >= limit:
            return cached
    chunks = []
    for doc_id, title, text in documents():
        try:
            doc = clean(text, doc_id=doc_id)
        except IngestError:
            continue
        doc.title = title
        chunks += chunk_document(doc)
        if len(chunks) >= limit:
            break
    chunks = chunks[:limit]
    CHUNKS_FILE.parent.mkdir(parents=True, exist_ok=True)
    tmp = CHUNKS_FILE.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for c in chunks:
            fh.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
    tmp.replace(CHUNKS_FILE)
    return chunks


def embedder(threads: int = 2):
    from index.bundled_model import BUNDLED_MODEL_NAME
    from index.embed import ONNX_SUFFIX, resolve_model_path
    from index.onnx_model import OnnxEmbedder, export_int8

    models = ROOT / "instance" / "models"
    path = Path(resolve_model_path(BUNDLED_MODEL_NAME, models))
    folder = export_int8(path, models / (path.name + ONNX_SUFFIX))
    return OnnxEmbedder(BUNDLED_MODEL_NAME + ONNX_SUFFIX, folder, threads=threads)


def cached_vectors(chunks: list, model, progress: bool = True) -> np.ndarray:
    """Vectors of the chunks' index text, embedding (and caching) only those not cached yet."""
    from index.embed_cache import EmbeddingCache
    from index.store import _embed

    cache = EmbeddingCache(CACHE)
    started = time.perf_counter()
    last = [-1]

    def report(done: int, total: int) -> None:
        if progress and (done == total or done - last[0] >= 2048):
            last[0] = done
            rate = done / max(1e-9, time.perf_counter() - started)
            print(f"embedded {done}/{total} ({rate:.0f}/s incl. cache hits)", file=sys.stderr, flush=True)

    try:
        vectors, _ = _embed([c.context_text() for c in chunks], model, cache, report)
    finally:
        cache.close()
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embed-only", action="store_true", help="fill the vector cache and stop")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    chunks = corpus_chunks(max(SIZES))
    print(f"{len(chunks)} chunks", file=sys.stderr)
    vectors = cached_vectors(chunks, embedder(args.threads))
    if args.embed_only:
        return
    print(vectors.shape)


if __name__ == "__main__":
    main()
