"""Scale: answer latency, memory and ANN recall at 1k, 10k, 100k and 1M chunks of real text.

The chunks come from ../shared/bench/*.jsonl (regulations, news items, government work reports),
cleaned and chunked like any uploaded document, documents in a fixed shuffled order so every size mixes
the three corpora. Their vectors, and their sentences' vectors (``index.sentences``), come from the real
model (the ONNX back end) and are cached by content hash in instance/bench-cache, so only the first run
embeds (about an hour for 100k chunks on 2 cores, and about as long again for their sentences).
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
import subprocess
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
REINDEX_SIZE = 10_000  # the re-index run's library, in chunks
CACHE = ROOT / "instance" / "bench-cache" / "scale-vectors.sqlite"
CHUNKS_FILE = ROOT / "instance" / "bench-cache" / "scale-chunks.jsonl"
TOKENS_FILE = ROOT / "instance" / "bench-cache" / "scale-tokens.jsonl"
BIGRAMS_FILE = ROOT / "instance" / "bench-cache" / "scale-bigrams.jsonl"


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


def cleaned_documents() -> Iterator:
    """The bench documents cleaned like uploads (those with no usable text skipped), titled from the data."""
    from index.ingest import IngestError, clean

    for doc_id, title, text in documents():
        try:
            doc = clean(text, doc_id=doc_id)
        except IngestError:
            continue
        doc.title = title
        yield doc


def corpus_chunks(limit: int) -> list:
    """The first ``limit`` chunks (cached as JSONL: cleaning and chunking 100k chunks takes minutes)."""
    from index.chunk import Chunk, chunk_document

    if CHUNKS_FILE.exists():
        with open(CHUNKS_FILE, encoding="utf-8") as fh:
            cached = [Chunk.from_dict(json.loads(line)) for _, line in zip(range(limit), fh, strict=False)]
        if len(cached) >= limit:
            return cached
    chunks = []
    for doc in cleaned_documents():
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


def cached_vectors(texts: list[str], model, progress: bool = True, with_tokens: bool = False) -> np.ndarray:
    """Vectors of ``texts``, embedding (and caching) only those not cached yet; ``with_tokens``: their token
    vectors cached too (what an index build reads)."""
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
        vectors = _embed(texts, model, cache, report, with_tokens=with_tokens)[0]
    finally:
        cache.close()
    return vectors


def fill_cache(chunks: list, model) -> None:
    """Embed (once, into the cache) every passage text and sentence text the scale runs will read, and the
    token vectors of the re-index run's passages (an index build reads them; the searchers here do not).
    Those passages go first, so that each is embedded once, with its tokens."""
    from index.sentences import sentence_texts

    _, reindexed = reindex_library(REINDEX_SIZE)
    cached_vectors([c.context_text() for c in reindexed], model, with_tokens=True)
    cached_vectors([c.context_text() for c in chunks], model)
    cached_vectors([t for c in chunks for t in sentence_texts(c)], model)


def cached_sentences(base: list, model, copies: int = 1, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The sentence vectors of ``base`` (from the cache) and each passage's offsets into them, repeated
    ``copies`` times as the chunks are: what ``index.sentences.SentenceIndex`` is built from."""
    from index.sentences import sentence_texts

    per_chunk = [sentence_texts(c) for c in base]
    vectors = cached_vectors([t for texts in per_chunk for t in texts], model, progress)
    counts = np.tile([len(texts) for texts in per_chunk], copies)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return (np.tile(vectors, (copies, 1)) if copies > 1 else vectors), offsets


def cached_references(model) -> tuple[np.ndarray, np.ndarray]:
    """The everyday and errand references' vectors (index.calibration), from the cache as a build reads them."""
    from index.calibration import errand_questions, everyday_questions
    from index.embed_cache import EmbeddingCache
    from index.store import _embed_queries

    cache = EmbeddingCache(CACHE)
    try:
        return _embed_queries(everyday_questions(), model, cache), _embed_queries(errand_questions(), model, cache)
    finally:
        cache.close()


