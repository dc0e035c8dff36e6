"""Token matching: how well each word of a question is met somewhere in a passage, in the model's own terms.

A passage's single vector averages all its words, so a question that paraphrases one clause of it is
close to it only as far as that clause weighs in the average. Here the model's contextual vector of
every token (the last layer, before pooling) is kept for every passage; a question's tokens each find
their best match among a passage's tokens (late interaction, as in ColBERT), and two passage features
come of it: the IDF-weighted mean of the best matches (``token_match``: is every part of the question met?)
and their lower quartile (``token_low``: is some part met by nothing?), each also as a gap to the best
candidate. The ranker fitted on the tuning split with and without them (all 20 documents, before the
rest of the pipeline; float vectors): held-out R@1/R@3 0.585/0.771 → 0.617/0.787, fresh 0.540/0.725 →
0.595/0.760, tune-more 0.460/0.677 → 0.467/0.713.

A question's tokens meet every token of about a hundred candidate passages (some 14,500 with 20 documents),
so the vectors are made small: projected on the library's own first ``TOKEN_DIMENSIONS`` principal
components (fitted at build on the passages' tokens; 384 → 192 dimensions, renormalised) and stored as int8
with one scale per token. 20 documents, about 200,000 tokens: 40 MB, memory-mapped; token matching adds
about 4 ms to a question's search on one thread (9 ms at 384 dimensions, 3 ms at 128). In the whole
pipeline, refitted each time (R@1/R@3): held-out 0.638/0.803 at 384, 0.628/0.803 at 192, 0.617/0.793 at
128; fresh 0.580/0.745, 0.580/0.745, 0.565/0.740; tune-more 0.453/0.690, 0.440/0.693, 0.437/0.687
(CHANGES.md). The IDF of a token id comes from the passages' own tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

VECTORS_FILE = "token_vectors.npy"
SCALES_FILE = "token_scales.npy"
IDS_FILE = "token_ids.npy"
OFFSETS_FILE = "token_offsets.npy"
BASIS_FILE = "token_basis.npy"
MEAN_FILE = "token_mean.npy"
LOW_QUANTILE = 25  # token_low: this percentile of a question's tokens' best matches
TOKEN_DIMENSIONS = 192  # principal components kept (a model with fewer dimensions keeps its own)
BASIS_SAMPLE = 60_000  # tokens the components are fitted on (evenly spread over the library)
PROJECT_BLOCK = 65_536  # tokens projected and quantised at a time by a build


@dataclass
class TokenVectors:
    """One text's tokens (without the model's prefix and special tokens): ids and unit vectors. A build keeps
    a library's passages ``compact`` (int8 rows and a scale each, as the embedding cache stores them): a
    quarter of the memory, and a fresh build reads the same values a cached one does."""

    ids: np.ndarray  # int64 (n,)
    vectors: np.ndarray  # float32 (n, dimension), each of length 1; int8 when ``scales`` is given
    scales: np.ndarray | None = None  # float32 (n,): row i is vectors[i] * scales[i]

    def floats(self, rows: slice = slice(None)) -> np.ndarray:
        """The vectors of ``rows`` (all by default) as float32."""
        if self.scales is None:
            return self.vectors[rows]
        return self.vectors[rows].astype(np.float32) * self.scales[rows, None]

    def compact(self) -> TokenVectors:
        if self.scales is not None:
            return self
        return TokenVectors(self.ids, *quantize(self.vectors))


def unit_rows(hidden: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(hidden, axis=1, keepdims=True)
    return (hidden / np.maximum(norms, 1e-9)).astype(np.float32)


def quantize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 rows and each row's scale: ``row ≈ q * scale``."""
    peak = np.abs(vectors).max(axis=1) if len(vectors) else np.zeros(0, dtype=np.float32)
    scales = np.maximum(peak, 1e-9) / 127.0
    q = np.round(vectors / scales[:, None]).astype(np.int8)
    return q, scales.astype(np.float32)


