"""R@1/R@3/R@5 on the external DomainRAG set: each channel alone and the learned ranker.

    .venv/bin/python -m bench.domainrag [--shared ../shared] [--cache instance/bench-cache]

Each DomainRAG passage is indexed whole as one chunk (its title as context), so a returned chunk is a
passage id; a hit is a returned id listed in the question's ``gold_pids``. Passage embeddings are cached
by content hash, so reruns only embed the questions — except with a model that gives token vectors (both
bundled back ends), whose passages are embedded again for them (index.token_match).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import cast

import numpy as np

from index.bm25 import BM25Index
from index.bundled_model import ADAPTED_MODEL_NAME
from index.chunk import Chunk
from index.dense import DenseIndex
from index.embed import TokenEmbedder, gives_tokens, load_embedder
from index.rank import PASSAGE_FEATURES, LearnedModels, LinearModel
from index.search import HybridSearcher
from index.token_match import TokenIndex
from index.tokenize import Tokenizer, find_coined_terms

ROOT = Path(__file__).resolve().parent.parent


def cached_passage_vectors(embedder, texts: list[str], cache: Path) -> np.ndarray:
    key = hashlib.sha256(("\0".join(texts) + embedder.name).encode()).hexdigest()[:16]
    path = cache / f"domainrag-{key}.npy"
    if path.exists():
        return np.load(path)
    cache.mkdir(parents=True, exist_ok=True)
    vectors = embedder.encode_passages(texts)
    np.save(path, vectors)
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--cache", type=Path, default=ROOT / "instance" / "bench-cache")
    parser.add_argument("--model", default=ADAPTED_MODEL_NAME)
    parser.add_argument("--backend", default="onnx", choices=("torch", "onnx"))
    args = parser.parse_args()

    folder = args.shared / "eval" / "domainrag"
    passages = [json.loads(line) for line in open(folder / "domainrag.passages.jsonl", encoding="utf-8")]
    queries = [json.loads(line) for line in open(folder / "domainrag.queries.jsonl", encoding="utf-8")]
    chunks = [Chunk(p["pid"], p["pid"], p.get("title", ""), (), p["text"], 0, len(p["text"])) for p in passages]
    texts = [c.context_text() for c in chunks]

    embedder = load_embedder(args.model, ROOT / "instance" / "models", backend=args.backend)
    tokenizer = Tokenizer(find_coined_terms(p["text"] for p in passages))
    tokens = [tokenizer.tokens(t) for t in texts]
    started = time.perf_counter()
    token_index = None
    if gives_tokens(embedder):  # the ranker's token_match features (index.token_match): one pass for both
        vectors, passage_tokens = cast(TokenEmbedder, embedder).encode_passages_with_tokens(texts)
        token_index = TokenIndex.build(passage_tokens)
    else:
        vectors = cached_passage_vectors(embedder, texts, args.cache)
    print(f"{len(chunks)} passages embedded/loaded in {time.perf_counter() - started:.1f} s")
    bm25 = BM25Index.build(tokens)
    dense = DenseIndex.build(vectors)

    print(f"{'mode':24s} R@1    R@3    R@5    MRR")
    shipped = LearnedModels.load()
    modes = [("BM25 alone", single("bm25", shipped)), ("bigram BM25 alone", single("bigram", shipped)),
             ("dense alone", single("dense_gap", shipped)), ("learned ranker", shipped)]
    # one searcher for every mode (its sentences, everyday and errand vectors are embedded once); each mode
    # only swaps the models it ranks with
    searcher = HybridSearcher(chunks, tokens, bm25, dense, embedder, tokenizer, models=shipped,
                              token_index=token_index)
    for label, models in modes:
        searcher.models = models
        ranks = []
        for q in queries:
            ids = [h.chunk.chunk_id for h in searcher.search(q["question"], k=5).hits]
            gold = set(q["gold_pids"])
            ranks.append(next((i for i, pid in enumerate(ids, 1) if pid in gold), None))
        n = len(queries)
        r1, r3, r5 = (sum(1 for r in ranks if r and r <= k) / n for k in (1, 3, 5))
        mrr = sum(1 / r for r in ranks if r) / n
        print(f"{label:24s} {r1:.3f}  {r3:.3f}  {r5:.3f}  {mrr:.3f}")


def single(feature: str, shipped: LearnedModels) -> LearnedModels:
    """The shipped models with a ranker that weighs one feature alone (a baseline)."""
    return dataclasses.replace(shipped, ranker=LinearModel.neutral(PASSAGE_FEATURES, {feature: 1.0}))


if __name__ == "__main__":
    main()
