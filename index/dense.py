"""Dense index: FAISS inner product over L2-normalised vectors (= cosine similarity).

The vectors are stored in half precision (FAISS's fp16 scalar quantizer): a search reads half the bytes, so
it takes about half the time, and an index takes half the memory. A cosine moves by less than 1e-4 (at most
7e-5 over 20k real passages and 217 questions); recall@50 against float32 is 0.999 at 100k passages.

The index type follows the corpus size. Up to ``EXACT_LIMIT`` vectors an exact scan of every vector is
fast enough (about 4 ms at 100k on one core). Above it, an inverted-file index (``2·√n`` k-means lists,
the nearest fifth of them scanned per query) scans a fifth of the vectors. Passage embeddings of one model
crowd into a narrow cone, so fewer probes lose recall fast: at 100k real passages, recall@10 against exact
search was 0.98 scanning a quarter of 512 lists, 0.93 an eighth, 0.81 a sixteenth. `make bench` reports
the recall kept at 1M.
"""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np

FILE_NAME = "dense.faiss"
EXACT_LIMIT = 200_000
PROBE_SHARE = 0.2  # share of the lists scanned per query
TRAIN_PER_LIST = 64  # k-means sample: this many vectors per list
HALF = faiss.ScalarQuantizer.QT_fp16


class DenseIndex:
    def __init__(self, index: faiss.Index) -> None:
        self._index = index
        # an exact half-precision index's codes as an array over FAISS's own memory (no copy): picking a few
        # hundred rows and decoding them is three times faster than FAISS's reconstruct_batch
        self._codes: np.ndarray | None = None
        if isinstance(index, faiss.IndexScalarQuantizer) and index.ntotal:
            codes = faiss.rev_swig_ptr(index.codes.data(), index.ntotal * index.code_size)
            self._codes = codes.reshape(index.ntotal, index.code_size)
        ivf = faiss.try_extract_index_ivf(index) if not isinstance(index, faiss.IndexFlatCodes) else None
        if ivf is not None:
            ivf.nprobe = max(1, round(ivf.nlist * PROBE_SHARE))
            ivf.make_direct_map()  # so BM25-only candidates can be scored by their stored vector

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    @property
    def dimension(self) -> int:
        return int(self._index.d)

    @property
    def kind(self) -> str:
        if isinstance(self._index, faiss.IndexFlatCodes):  # float32 (an index built before half precision) or fp16
            return "exact"
        ivf = faiss.extract_index_ivf(self._index)
        return f"IVF {ivf.nlist} lists, {ivf.nprobe} probed"

    @classmethod
    def build(cls, vectors: np.ndarray, exact_limit: int = EXACT_LIMIT) -> DenseIndex:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        count, dimension = vectors.shape
        index: faiss.Index
        if count <= exact_limit:
            index = faiss.IndexScalarQuantizer(dimension, HALF, faiss.METRIC_INNER_PRODUCT)
        else:
            lists = int(2 * math.sqrt(count))
            index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dimension), dimension, lists, HALF,
                                                  faiss.METRIC_INNER_PRODUCT)
            sample = np.random.default_rng(0).choice(count, min(count, lists * TRAIN_PER_LIST), replace=False)
            index.train(vectors[np.sort(sample)])
        if count:
            index.add(vectors)
        return cls(index)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(chunk positions, cosine scores) of the ``k`` nearest chunks, best first."""
        k = min(k, self.size)
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores, ids = self._index.search(np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), k)
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep]

    def best_scores(self, queries: np.ndarray) -> np.ndarray:
        """Each query's best cosine over the index, in one FAISS call (many queries share each pass over the
        vectors); 0 for every query when the index is empty."""
        queries = np.ascontiguousarray(queries.reshape(-1, self.dimension), dtype=np.float32)
        if not self.size:
            return np.zeros(len(queries), dtype=np.float32)
        scores, _ = self._index.search(queries, 1)
        return scores[:, 0]

    def save(self, directory: Path) -> None:
        faiss.write_index(self._index, str(directory / FILE_NAME))

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> DenseIndex:
        """Read the index; ``mmap`` maps the vectors from the file instead of copying them, so every worker
        of a node shares one copy in the page cache (1M passages: 1.5 GB once, not once per worker)."""
        path = str(directory / FILE_NAME)
        if mmap:
            try:
                return cls(faiss.read_index(path, faiss.IO_FLAG_MMAP_IFC))
            except RuntimeError:  # an index type FAISS cannot map: read it into memory
                pass
        return cls(faiss.read_index(path))

    def vectors(self, positions: list[int] | np.ndarray) -> np.ndarray:
        """The stored vectors of the given chunk positions."""
        if not len(positions):
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self._codes is not None:
            return self._index.sa_decode(self._codes[np.asarray(positions, dtype=np.int64)])
        return np.asarray(self._index.reconstruct_batch(np.asarray(positions, dtype=np.int64)), dtype=np.float32)
