"""Dense-only retrieval of the base model against adapted ones (`flask index adapt`), int8 ONNX back end.

    python -m bench.adapt_eval [--adapted MODEL_FOLDER ...] [--instance /tmp/adapt-instance]

Chunks every document with the project's own ingest and chunker (the speech alone, and the speech plus
../shared/docs: 20 documents), embeds them with each model, and for each question set prints R@1/3/5
and how the best cosine of out-of-scope questions (gold: []) compares with answerable ones (mean ± std,
and the AUC of telling them apart by that cosine). A hit is a passage among the top k containing a gold
quote, white space removed from both. Without --adapted, the newest adapted folder in the instance's
models/ is compared. Figures, not checks: not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np

from index.adapt import compact, load_question_files
from index.bundled_model import BUNDLED_MODEL_NAME
from index.chunk import Chunk, chunk_document
from index.embed import Embedder, load_embedder, resolve_model_path
from index.embed_cache import EmbeddingCache
from index.ingest import load_file

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SPEECH = ROOT / "corpus" / "quzhou-2018-organization-ministers-speech.txt"
PARTS = ROOT / "eval" / "parts"
# (label, question files, corpus): "all" is the 20 documents, "speech" the first document alone
SETS = [
    ("held-out h1+h2", [PARTS / "h1.jsonl", PARTS / "h2.jsonl"], "all"),
    ("tuning t1-t3", [PARTS / "t1.jsonl", PARTS / "t2.jsonl", PARTS / "t3.jsonl"], "all"),
    ("dev (speech)", [SHARED / "eval" / "dev.jsonl"], "speech"),
    ("dev (20 docs)", [SHARED / "eval" / "dev.jsonl"], "all"),
    ("docs-dev (20 docs)", [SHARED / "eval" / "docs-dev.jsonl"], "all"),
]
KS = (1, 3, 5)


def corpora() -> dict[str, list[Chunk]]:
    speech = load_file(SPEECH)
    others = [load_file(p) for p in sorted((SHARED / "docs").glob("*.txt"))]
    return {"speech": chunk_document(speech), "all": [c for d in [speech, *others] for c in chunk_document(d)]}


def passage_vectors(embedder: Embedder, chunks: list[Chunk], cache: EmbeddingCache) -> np.ndarray:
    texts = [c.context_text() for c in chunks]
    keys = [EmbeddingCache.key(embedder.name, t) for t in texts]
    found = cache.get_many(keys, embedder.dimension)
    todo = [i for i, k in enumerate(keys) if k not in found]
    if todo:
        fresh = embedder.encode_passages([texts[i] for i in todo])
        cache.put_many({keys[i]: fresh[j] for j, i in enumerate(todo)})
        found.update({keys[i]: fresh[j] for j, i in enumerate(todo)})
    return np.stack([found[k] for k in keys])


def auc(positive: list[float], negative: list[float]) -> float:
    """Probability that an answerable question's best cosine beats an out-of-scope one's (ties half)."""
    if not positive or not negative:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def evaluate(embedder: Embedder, chunks: list[Chunk], vectors: np.ndarray, questions: list[dict]) -> dict:
    texts = [compact(c.text) for c in chunks]
    answerable = [q for q in questions if q["gold"]]
    out_of_scope = [q for q in questions if not q["gold"]]
    scores = embedder.encode_queries([q["q"] for q in questions]) @ vectors.T
    best = {q["id"]: float(row.max()) for q, row in zip(questions, scores, strict=True)}
    ranks = []
    for q, row in zip(questions, scores, strict=True):
        if not q["gold"]:
            continue
        top = np.argsort(-row, kind="stable")[: max(KS)]
        golds = [compact(g) for g in q["gold"]]
        rank = next((r for r, i in enumerate(top, 1) if any(g in texts[i] for g in golds)), None)
        ranks.append(rank)
    result: dict[str, object] = {
        f"R@{k}": round(sum(1 for r in ranks if r and r <= k) / max(1, len(ranks)), 3) for k in KS}
    result["n"] = len(answerable)
    pos = [best[q["id"]] for q in answerable]
    neg = [best[q["id"]] for q in out_of_scope]
    result["cos_answerable"] = _mean_std(pos)
    result["cos_oos"] = _mean_std(neg)
    result["n_oos"] = len(neg)
    result["auc"] = round(auc(pos, neg), 3) if neg else None
    return result


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.mean(values):.3f}±{statistics.pstdev(values):.3f}"


def newest_adapted(models_dir: Path) -> list[str]:
    found = sorted((p for p in models_dir.glob("*-adapted-*") if (p / "adapt.json").exists()),
                   key=lambda p: p.stat().st_mtime)
    return [str(found[-1])] if found else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instance", type=Path,
                        default=Path(os.environ.get("FLASK_INSTANCE_PATH", "/tmp/adapt-instance")))
    parser.add_argument("--adapted", nargs="*", help="adapted model folders (default: the newest in models/)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    models_dir = args.instance / "models"
    resolve_model_path(BUNDLED_MODEL_NAME, models_dir)
    settings = [BUNDLED_MODEL_NAME, *(args.adapted if args.adapted is not None else newest_adapted(models_dir))]
    cache = EmbeddingCache(args.instance / "cache" / "embeddings.sqlite3")
    chunk_sets = corpora()
    sets = [(label, load_question_files(files), corpus) for label, files, corpus in SETS
            if all(f.exists() for f in files)]
    figures: dict[str, dict[str, dict]] = {}
    for setting in settings:
        embedder = load_embedder(setting, models_dir, backend="onnx")
        vectors = {name: passage_vectors(embedder, chunks, cache) for name, chunks in chunk_sets.items()}
        label = "base" if setting == BUNDLED_MODEL_NAME else Path(setting).name
        figures[label] = {name: evaluate(embedder, chunk_sets[corpus], vectors[corpus], questions)
                          for name, questions, corpus in sets}
    print(f"chunks: {len(chunk_sets['speech'])} (speech), {len(chunk_sets['all'])} (20 documents)\n")
    print("| set | model | n | R@1 | R@3 | R@5 | best cos answerable | best cos out-of-scope (n) | AUC |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, _, _ in sets:
        for label, by_set in figures.items():
            r = by_set[name]
            oos = f"{r['cos_oos']} ({r['n_oos']})" if r["n_oos"] else "-"
            print(f"| {name} | {label} | {r['n']} | {r['R@1']} | {r['R@3']} | {r['R@5']} | "
                  f"{r['cos_answerable']} | {oos} | {r['auc'] if r['auc'] is not None else '-'} |")
    if args.json:
        args.json.write_text(json.dumps(figures, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
