"""Every passage's search tokens (the jieba words the BM25 index was built from), held as numbers.

The searcher reads a passage's words for its lexical evidence (which of the question's terms a passage
has) and gathers them by document for the document prior's BM25. As Python lists of strings they took
about 100 bytes a token: 726 MB at 100k passages, in every worker, and about ten times that at a
million. Here they are one int32 array of term numbers, an offset a passage and the distinct terms once:
about 4 bytes a token. An index version keeps them in ``words/``; a version built before (``tokens.jsonl``)
is read into the same form.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import chain
from pathlib import Path

import numpy as np

IDS_FILE = "ids.npy"
OFFSETS_FILE = "offsets.npy"
TERMS_FILE = "terms.json"


class ChunkTokens:
    """Passage ``i``'s tokens are ``terms[ids[offsets[i]:offsets[i + 1]]]``, in order."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, terms: list[str]) -> None:
        self.ids = np.asarray(ids, dtype=np.int32)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.terms = terms

    @classmethod
    def from_lists(cls, token_lists: Sequence[list[str]]) -> ChunkTokens:
        """From one list of tokens a passage; terms numbered by first appearance. Made straight into arrays
        (a million passages' 80M tokens as a list of Python ints would be gigabytes)."""
        number: dict[str, int] = {}
        lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        ids = np.fromiter((number.setdefault(t, len(number)) for t in chain.from_iterable(token_lists)),
                          dtype=np.int32, count=int(lengths.sum()))
        return cls(ids, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), list(number))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, position: int) -> list[str]:
        terms = self.terms
        return [terms[i] for i in self.ids[self.offsets[position]:self.offsets[position + 1]].tolist()]

    def words(self, position: int) -> set[str]:
        """The distinct tokens of the passage at ``position``."""
        terms = self.terms
        return {terms[i] for i in set(self.ids[self.offsets[position]:self.offsets[position + 1]].tolist())}

    def grouped(self, group: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
        """The tokens gathered by ``group`` (a group number a passage, e.g. its document): each group's
        passages' tokens one after another, passages in their order; returns the ids and the groups'
        offsets into them."""
        lengths = np.diff(self.offsets)
        order = np.argsort(np.asarray(group, dtype=np.int64), kind="stable")
        starts = self.offsets[:-1][order]
        rows = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths[order])[:-1]]), lengths[order]) \
            + np.arange(int(lengths.sum()))
        per_group = np.bincount(np.asarray(group, dtype=np.int64), weights=lengths, minlength=groups).astype(np.int64)
        return self.ids[rows], np.concatenate([[0], np.cumsum(per_group)]).astype(np.int64)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / IDS_FILE, self.ids)
        np.save(directory / OFFSETS_FILE, self.offsets)
        (directory / TERMS_FILE).write_text(json.dumps(self.terms, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> ChunkTokens:
        return cls(np.load(directory / IDS_FILE, mmap_mode="r"), np.load(directory / OFFSETS_FILE),
                   json.loads((directory / TERMS_FILE).read_text(encoding="utf-8")))