def principal_components(sample: np.ndarray, dimensions: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the first ``dimensions`` principal directions (columns) of ``sample`` (a build passes
    every ``BASIS_SAMPLE``-th share of the library's tokens); a model no wider than ``dimensions`` keeps its
    own vectors (zero mean, identity)."""
    size = sample.shape[1]
    if size <= dimensions or len(sample) < dimensions:
        return np.zeros(size, dtype=np.float32), np.eye(size, dtype=np.float32)
    sample = sample.astype(np.float64)
    mean = sample.mean(axis=0)
    centred = sample - mean
    # the eigenvectors of the scatter matrix are the SVD's right singular vectors (to 1e-15 in cosine),
    # at a tenth of the cost; each is given the sign that makes its largest component positive
    _, vectors = np.linalg.eigh(centred.T @ centred)
    directions = vectors[:, ::-1][:, :dimensions]
    largest = np.abs(directions).argmax(axis=0)
    directions = directions * np.sign(directions[largest, np.arange(directions.shape[1])])
    return mean.astype(np.float32), directions.astype(np.float32)


def reduce(vectors: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Vectors on the principal directions, each of length 1 again."""
    return unit_rows((vectors - mean) @ basis) if len(vectors) else np.zeros((0, basis.shape[1]), np.float32)


def passage_counts(ids: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each token id that occurs, in order, and how many passages have it (passage ``i`` owns
    ``ids[offsets[i]:offsets[i + 1]]``): one sort of a (id, passage) key a token, then its runs. Every index
    load does it. ``np.unique`` of the (id, passage) pairs took 0.67 s at 5,855 passages (810k tokens) and
    15 s at 100k passages (14M tokens, random ids); this 0.05 s and 1.0 s."""
    passages = len(offsets) - 1
    if not len(ids):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    owner = np.repeat(np.arange(passages, dtype=np.int64), np.diff(offsets))
    keys = np.sort(np.asarray(ids, dtype=np.int64) * passages + owner)  # by id, then by passage
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]  # each (id, passage) once
    token = keys // passages
    starts = np.flatnonzero(np.concatenate([[True], token[1:] != token[:-1]]))
    return token[starts], np.diff(np.append(starts, len(token)))


class TokenSource(Protocol):
    """A library's passages' token vectors, in passage order: their counts, then the vectors a block of
    passages at a time (read as often as asked)."""

    def lengths(self) -> np.ndarray: ...

    def blocks(self) -> Iterator[list[TokenVectors]]: ...


class ListedTokens:
    """A ``TokenSource`` over a list held in memory (a build without a cache, a test)."""

    def __init__(self, passages: list[TokenVectors]) -> None:
        self.passages = passages

    def lengths(self) -> np.ndarray:
        return np.array([len(t.ids) for t in self.passages], dtype=np.int64)

    def blocks(self) -> Iterator[list[TokenVectors]]:
        yield self.passages


class TokenIndex:
    """Every passage's token vectors, in passage order: passage ``i`` owns rows ``offsets[i]:offsets[i+1]``.
    Stored reduced (``mean``, ``basis``: see ``reduce``) and quantised."""

    def __init__(self, vectors: np.ndarray, scales: np.ndarray, ids: np.ndarray, offsets: np.ndarray,
                 mean: np.ndarray, basis: np.ndarray) -> None:
        self.vectors = vectors
        self.scales = np.asarray(scales, dtype=np.float32)
        self.ids = np.asarray(ids, dtype=np.int64)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.basis = np.asarray(basis, dtype=np.float32)
        passages = len(self.offsets) - 1
        # IDF of a token id over the passages; an id no passage has gets the highest (it cannot be matched
        # by its like, and it weighs as the rarest word)
        self.known_ids, counts = passage_counts(self.ids, self.offsets)
        self.known_idf = np.log(max(passages, 1) / (1.0 + counts)) + 1.0
        self.unseen_idf = float(np.log(max(passages, 1)) + 1.0)

    @classmethod
    def build(cls, passages: list[TokenVectors] | TokenSource, dimensions: int = TOKEN_DIMENSIONS,
              directory: Path | None = None) -> TokenIndex:
        """The index of every passage's tokens, from a list or from a ``TokenSource`` read twice, a block of
        passages at a time (the embedding cache's: ``index.embed_cache.CachedTokens``), so that a build never
        holds the library's token vectors at once (at 100k passages about 5 GB as int8). The components are
        fitted on an even sample of the tokens; the tokens are projected and quantised a block at a time,
        straight into the index's int8 rows — with ``directory``, a file there, mapped (the index's
        ``VECTORS_FILE``: 2.7 GB at 100k passages), not memory."""
        source = ListedTokens(passages) if isinstance(passages, list) else passages
        lengths = source.lengths()
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        total = int(offsets[-1])
        step = max(1, total // BASIS_SAMPLE)
        # every step-th token of the library, counting across passages
        sample: list[np.ndarray] = []
        size, position = 0, 0
        for block in source.blocks():
            for t in block:
                if t.vectors.ndim == 2 and not size:
                    size = t.vectors.shape[1]
                if len(t.ids):
                    sample.append(t.floats(slice((-int(offsets[position])) % step, None, step)))
                position += 1
        mean, basis = principal_components(np.vstack(sample) if sample else np.zeros((0, size), np.float32),
                                           dimensions)
        del sample
        shape = (total, basis.shape[1])
        vectors: np.ndarray
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            vectors = np.lib.format.open_memmap(directory / VECTORS_FILE, mode="w+", dtype=np.int8, shape=shape)
        else:
            vectors = np.zeros(shape, dtype=np.int8)
        scales = np.zeros(total, dtype=np.float32)
        ids = np.zeros(total, dtype=np.int64)
        rows: list[np.ndarray] = []
        start = end = 0  # the rows of the passages gathered for projection
        last, position = len(lengths) - 1, 0
        for block in source.blocks():
            for t in block:
                if len(t.ids):
                    rows.append(t.floats())
                    ids[end:end + len(t.ids)] = t.ids
                    end += len(t.ids)
                if rows and (position == last or end - start >= PROJECT_BLOCK):
                    vectors[start:end], scales[start:end] = quantize(reduce(np.vstack(rows), mean, basis))
                    start, rows = end, []
                position += 1
        return cls(vectors, scales, ids, offsets, mean, basis)

    def subset(self, positions: list[int]) -> TokenIndex:
        """The token vectors of the passages at ``positions`` alone (the library's components kept; the IDF
        that of these passages)."""
        rows = [np.arange(self.offsets[p], self.offsets[p + 1]) for p in positions]
        taken = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        return TokenIndex(np.asarray(self.vectors[taken]), self.scales[taken], self.ids[taken], offsets,
                          self.mean, self.basis)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        target = (directory / VECTORS_FILE).resolve()
        if isinstance(self.vectors, np.memmap) and Path(str(self.vectors.filename)) == target:
            self.vectors.flush()  # built straight into that file
        else:
            np.save(directory / VECTORS_FILE, self.vectors)
        np.save(directory / SCALES_FILE, self.scales)
        np.save(directory / IDS_FILE, self.ids)
        np.save(directory / OFFSETS_FILE, self.offsets)
        np.save(directory / MEAN_FILE, self.mean)
        np.save(directory / BASIS_FILE, self.basis)

    @classmethod
    def load(cls, directory: Path) -> TokenIndex:
        return cls(np.load(directory / VECTORS_FILE, mmap_mode="r"), np.load(directory / SCALES_FILE),
                   np.load(directory / IDS_FILE), np.load(directory / OFFSETS_FILE),
                   np.load(directory / MEAN_FILE), np.load(directory / BASIS_FILE))

    @property
    def passages(self) -> int:
        return len(self.offsets) - 1

    def idf(self, ids: np.ndarray) -> np.ndarray:
        where = np.searchsorted(self.known_ids, ids)
        where = np.minimum(where, max(len(self.known_ids) - 1, 0))
        found = (self.known_ids[where] == ids) if len(self.known_ids) else np.zeros(len(ids), dtype=bool)
        return np.where(found, self.known_idf[where] if len(self.known_ids) else 0.0, self.unseen_idf)

    def match(self, positions: np.ndarray, question: TokenVectors) -> tuple[np.ndarray, np.ndarray]:
        """For each passage at ``positions``: the IDF-weighted mean of the question's tokens' best cosines
        with its tokens, and their lower quartile (``LOW_QUANTILE``). Zeros for a question without tokens."""
        n = len(positions)
        if n == 0 or len(question.ids) == 0:
            return np.zeros(n), np.zeros(n)
        starts, ends = self.offsets[positions], self.offsets[np.asarray(positions) + 1]
        lengths = ends - starts
        rows = np.concatenate([np.arange(s, e) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)])
        if len(rows) == 0:
            return np.zeros(n), np.zeros(n)
        # (all candidates' tokens, question tokens), each passage token's scale applied to its row after the
        # product (this order is 40 % faster than its transpose)
        sims = np.asarray(self.vectors[rows], dtype=np.float32) @ reduce(question.vectors, self.mean, self.basis).T
        sims *= self.scales[rows][:, None]
        best = np.full((n, len(question.ids)), -1.0, dtype=np.float32)
        filled = lengths > 0
        cuts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[filled]
        best[filled] = np.maximum.reduceat(sims, cuts, axis=0)
        weights = self.idf(question.ids)
        mean = best @ weights / weights.sum()
        low = np.percentile(best, LOW_QUANTILE, axis=1)
        mean[~filled] = 0.0
        low[~filled] = 0.0
        return mean.astype(np.float64), low.astype(np.float64)
