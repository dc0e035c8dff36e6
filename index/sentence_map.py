"""Sentence vectors pooled from the passage pass, instead of a model pass of their own.

The sentence index (``index.sentences``) wants each sentence embedded on its own, after its document title
and heading. That pass reads every sentence again: on the 53 government work reports 1.18M tokens against
the passages' 0.83M, about half of a build. But the passage pass already gives every token's contextual
vector (``index.token_match``). A sentence's tokens, averaged, say what the sentence says as read in its
passage; a linear map learned once per model (``SentenceMap``) turns that average, with the average of the
passage's title and heading tokens and the passage's own vector, into the vector the sentence would get
embedded alone (cosine 0.918 before the map, 0.952 after, on the 20 documents' 5,896 sentences). Least
squares pulls its outputs towards the average sentence, so that any question, chatter too, would come
closer to some sentence; ``widened`` spreads them as far apart as embedded sentences are.

A build pools by default (the ``SENTENCE_VECTORS`` setting ``pooled``; ``embedded`` embeds every sentence
again), and the shipped models are fitted on pooled vectors. With the question's wording in the scope decision,
the refitted models decline more everyday questions, and about as many answerable ones, as on embedded
sentences (CHANGES.md); before it, pooled vectors let a few more everyday questions through. The map is fitted
with ``python -m index.sentence_map`` on documents that are not the library's (the bench corpora: government
work reports before 2017 and a sample of regulations and news), where the sentences are embedded both ways, by
ridge regression. It belongs to one model: the file names it, and a build with another model (the torch back
end, a model given by name, another adapter) embeds its sentences.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.chunk import Chunk
from index.sentences import sentence_spans, sentence_texts
from index.token_match import TokenSource, TokenVectors

DEFAULT_MAP = Path(__file__).resolve().parent / "sentence_map.npz"
RIDGE = 0.03  # the map's penalty: the best cosine on the 20 documents' sentences among 0.03–0.3 (0.955)
FIT_PASSAGES = 6000  # chunks of the mixed bench corpora fitted on, besides the older work reports


@dataclass
class SentenceMap:
    """``vector = unit(inputs(...) @ weights)``: from a sentence's tokens' mean, its passage's heading tokens'
    mean and the passage's vector."""

    model: str  # the embedder it was fitted for (its name, adapter digest and back end included)
    weights: np.ndarray  # (3 · dimension + 1, dimension)

    @classmethod
    def load(cls, path: Path = DEFAULT_MAP) -> SentenceMap | None:
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as data:
            return cls(str(data["model"]), data["weights"].astype(np.float32))

    def save(self, path: Path = DEFAULT_MAP) -> None:
        with open(path, "wb") as fh:  # np.savez would add .npz to a name without it
            np.savez(fh, model=np.array(self.model), weights=self.weights.astype(np.float16))

    def vectors(self, means: np.ndarray, head: np.ndarray, passage: np.ndarray) -> np.ndarray:
        """The vectors of one passage's sentences (their token means, ``pool``)."""
        return unit(inputs(means, head, passage) @ self.weights).astype(np.float32)


def inputs(means: np.ndarray, head: np.ndarray, passage: np.ndarray) -> np.ndarray:
    """The map's input rows for one passage's sentences: ``[sentence mean, heading mean, passage vector, 1]``."""
    rows = len(means)
    return np.hstack([means, np.broadcast_to(head, (rows, len(head))), np.broadcast_to(passage, (rows, len(passage))),
                      np.ones((rows, 1), dtype=np.float32)])


def for_model(name: str, path: Path = DEFAULT_MAP) -> SentenceMap | None:
    """The shipped map when it was fitted for the model ``name``, else None (sentences are embedded)."""
    found = SentenceMap.load(path)
    return found if found is not None and found.model == name else None


