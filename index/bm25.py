"""Lexical index: BM25 (bm25s, Lucene variant) over the shared jieba tokens."""

from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np


class BM25Index:
    def __init__(self, retriever: bm25s.BM25, size: int) -> None:
        self._retriever = retriever
        self.size = size

    @classmethod
    def build(cls, token_lists: list[list[str]]) -> BM25Index:
        retriever = bm25s.BM25()
        # an empty token list would break the index; a placeholder token matches no query
        retriever.index([tokens or ["\u0000"] for tokens in token_lists], show_progress=False)
        return cls(retriever, len(token_lists))

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