def cached_tokens(chunks: list, tokenizer, path: Path | None = None) -> list[list[str]]:
    """Search tokens of the chunks (cached as JSONL beside the chunks, a list of words a passage);
    with ``path`` = BIGRAMS_FILE, their character bigrams."""
    path = path or TOKENS_FILE
    split = tokenizer.bigrams if path == BIGRAMS_FILE else tokenizer.tokens
    if path.exists():
        with open(path, encoding="utf-8") as fh:
            tokens = [json.loads(line) for _, line in zip(range(len(chunks)), fh, strict=False)]
        if len(tokens) == len(chunks):
            return tokens
    tokens = [split(c.context_text()) for c in chunks]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in tokens:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return tokens


def questions() -> list[str]:
    eval_dir = SHARED / "eval"
    out = [json.loads(line)["q"] for name in ("dev.jsonl", "docs-dev.jsonl")
           for line in (eval_dir / name).read_text("utf-8").splitlines() if line.strip()]
    out += [json.loads(line)["question"] for line in
            (eval_dir / "domainrag" / "domainrag.queries.jsonl").read_text("utf-8").splitlines() if line.strip()]
    return out


def recall_at_10(ann, exact, query_vectors: np.ndarray) -> float:
    """Share of the exact top 10 that the approximate index returns. Copies of one vector (the 1M set
    repeats the 100k) tie exactly, so a returned chunk counts when its score reaches the exact 10th."""
    found = []
    for q in query_vectors:
        _, truth = exact.search(q, 10)
        ids, _ = ann.search(q, 10)
        scores = exact.vectors(ids.tolist()) @ q if len(ids) else np.zeros(0)
        found.append(float(np.sum(scores >= truth[-1] - 1e-5)) / 10)
    return float(np.mean(found))


