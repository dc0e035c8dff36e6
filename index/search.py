"""Hybrid search: BM25 and dense candidates fused into one ranking, plus the evidence for abstaining.

Fusion is a convex combination of the two scores, each scaled to [0, 1] over the candidate set
(dense: min-max; BM25: divided by the best). Over-fetch from both before fusing; ties break on the
chunk's position in the index so a ranking never depends on dictionary or thread order.

With several documents, a passage also earns a little from its document as a whole (``doc_prior``):
BM25 over whole documents, divided by the best, or the share of the question's terms in the document's
title when that is more. Near-identical sentences recur across documents (a speech restates the party
congress report); the document that is about the question as a whole, or that the question names, is
the better source. With one document the prior is the same for every passage and changes nothing.

Besides the ranking, ``search`` reports two numbers that say whether the corpus answers the question
at all; ``bot.answer`` turns them into the abstention decision:
- ``semantic``: the nearest passage's cosine similarity to the question, also expressed as ``semantic_z``,
  standard deviations above the corpus's off-topic noise floor (``index.calibration``);
- ``lexical``: the IDF-weighted share of the question's terms found in one of the top passages (precise-mode
  terms, so a compound such as 个人所得税 counts once, not once per sub-word);
- ``named``: the part of that share that is the documents' own coined names (村情通, 凡提四必): the
  model cannot know them, so a passage that has them is evidence the semantic score cannot show;
- for a how-to question, ``action`` (个人所得税怎么申报 -> 申报) and whether a top passage has it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from index.bm25 import BM25Index
from index.calibration import BACKGROUND_QUESTIONS, background_stats, z_score
from index.chunk import Chunk
from index.dense import DenseIndex
from index.embed import Embedder
from index.tokenize import Tokenizer

DEFAULT_DENSE_WEIGHT = 0.3  # chosen by measurement on ../shared/eval/dev.jsonl (see CHANGES.md)
DEFAULT_DOC_PRIOR_WEIGHT = 0.1  # chosen on dev.jsonl + docs-dev.jsonl with all documents (see CHANGES.md)
OVERFETCH = 10
EVIDENCE_HITS = 3  # lexical evidence may come from any of the passages a reply can quote


@dataclass
class Hit:
    chunk: Chunk
    score: float  # fused, in [0, 1]; includes the document prior
    dense: float  # cosine similarity
    bm25: float  # raw BM25 score
    dense_rank: int | None  # 1-based rank among dense candidates, None when not fetched
    bm25_rank: int | None
    position: int  # the chunk's position in the index
    doc_prior: float = 0.0  # how much the passage's document as a whole is about the query (see doc_prior)


@dataclass
class SearchResult:
    query: str
    tokens: list[str]
    hits: list[Hit]
    semantic: float  # cosine of the passage nearest to the question (0 when there is none)
    semantic_z: float  # the same in standard deviations above this corpus's off-topic noise floor
    lexical: float  # IDF-weighted share of query terms present in the best-ranked passage
    named: float = 0.0  # the same share counting only the documents' own coined names (村情通)
    action: str | None = None  # what a how-to question asks to do (个人所得税怎么申报 -> 申报)
    action_found: bool | None = None  # whether a top passage has it; None when there is no action
    timings_ms: dict[str, float] = field(default_factory=dict)


class HybridSearcher:
    def __init__(self, chunks: list[Chunk], chunk_tokens: list[list[str]], bm25: BM25Index,
                 dense: DenseIndex, embedder: Embedder, tokenizer: Tokenizer,
                 dense_weight: float = DEFAULT_DENSE_WEIGHT, calibration: dict | None = None,
                 doc_prior_weight: float = DEFAULT_DOC_PRIOR_WEIGHT) -> None:
        self.chunks = chunks
        self.chunk_tokens = chunk_tokens
        self.bm25 = bm25
        self.doc_prior_weight = doc_prior_weight
        documents: dict[str, list[str]] = {}
        titles: dict[str, str] = {}
        for chunk, tokens in zip(chunks, chunk_tokens, strict=True):
            documents.setdefault(chunk.doc_id, []).extend(tokens)
            titles.setdefault(chunk.doc_id, chunk.title)
        number = {doc_id: i for i, doc_id in enumerate(documents)}
        self.chunk_document = np.array([number[c.doc_id] for c in chunks], dtype=np.int64)
        self.document_bm25 = BM25Index.build(list(documents.values())) if len(documents) > 1 else None
        self.title_documents: dict[str, np.ndarray] = {}  # a title word -> the documents whose title has it
        if len(documents) > 1:
            having: dict[str, list[int]] = {}
            for doc_id, title in titles.items():
                for word in set(tokenizer.tokens(title)):
                    having.setdefault(word, []).append(number[doc_id])
            self.title_documents = {word: np.array(docs, dtype=np.int64) for word, docs in having.items()}
        self.dense = dense
        self.embedder = embedder
        self.tokenizer = tokenizer
        self.dense_weight = dense_weight
        self.calibration: dict | None = None  # measure_background searches uncalibrated
        self.calibration = calibration or self.measure_background()

    def measure_background(self) -> dict:
        """The off-topic noise floor of this corpus (see index.calibration)."""
        semantic = [self.search(q, k=1).semantic for q in BACKGROUND_QUESTIONS]
        return background_stats(semantic)

    def search(self, query: str, k: int = 5) -> SearchResult:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        tokens = self.tokenizer.tokens(query)
        t1 = time.perf_counter()
        timings["tokenize"] = (t1 - t0) * 1000
        query_vector = self.embedder.encode_queries([query])[0]
        t2 = time.perf_counter()
        timings["embed"] = (t2 - t1) * 1000

        fetch = max(k * OVERFETCH, 50)
        dense_ids, dense_scores = self.dense.search(query_vector, fetch)
        bm25_all = self.bm25.scores(tokens)
        bm25_order = top_positions(bm25_all, fetch)
        t3 = time.perf_counter()
        timings["search"] = (t3 - t2) * 1000

        terms = self.tokenizer.terms(query)
        hits = self._fuse(query_vector, dense_ids, dense_scores, bm25_all, bm25_order, self.doc_prior(tokens, terms))
        semantic = float(dense_scores[0]) if len(dense_scores) else 0.0
        action = self.tokenizer.asked_action(query)
        lexical, named, action_found = self.evidence(terms, action, hits[:EVIDENCE_HITS])
        timings["fuse"] = (time.perf_counter() - t3) * 1000
        return SearchResult(query=query, tokens=tokens, hits=hits[:k], semantic=semantic,
                            semantic_z=z_score(semantic, self.calibration), lexical=lexical, named=named,
                            action=action, action_found=action_found, timings_ms=timings)

    def _fuse(self, query_vector: np.ndarray, dense_ids: np.ndarray, dense_scores: np.ndarray,
              bm25_all: np.ndarray, bm25_order: np.ndarray, doc_prior: np.ndarray | None) -> list[Hit]:
        dense_rank = {int(i): r + 1 for r, i in enumerate(dense_ids)}
        bm25_rank = {int(i): r + 1 for r, i in enumerate(bm25_order)}
        candidates = sorted(set(dense_rank) | set(bm25_rank))
        if not candidates:
            return []
        cosine = dict(zip((int(i) for i in dense_ids), (float(s) for s in dense_scores), strict=True))
        missing = [i for i in candidates if i not in cosine]
        if missing:  # BM25-only candidates: their exact cosine, from the stored vectors
            vectors = self.dense.vectors(missing)
            for i, vector in zip(missing, vectors, strict=True):
                cosine[i] = float(vector @ query_vector)
        dense_values = np.array([cosine[i] for i in candidates], dtype=np.float64)
        low, high = float(dense_values.min()), float(dense_values.max())
        spread = high - low
        best_bm25 = float(bm25_all[candidates].max())
        hits = []
        for i, d in zip(candidates, dense_values, strict=True):
            d_norm = (d - low) / spread if spread > 1e-9 else 1.0
            b = float(bm25_all[i])
            b_norm = b / best_bm25 if best_bm25 > 0 else 0.0
            score = self.dense_weight * d_norm + (1 - self.dense_weight) * b_norm
            prior = 0.0
            if doc_prior is not None:
                prior = float(doc_prior[self.chunk_document[i]])
                score = (1 - self.doc_prior_weight) * score + self.doc_prior_weight * prior
            hits.append(Hit(chunk=self.chunks[i], score=round(score, 6), dense=round(float(d), 6),
                            bm25=round(b, 6), dense_rank=dense_rank.get(i), bm25_rank=bm25_rank.get(i),
                            position=i, doc_prior=round(prior, 6)))
        hits.sort(key=lambda h: (-h.score, h.position))
        return hits

    def doc_prior(self, tokens: list[str], terms: list[str] | None = None) -> np.ndarray | None:
        """How much each document as a whole is about the query, in [0, 1] (None: one document).

        The larger of two: the document's BM25 over whole documents divided by the best, and its title
        match, the IDF-weighted share of the query's ``terms`` in its title. A question that names its
        document (这篇讲话, 监察法里…) points at the one whose title has those words even when its body
        rarely repeats them.
        """
        if self.document_bm25 is None:
            return None
        scores = self.document_bm25.scores(tokens)
        best = float(scores.max()) if len(scores) else 0.0
        body = scores / best if best > 0 else scores
        if not terms:
            return body
        return np.maximum(body, self.title_match(terms, len(body)).astype(body.dtype))

    def title_match(self, terms: list[str], documents: int) -> np.ndarray:
        """Each document's IDF-weighted share of ``terms`` in its title."""
        weights = self.term_weights(terms)
        total = sum(weights.values())
        match = np.zeros(documents, dtype=np.float64)
        for term, weight in weights.items():
            having = self.title_documents.get(term)
            if having is not None:
                match[having] += weight
        return match / total if total > 0 else match

    def idf(self, token: str) -> float:
        n = self.bm25.size
        df = self.bm25.document_frequency(token)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def lexical_coverage(self, tokens: list[str], position: int) -> float:
        """IDF-weighted share of the query's terms present in the chunk at ``position``.

        Single characters are too ambiguous to count as evidence; they count only when the query has
        no longer term.
        """
        return self._shares(self.term_weights(tokens), set(self.chunk_tokens[position]))[0]

    def evidence(self, terms: list[str], action: str | None, hits: list[Hit]) -> tuple[float, float, bool | None]:
        """Over ``hits``: the best lexical coverage, the best share of coined names, and whether one has the
        action (None without an action). Each passage's words are gathered once."""
        weights = self.term_weights(terms)
        lexical = named = 0.0
        action_found = None if action is None else False
        for hit in hits:
            words = set(self.chunk_tokens[hit.position])
            share, names_share = self._shares(weights, words)
            lexical, named = max(lexical, share), max(named, names_share)
            if action is not None:
                action_found = action_found or action in words
        return lexical, named, action_found

    def _shares(self, weights: dict[str, float], words: set[str]) -> tuple[float, float]:
        """The weighted share of the terms among ``words``, and of the coined names among them."""
        total = sum(weights.values())
        if total <= 0:
            return 0.0, 0.0
        present = [t for t in weights if t in words]
        return (sum(weights[t] for t in present) / total,
                sum(weights[t] for t in present if t in self.tokenizer.names) / total)

    def term_weights(self, tokens: list[str]) -> dict[str, float]:
        """Each distinct term's IDF; single characters only when the query has no longer term."""
        unique = list(dict.fromkeys(tokens))
        longer = [tok for tok in unique if len(tok) > 1]
        return {t: self.idf(t) for t in longer or unique}


def top_positions(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best positive scores, best first, ties by position; O(n), not a full sort."""
    if len(scores) > k:
        candidates = np.argpartition(-scores, k - 1)[:k]
        cutoff = scores[candidates].min()
        candidates = np.flatnonzero(scores >= cutoff)  # every tie at the cut, so the choice is by position
    else:
        candidates = np.arange(len(scores))
    candidates = candidates[scores[candidates] > 0]
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k]
