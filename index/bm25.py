"""Lexical index: BM25 (bm25s, Lucene variant) over the shared jieba tokens.

bm25s serves, saves and loads the index; ``score_matrix`` builds its score matrix with whole-array steps
instead of bm25s's loops over every token of every passage (at 100k passages the character-bigram index
took 15 s to build that way), to the same scores, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import chain
from pathlib import Path

import bm25s
import numpy as np

SCORE_BLOCK = 1 << 22  # entries of the score matrix computed at a time (``score_matrix``)
PLACEHOLDER = "\u0000"  # an empty token list would break the index; this token matches no query


class BM25Index:
    def __init__(self, retriever: bm25s.BM25, size: int) -> None:
        self._retriever = retriever
        self.size = size

    @classmethod
    def build(cls, token_lists: list[list[str]]) -> BM25Index:
        return cls._serving(lambda k1, b: score_matrix(token_lists, k1, b), len(token_lists))

    @classmethod
    def from_ids(cls, ids: np.ndarray, offsets: np.ndarray, terms: list[str]) -> BM25Index:
        """The index of the token lists ``terms[ids[offsets[i]:offsets[i + 1]]]`` (``index.chunk_tokens``),
        scoring every query as ``build`` over the same lists would, bit for bit, without making the lists."""
        lengths = np.diff(np.asarray(offsets, dtype=np.int64))
        columns = np.array(ids, dtype=np.int64)  # a copy: score_columns sorts it in place
        empty = lengths == 0
        if empty.any():  # as build does: an empty list holds the placeholder
            terms = [*terms, PLACEHOLDER]
            columns = np.insert(columns, np.asarray(offsets[:-1])[empty], len(terms) - 1)
            lengths = np.where(empty, 1, lengths)
        vocab = {term: column for column, term in enumerate(terms)}
        return cls._serving(lambda k1, b: (score_columns(columns, lengths, len(terms), k1, b), vocab), len(lengths))

    @classmethod
    def _serving(cls, scored: Callable[[float, float], tuple[dict, dict[str, int]]], size: int) -> BM25Index:
        """bm25s serving the score matrix and term columns that ``scored(k1, b)`` makes for ``size`` passages."""
        # the variant and types score_matrix computes, named rather than left to bm25s's defaults
        retriever = bm25s.BM25(method="lucene", idf_method="lucene", dtype="float32", int_dtype="int32")
        retriever.scores, retriever.vocab_dict = scored(retriever.k1, retriever.b)
        retriever.unique_token_ids_set = set(retriever.vocab_dict.values())
        retriever.nonoccurrence_array = None
        return cls(retriever, size)

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        """BM25 score of every chunk for the query (zeros where nothing matches)."""
        known = [t for t in query_tokens if t in self._retriever.vocab_dict]
        if not known or self.size == 0:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._retriever.get_scores(known), dtype=np.float32)

    def document_frequency(self, token: str) -> int:
        """How many chunks contain ``token`` (0 when unknown)."""
        column = self._retriever.vocab_dict.get(token)
        if column is None:
            return 0
        indptr = self._retriever.scores["indptr"]
        return int(indptr[column + 1] - indptr[column])

    def contains(self, token: str, positions: np.ndarray) -> np.ndarray:
        """Whether each chunk at ``positions`` has ``token``: a binary search in the token's list of chunks
        (bm25s keeps each list sorted), so a question's few terms are checked against a hundred candidates
        without gathering any candidate's words."""
        positions = np.asarray(positions, dtype=np.int64)
        column = self._retriever.vocab_dict.get(token)
        if column is None or not len(positions):
            return np.zeros(len(positions), dtype=bool)
        indptr = self._retriever.scores["indptr"]
        having = self._retriever.scores["indices"][int(indptr[column]):int(indptr[column + 1])]
        if not len(having):
            return np.zeros(len(positions), dtype=bool)
        at = np.minimum(np.searchsorted(having, positions), len(having) - 1)
        return np.asarray(having[at] == positions)

    def save(self, directory: Path) -> None:
        self._retriever.save(str(directory), show_progress=False)

    @classmethod
    def load(cls, directory: Path, size: int, mmap: bool = True) -> BM25Index:
        """Read the index; ``mmap`` maps its score matrix from the files (shared by a node's workers)."""
        return cls(bm25s.BM25.load(str(directory), mmap=mmap, show_progress=False), size)


def score_matrix(token_lists: list[list[str]], k1: float, b: float) -> tuple[dict, dict[str, int]]:
    """The Lucene BM25 score of every term in every passage as bm25s stores it (columns by term, passages
    ascending in each) and the terms' column numbers.

    Each value is computed as bm25s computes it (``bm25s.scoring``): the idf by ``math.log`` in double
    precision, then rounded to float32; the term-frequency part in double precision; their product rounded
    to float32. So a query scores every passage to the same bits as an index bm25s built itself (tested)."""
    lists = [tokens or [PLACEHOLDER] for tokens in token_lists]
    vocab = {term: column for column, term in enumerate(dict.fromkeys(chain.from_iterable(lists)))}
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    columns = np.fromiter(map(vocab.__getitem__, chain.from_iterable(lists)), dtype=np.int64,
                          count=int(lengths.sum()))
    return score_columns(columns, lengths, len(vocab), k1, b), vocab


def score_columns(columns: np.ndarray, lengths: np.ndarray, terms: int, k1: float, b: float) -> dict:
    """``score_matrix`` from each token's column number (int64, overwritten), passage after passage, and
    each passage's token count."""
    # one key a (term, passage) pair, so sorting orders the matrix by column, then by passage (made in
    # place: at a million passages each of these arrays is a gigabyte)
    keys = columns
    keys <<= 32
    keys |= np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
    keys.sort()
    starts = np.flatnonzero(np.concatenate(([len(keys) > 0], keys[1:] != keys[:-1])))
    frequency = np.diff(starts, append=len(keys)).astype(np.int32)
    keys = keys[starts]
    del starts
    columns, rows = (keys >> 32).astype(np.int32), (keys & 0xFFFFFFFF).astype(np.int32)
    del keys
    document_frequency = np.bincount(columns, minlength=terms)
    frequencies, of_term = np.unique(document_frequency, return_inverse=True)
    idf = np.array([math.log(1 + (len(lengths) - int(df) + 0.5) / (int(df) + 0.5)) for df in frequencies],
                   dtype=np.float32)[of_term]
    # bm25s: tf / (k1 * ((1 - b) + b * length / average) + tf), the average a float64 numpy mean; computed a
    # block at a time, as its double-precision steps take 8 bytes an entry each
    saturation = k1 * ((1 - b) + b * lengths / (lengths.mean() if len(lengths) else 1.0))
    data = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), SCORE_BLOCK):
        block = slice(start, start + SCORE_BLOCK)
        tf = frequency[block].astype(np.float32)
        data[block] = idf[columns[block]] * (tf / (saturation[rows[block]] + tf))
    indptr = np.zeros(terms + 1, dtype=np.int64)
    np.cumsum(document_frequency, out=indptr[1:])
    return {"data": data, "indices": rows, "indptr": indptr, "num_docs": len(lengths)}