def measure(size: int) -> dict:
    """Build a searcher over ``size`` chunks and time the bot's answer() on the eval questions."""
    from bench.common import percentile, rss_mb
    from bot.answer import Answerer
    from index.bm25 import BM25Index
    from index.dense import DenseIndex
    from index.embed import set_threads
    from index.search import HybridSearcher
    from index.sentences import SentenceIndex
    from index.store import LoadedIndex
    from index.tokenize import Tokenizer, find_coined_terms

    set_threads(1)  # as one serving worker
    every = corpus_chunks(max(SIZES))
    base = every[:size]
    model = embedder(threads=1)
    base_vectors = cached_vectors([c.context_text() for c in base], model, progress=False)
    tokenizer = Tokenizer(find_coined_terms(c.text for c in every))
    base_tokens = cached_tokens(every, tokenizer)[:len(base)]
    copies = max(1, size // len(base))
    chunks, tokens = base * copies, base_tokens * copies  # the 1M set repeats the 100k (lists by reference)
    vectors = np.tile(base_vectors, (copies, 1)) if copies > 1 else base_vectors
    # every vector and token list read from its cache before the clock starts, as a re-index reads them:
    # "build" is making the indexes from them
    bigrams = cached_tokens(every, tokenizer, BIGRAMS_FILE)[:len(base)] * copies
    sentence_vectors, offsets = cached_sentences(base, model, copies, progress=False)
    everyday, errands = cached_references(model)
    started = time.perf_counter()
    dense = DenseIndex.build(vectors)
    dense_s = time.perf_counter() - started
    bm25 = BM25Index.build(tokens)
    sentences = SentenceIndex(DenseIndex.build(sentence_vectors), offsets)
    searcher = HybridSearcher(chunks, tokens, bm25, dense, model, tokenizer, bigram_bm25=BM25Index.build(bigrams),
                              sentences=sentences, everyday=everyday, errands=errands)
    build_s = time.perf_counter() - started
    # the indexes hold what they need (the searcher its words as numbers): the process's memory is the searcher's
    del sentence_vectors, bigrams, tokens, base_tokens
    index = LoadedIndex(version=f"scale-{size}", path=ROOT, manifest={}, searcher=searcher, terms=[])
    answerer = Answerer(lambda: index)
    qs = questions()
    for q in qs[:10]:
        answerer.answer(q)
    totals, dense_ms = [], []
    for q in qs:
        a = answerer.answer(q)
        totals.append(a.elapsed_ms)
    query_vectors = model.encode_queries(qs)
    for q in query_vectors:
        t0 = time.perf_counter()
        dense.search(q, 50)
        dense_ms.append((time.perf_counter() - t0) * 1000)
    result = {"size": size, "chunks": len(chunks), "kind": dense.kind, "build_s": round(build_s, 1),
              "dense_build_s": round(dense_s, 1), "p50": percentile(totals, 50), "p99": percentile(totals, 99),
              "dense_p50": percentile(dense_ms, 50), "rss_mb": round(rss_mb()), "questions": len(qs)}
    if dense.kind != "exact":
        exact = DenseIndex.build(vectors, exact_limit=len(vectors))
        result["recall10"] = recall_at_10(dense, exact, query_vectors)
    elif size >= max(SIZES):  # what the approximate index would keep at this size
        ann = DenseIndex.build(vectors, exact_limit=0)
        ann_ms = []
        for q in query_vectors:
            t0 = time.perf_counter()
            ann.search(q, 50)
            ann_ms.append((time.perf_counter() - t0) * 1000)
        result["ivf_recall10"] = recall_at_10(ann, dense, query_vectors)
        result["ivf_dense_p50"] = percentile(ann_ms, 50)
    return result


def run_all(sizes: tuple[int, ...] = (*SIZES, REPEAT_TO)) -> list[dict]:
    """Each size in a fresh process, so its resident memory is its own."""
    results = []
    for size in sizes:
        out = subprocess.run([sys.executable, "-m", "bench.scale", "--size", str(size)], cwd=ROOT,
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"scale {size}: {results[-1]}", file=sys.stderr)
    return results


def markdown(results: list[dict]) -> list[str]:
    lines = ["| chunks | dense index | build s (dense) | answer p50 ms | answer p99 ms | dense search p50 ms | "
             "recall@10 vs exact | resident MB |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        recall = f"{r['recall10']:.3f}" if "recall10" in r else "exact"
        lines.append(f"| {r['chunks']:,} | {r['kind']} | {r['build_s']} ({r['dense_build_s']}) | {r['p50']:.1f} | "
                     f"{r['p99']:.1f} | {r['dense_p50']:.2f} | {recall} | {r['rss_mb']:,} |")
    for r in results:
        if "ivf_recall10" in r:
            lines += ["", f"At {r['chunks']:,} chunks the approximate index would keep recall@10 "
                          f"{r['ivf_recall10']:.3f} at {r['ivf_dense_p50']:.2f} ms a search (exact: "
                          f"{r['dense_p50']:.2f} ms), so exact search stays up to index.dense.EXACT_LIMIT."]
    return lines


def reindex_library(size: int) -> tuple[list, list]:
    """The first documents of the corpus reaching ``size`` chunks, and their chunks: the re-index run's library."""
    from index.chunk import chunk_document

    docs, chunks = [], []
    for doc in cleaned_documents():
        docs.append(doc)
        chunks += chunk_document(doc)
        if len(chunks) >= size:
            break
    return docs, chunks


def reindex(size: int = REINDEX_SIZE) -> dict:
    """Build an index version of the first documents reaching ``size`` chunks (vectors and token vectors
    from the cache, ``fill_cache``), then re-index after one changed document: the admin's case, through
    IndexStore.build."""
    import tempfile

    from index.embed_cache import EmbeddingCache
    from index.ingest import clean
    from index.store import IndexStore

    docs, _ = reindex_library(size)
    model = embedder()
    cache = EmbeddingCache(CACHE)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = IndexStore(Path(tmp))
            started = time.perf_counter()
            first = store.build(docs, model, cache=cache)
            full = time.perf_counter() - started
            changed = docs[-1]
            added = f"\n本段为基准测试新增的一句话（{time.time_ns()}），每次不同，所以要重新嵌入。\n"
            docs[-1] = clean(changed.text + added, doc_id=changed.doc_id)
            docs[-1].title = changed.title
            started = time.perf_counter()
            second = store.build(docs, model, cache=cache)
            incremental = time.perf_counter() - started
            counts = store.manifest(second)["counts"]
            return {"documents": len(docs), "chunks": counts["chunks"], "full_from_cache_s": round(full, 1),
                    "reindex_s": round(incremental, 1), "embedded": counts["embedded"], "first": first}
    finally:
        cache.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embed-only", action="store_true", help="fill the vector cache and stop")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, help="measure one size and print it as JSON")
    args = parser.parse_args()
    if args.size:
        print(json.dumps(measure(args.size)))
        return
    fill_cache(corpus_chunks(max(SIZES)), embedder(args.threads))
    if not args.embed_only:
        print("\n".join(markdown(run_all())))


if __name__ == "__main__":
    main()