def pooled_inputs(chunks: list[Chunk], passages: np.ndarray, tokens: TokenSource,
                  token_spans: Callable[[list[str]], list[np.ndarray]]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """For each chunk with sentence vectors (in order): its position, its sentences' token means (k, d) and
    its title and heading tokens' mean (d,). ``token_spans`` gives, for passage texts as embedded, each
    token vector's character span in the text. A sentence past the model's token limit has no tokens: it
    gets the passage's vector in place of its own mean."""
    position = 0
    for block in tokens.blocks():
        part = chunks[position:position + len(block)]
        spans = token_spans([c.context_text() for c in part])
        for offset, (chunk, passage_tokens, where) in enumerate(zip(part, block, spans, strict=True)):
            pieces = sentence_spans(chunk)
            if not pieces:
                continue
            pooled = pool(chunk, passage_tokens, where, pieces, passages[position + offset])
            yield position + offset, *pooled
        position += len(block)


def pool(chunk: Chunk, passage_tokens: TokenVectors, where: np.ndarray, pieces: list[tuple[int, int]],
         fallback: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = passage_tokens.floats()
    if len(rows) != len(where):
        raise ValueError(f"{chunk.chunk_id}: {len(rows)} token vectors but {len(where)} token spans")
    body = len(chunk.context_text()) - len(chunk.text)  # the body follows the title and heading line
    real = where[:, 1] > where[:, 0]
    heading = rows[real & (where[:, 0] < body)]
    head = heading.mean(axis=0) if len(heading) else fallback
    means = np.empty((len(pieces), rows.shape[1]), dtype=np.float32)
    for k, (start, end) in enumerate(pieces):
        inside = rows[real & (where[:, 0] >= start + body) & (where[:, 0] < end + body)]
        means[k] = inside.mean(axis=0) if len(inside) else fallback
    return means, head


def fit(chunks: list[Chunk], embedder, ridge: float = RIDGE) -> tuple[SentenceMap, dict]:
    """A map for ``embedder`` from ``chunks`` (not the library's): each passage embedded with its tokens,
    each sentence embedded alone, and the ridge regression from one to the other. Returns it with the
    cosines it reaches on those sentences, before and after."""
    from index.token_match import ListedTokens

    passages, token_list = embedder.encode_passages_with_tokens([c.context_text() for c in chunks])
    rows, texts = [], []
    listed = ListedTokens([t.compact() for t in token_list])  # as a build reads them: int8, as cached
    for position, means, head in pooled_inputs(chunks, passages, listed, embedder.token_spans):
        rows.append(inputs(means, head, passages[position]))
        texts += sentence_texts(chunks[position])
    x = np.vstack(rows).astype(np.float64)
    y = embedder.encode_passages(texts)
    weights = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ y)
    fitted = SentenceMap(embedder.name, widened(weights, x, y).astype(np.float32))
    mapped = unit(x @ fitted.weights)
    before = float(np.mean(np.sum(unit(x[:, :y.shape[1]]) * y, axis=1)))  # the sentence tokens' mean alone
    after = float(np.mean(np.sum(mapped * y, axis=1)))
    return fitted, {"sentences": len(x), "cosine_before": round(before, 4), "cosine_after": round(after, 4),
                    "closeness_embedded": round(closeness(y), 4), "closeness_mapped": round(closeness(mapped), 4)}


def widened(weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``weights`` with their outputs spread as far from their mean as the embedded vectors ``y`` are.
    Least squares pulls every prediction towards the average sentence: the mapped vectors sat closer
    together (mean cosine to their centroid 0.896 against the embedded ones' 0.860, on the 20 documents), so
    any question, chatter too, came closer to some sentence. The outputs' deviations from their mean are
    scaled up until the spread matches (a factor of about 1.18; the intercept row takes the shift)."""
    out = x @ weights
    mean = out.mean(axis=0)
    target = closeness(y)
    low, high = 1.0, 3.0
    for _ in range(30):  # the vectors draw apart as the factor grows
        middle = (low + high) / 2
        low, high = (middle, high) if closeness(mean + middle * (out - mean)) > target else (low, middle)
    factor = (low + high) / 2
    wide = weights * factor
    wide[-1] = factor * weights[-1] + (1 - factor) * mean
    return wide


def closeness(vectors: np.ndarray) -> float:
    """The mean cosine of ``vectors`` to their centroid: how tightly they sit together."""
    directions = unit(vectors)
    return float(np.mean(directions @ unit(directions.mean(axis=0, keepdims=True))[0]))


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)


def bench_chunks(passages: int = FIT_PASSAGES) -> list[Chunk]:
    """What the shipped map is fitted on: every government work report before 2017 (2017 and later are
    among ../shared/docs) and the first ``passages`` chunks of the mixed bench corpora, less those reports."""
    from bench.scale import cleaned_documents, reindex_library
    from index.chunk import chunk_document

    def older(doc_id: str) -> bool:
        return doc_id.startswith("gwr-") and int(doc_id[4:]) < 2017

    _, mixed = reindex_library(passages)
    mixed = [c for c in mixed if not c.doc_id.startswith("gwr-") or older(c.doc_id)]
    reports = [c for doc in cleaned_documents() if older(doc.doc_id) for c in chunk_document(doc)]
    seen = {c.chunk_id for c in reports}
    return reports + [c for c in mixed if c.chunk_id not in seen]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fit the sentence map for the bundled model (ONNX back end).")
    parser.add_argument("--out", type=Path, default=DEFAULT_MAP)
    parser.add_argument("--passages", type=int, default=FIT_PASSAGES)
    args = parser.parse_args(argv)
    from server import create_app

    chunks = bench_chunks(args.passages)
    print(f"fitting on {len(chunks)} passages", file=sys.stderr, flush=True)
    app = create_app()
    with app.app_context():
        fitted, figures = fit(chunks, app.extensions["engine"].embedder())
    fitted.save(args.out)
    print(json.dumps({"model": fitted.model, **figures}, ensure_ascii=False))


if __name__ == "__main__":
    main()
