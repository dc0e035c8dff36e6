"""Peer comparison: txtai (PyPI) in hybrid mode beside our searcher, same model, same passages.

    .venv/bin/python -m bench.peer          # prints a Markdown section (also part of `make bench`)

Two corpora: the first document (our chunks, questions from ../shared/eval/dev.jsonl, a hit when the
passage contains a gold quote) and DomainRAG (823 passages, a hit when the id is gold). txtai gets the
same passage texts, the same model folder (sentence-transformers, with e5's query/passage prefixes) and
its default hybrid scoring (BM25 + dense). Its BM25 tokenizer splits on spaces and punctuation, as it
ships; Chinese has neither between words, which is the gap our jieba tokenizer closes.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def first_document_set() -> tuple[list, list[tuple[str, list[str] | set[str]]]]:
    from index.chunk import chunk_document
    from index.ingest import load_file

    doc = next(load_file(p) for p in sorted((ROOT / "corpus").iterdir()) if p.suffix == ".txt")
    chunks = chunk_document(doc)
    rows = [json.loads(line) for line in (SHARED / "eval" / "dev.jsonl").read_text("utf-8").splitlines() if line]
    return chunks, [(r["q"], r["gold"]) for r in rows if r["gold"]]


def domainrag_set() -> tuple[list, list[tuple[str, list[str] | set[str]]]]:
    from index.chunk import Chunk

    folder = SHARED / "eval" / "domainrag"
    passages = [json.loads(line) for line in open(folder / "domainrag.passages.jsonl", encoding="utf-8")]
    chunks = [Chunk(p["pid"], p["pid"].split("-")[0], p.get("title", ""), (), p["text"], 0, len(p["text"]))
              for p in passages]
    queries = [json.loads(line) for line in open(folder / "domainrag.queries.jsonl", encoding="utf-8")]
    return chunks, [(q["question"], set(q["gold_pids"])) for q in queries]


def is_hit(chunk, gold: list[str] | set[str]) -> bool:
    if isinstance(gold, set):
        return chunk.chunk_id in gold
    text = re.sub(r"\s", "", chunk.text)
    return any(re.sub(r"\s", "", g) in text for g in gold)


def score(ranked: list[list], questions: list) -> tuple[float, float]:
    r1 = sum(bool(r) and is_hit(r[0], gold) for r, (_, gold) in zip(ranked, questions, strict=True))
    r3 = sum(any(is_hit(c, gold) for c in r[:3]) for r, (_, gold) in zip(ranked, questions, strict=True))
    return r1 / len(questions), r3 / len(questions)


def ours(chunks: list, questions: list, backend: str) -> tuple[list[list], list[float]]:
    from index.bm25 import BM25Index
    from index.bundled_model import BUNDLED_MODEL_NAME
    from index.dense import DenseIndex
    from index.embed import load_embedder, set_threads
    from index.search import HybridSearcher
    from index.tokenize import Tokenizer, find_coined_terms

    set_threads(1)
    model = load_embedder(BUNDLED_MODEL_NAME, ROOT / "instance" / "models", backend=backend)
    tokenizer = Tokenizer(find_coined_terms(c.text for c in chunks))
    tokens = [tokenizer.tokens(c.context_text()) for c in chunks]
    dense = DenseIndex.build(model.encode_passages([c.context_text() for c in chunks]))
    searcher = HybridSearcher(chunks, tokens, BM25Index.build(tokens), dense, model, tokenizer)
    return timed(lambda q: [h.chunk for h in searcher.search(q, k=3).hits], questions)


def txtai(chunks: list, questions: list) -> tuple[list[list], list[float]]:
    import torch
    from txtai import Embeddings

    torch.set_num_threads(1)
    folder = ROOT / "instance" / "models" / "multilingual-e5-small"
    embeddings = Embeddings(path=str(folder), method="sentence-transformers", content=True, hybrid=True,
                            instructions={"query": "query: ", "data": "passage: "})
    embeddings.index([(i, c.context_text(), None) for i, c in enumerate(chunks)])
    return timed(lambda q: [chunks[int(r["id"])] for r in embeddings.search(q, 3)], questions)


def timed(search, questions: list) -> tuple[list[list], list[float]]:
    for q, _ in questions[:5]:
        search(q)
    ranked, ms = [], []
    for q, _ in questions:
        started = time.perf_counter()
        ranked.append(search(q))
        ms.append((time.perf_counter() - started) * 1000)
    return ranked, ms


def run() -> list[str]:
    from bench.common import percentile

    lines = ["| corpus | system | R@1 | R@3 | search p50 ms | p50 as a ratio to ours (onnx) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, (chunks, questions) in (("first document, dev.jsonl (36)", first_document_set()),
                                      ("DomainRAG (155)", domainrag_set())):
        rows = [("ours (onnx, default)", *ours(chunks, questions, "onnx")),
                ("ours (torch)", *ours(chunks, questions, "torch")),
                ("txtai 9.14 hybrid (torch)", *txtai(chunks, questions))]
        base = percentile(rows[0][2], 50)
        for system, ranked, ms in rows:
            r1, r3 = score(ranked, questions)
            p50 = percentile(ms, 50)
            lines.append(f"| {name} | {system} | {r1:.3f} | {r3:.3f} | {p50:.1f} | {p50 / base:.2f} |")
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
