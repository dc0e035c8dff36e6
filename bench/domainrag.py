"""R@1/R@5 on the external DomainRAG set: BM25 alone, dense alone and the fusion.

    .venv/bin/python -m bench.domainrag [--shared ../shared] [--cache instance/bench-cache]

Each DomainRAG passage is indexed whole as one chunk (its title as context), so a returned chunk is a
passage id; a hit is a returned id listed in the question's ``gold_pids``. Passage embeddings are cached
by content hash, so reruns only embed the questions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from index.bm25 import BM25Index
from index.bundled_model import BUNDLED_MODEL_NAME
from index.chunk import Chunk
from index.dense import DenseIndex
from index.embed import load_embedder
from index.search import DEFAULT_DENSE_WEIGHT, HybridSearcher
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
    parser.add_argument("--model", default=BUNDLED_MODEL_NAME)
    parser.add_argument("--backend", default="torch", choices=("torch", "onnx"))
    parser.add_argument("--weights", type=float, nargs="*", default=[],
                        help="extra dense weights to try beside 0 (BM25 alone), 1 (dense alone) and the default")
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
    vectors = cached_passage_vectors(embedder, texts, args.cache)
    print(f"{len(chunks)} passages embedded/loaded in {time.perf_counter() - started:.1f} s")
    bm25 = BM25Index.build(tokens)
    dense = DenseIndex.build(vectors)

    print(f"{'mode':24s} R@1    R@5    MRR")
    modes = [("BM25 alone", 0.0), ("dense alone", 1.0)]
    modes += [(f"fusion (dense {w})", w) for w in (DEFAULT_DENSE_WEIGHT, *args.weights)]
    for label, weight in modes:
        searcher = HybridSearcher(chunks, tokens, bm25, dense, embedder, tokenizer, dense_weight=weight)
        r1 = r5 = mrr = 0.0
        for q in queries:
            ids = [h.chunk.chunk_id for h in searcher.search(q["question"], k=5).hits]
            gold = set(q["gold_pids"])
            rank = next((i for i, pid in enumerate(ids, 1) if pid in gold), None)
            r1 += rank == 1
            r5 += rank is not None
            mrr += 1 / rank if rank else 0
        n = len(queries)
        print(f"{label:24s} {r1 / n:.3f}  {r5 / n:.3f}  {mrr / n:.3f}")


if __name__ == "__main__":
    main()
