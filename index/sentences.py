"""Sentence vectors: each passage's sentences embedded on their own, beside the passage's own vector.

A member's question usually asks about one sentence of a passage. The passage's vector mixes that
sentence with its neighbours, so a paraphrased question can sit closer to a passage that is vaguely about
the same subject than to the one holding the answer. The best cosine among a passage's sentences sees
the answer on its own: with all 20 documents, dense retrieval alone by the best sentence put the right
passage first for 0.40 of the tuning questions against 0.32 by the passage vector (held-out 0.38 vs
0.30). It is a fourth candidate channel and two ranking features (``sentence_gap``, ``sentence_rank``).

Each sentence is embedded with the passage's document title and innermost heading before it, as the
passage is, so that a sentence still says which document it comes from. A passage of a single sentence
gets no sentence vectors: its own vector is that sentence's. A build (``SENTENCE_VECTORS=pooled``, the
default) does not embed the sentences where a map fits the model: ``SentenceIndex.pooled`` maps each from the
passage pass's token vectors to what that embedding would give (``index.sentence_map``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from index.chunk import Chunk, split_sentences
from index.dense import DenseIndex
from index.token_match import TokenSource

if TYPE_CHECKING:
    from index.sentence_map import SentenceMap

MIN_SENTENCE_CHARS = 10  # shorter pieces (一是、总之，…) are joined to the next sentence
OFFSETS_FILE = "sentence_offsets.npy"


def sentence_pieces(chunk: Chunk) -> list[str]:
    """``chunk``'s sentences as embedded (a piece shorter than ``MIN_SENTENCE_CHARS`` joins the next one);
    empty when it has only one."""
    return [text for text, _, _ in _pieces(chunk)]


def sentence_spans(chunk: Chunk) -> list[tuple[int, int]]:
    """Where each of ``sentence_pieces`` lies in ``chunk.text`` (start, end)."""
    return [(start, end) for _, start, end in _pieces(chunk)]


def _pieces(chunk: Chunk) -> list[tuple[str, int, int]]:
    pieces: list[tuple[str, int, int]] = []
    pending, first = "", 0
    for start, end in split_sentences(chunk.text):
        if not pending:
            first = start
        pending += chunk.text[start:end].strip()
        if len(pending) >= MIN_SENTENCE_CHARS:
            pieces.append((pending, first, end))
            pending = ""
    if pending:
        if pieces:
            text, start, _ = pieces[-1]
            pieces[-1] = (text + pending, start, end)
        else:
            pieces.append((pending, first, end))
    return pieces if len(pieces) >= 2 else []


def sentence_texts(chunk: Chunk) -> list[str]:
    """The texts embedded for ``chunk``'s sentences (each after its title and innermost heading)."""
    head = " ".join((chunk.title, *chunk.section[-1:]))
    return [f"{head}\n{s}" for s in sentence_pieces(chunk)]


class SentenceIndex:
    """The sentence vectors of every passage, in passage order: passage ``i`` owns the sentences
    ``offsets[i]:offsets[i + 1]``."""

    def __init__(self, dense: DenseIndex, offsets: np.ndarray) -> None:
        self.dense = dense
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.owner = np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))

    @classmethod
    def build(cls, chunks: list[Chunk], embed: Callable[[list[str]], np.ndarray], dimension: int) -> SentenceIndex:
        per_chunk = [sentence_texts(c) for c in chunks]
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in per_chunk])]).astype(np.int64)
        texts = [t for sentences in per_chunk for t in sentences]
        vectors = embed(texts) if texts else np.zeros((0, dimension), dtype=np.float32)
        return cls(DenseIndex.build(vectors.reshape(-1, dimension)), offsets)

    @classmethod
    def pooled(cls, chunks: list[Chunk], passages: np.ndarray, tokens: TokenSource,
               token_spans: Callable[[list[str]], list[np.ndarray]], sentence_map: SentenceMap) -> SentenceIndex:
        """The same index without embedding the sentences: each vector is mapped from the passage pass's
        token vectors (``index.sentence_map``)."""
        from index.sentence_map import pooled_inputs

        counts = np.zeros(len(chunks), dtype=np.int64)
        parts = [np.zeros((0, passages.shape[1]), dtype=np.float32)]
        for position, means, head in pooled_inputs(chunks, passages, tokens, token_spans):  # in passage order
            counts[position] = len(means)
            parts.append(sentence_map.vectors(means, head, passages[position]))
        return cls(DenseIndex.build(np.vstack(parts)), np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))

    def subset(self, positions: list[int]) -> SentenceIndex:
        """The sentence vectors of the passages at ``positions`` alone, in that order (as the library made
        them, pooled or embedded)."""
        rows = [np.arange(self.offsets[p], self.offsets[p + 1]) for p in positions]
        taken = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        return SentenceIndex(DenseIndex.build(np.asarray(self.dense.vectors(taken), dtype=np.float32)), offsets)

    def save(self, directory: Path) -> None:
        directory.mkdir(exist_ok=True)
        self.dense.save(directory)
        np.save(directory / OFFSETS_FILE, self.offsets)

    @classmethod
    def load(cls, directory: Path) -> SentenceIndex:
        return cls(DenseIndex.load(directory), np.load(directory / OFFSETS_FILE))

    @property
    def size(self) -> int:
        return self.dense.size

    def search(self, query_vector: np.ndarray, fetch: int) -> np.ndarray:
        """The positions of the passages owning the ``fetch`` nearest sentences, nearest first, once each."""
        ids, _ = self.dense.search(query_vector, fetch)
        owners = self.owner[ids[ids >= 0]]
        _, first = np.unique(owners, return_index=True)
        return owners[np.sort(first)]

    def nearest(self, position: int, query_vector: np.ndarray) -> int | None:
        """Which of passage ``position``'s sentences is nearest the question (None: it has no sentence
        vectors, being a single sentence)."""
        start, end = int(self.offsets[position]), int(self.offsets[position + 1])
        if end <= start:
            return None
        return int(np.argmax(self.dense.vectors(list(range(start, end))) @ query_vector))

    def best_cosine(self, positions: np.ndarray, query_vector: np.ndarray, passage_cosine: np.ndarray) -> np.ndarray:
        """For each passage position, the best cosine of one of its sentences — or the passage's own cosine
        (``passage_cosine``) when it is higher or the passage is a single sentence."""
        best = np.asarray(passage_cosine, dtype=np.float64).copy()
        starts, ends = self.offsets[positions], self.offsets[positions + 1]
        has = np.flatnonzero(ends > starts)
        if not len(has):
            return best
        lengths = ends[has] - starts[has]
        bounds = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        # every sentence of those passages, in order: each run starts[i] .. ends[i] laid end to end
        ids = np.arange(int(lengths.sum())) + np.repeat(starts[has] - bounds, lengths)
        cosine = self.dense.vectors(ids) @ query_vector
        best[has] = np.maximum(best[has], np.maximum.reduceat(cosine, bounds))
        return best
