"""Passage embeddings cached by content hash, so a re-index embeds only new or changed text.

One SQLite file per instance; the key covers the model name and the exact text the model saw. A passage's
token vectors (index.token_match) are kept beside its vector, int8 with a scale per token. Its jieba words
and character bigrams are kept too (``lexical``), keyed by the tokenizer's fingerprint and the text, so a
re-index cuts only new or changed passages (cutting every passage again was 14.6 s of a 10k-passage build).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import numpy as np

from index.token_match import TokenVectors

PASSAGE_BLOCK = 2048  # passages' token vectors read at a time by CachedTokens (about 100 MB at 2048)


class EmbeddingCache:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, dim INTEGER, vector BLOB)")
        self._db.execute("CREATE TABLE IF NOT EXISTS tokens (key TEXT PRIMARY KEY, dim INTEGER, ids BLOB, "
                         "vectors BLOB, scales BLOB)")
        self._db.execute("CREATE TABLE IF NOT EXISTS lexical (key TEXT PRIMARY KEY, tokens TEXT, bigrams TEXT)")
        self._db.commit()

    @staticmethod
    def key(model: str, text: str) -> str:
        return hashlib.sha256(f"{model}\0{text}".encode()).hexdigest()

    def _rows(self, columns: str, table: str, keys: list[str], dimension: int | None = None) -> Iterator[tuple]:
        """(key, *columns) of the rows of ``table`` under ``keys`` (and of ``dimension``), 500 keys a query."""
        where = "" if dimension is None else " AND dim = ?"
        for start in range(0, len(keys), 500):
            batch = keys[start:start + 500]
            marks = ",".join("?" * len(batch))
            yield from self._db.execute(f"SELECT key, {columns} FROM {table} WHERE key IN ({marks}){where}",
                                        batch if dimension is None else [*batch, dimension])

    def get_many(self, keys: list[str], dimension: int) -> dict[str, np.ndarray]:
        return {key: np.frombuffer(blob, dtype=np.float32).copy()
                for key, blob in self._rows("vector", "vectors", keys, dimension)}

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO vectors (key, dim, vector) VALUES (?, ?, ?)",
            [(k, int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items.items()],
        )
        self._db.commit()

    def get_tokens_many(self, keys: list[str], dimension: int) -> dict[str, TokenVectors]:
        # kept compact: a library's tokens as floats would take four times the memory
        return {key: TokenVectors(np.frombuffer(ids, dtype=np.int64).copy(),
                                  np.frombuffer(vectors, dtype=np.int8).reshape(-1, dimension).copy(),
                                  np.frombuffer(scales, dtype=np.float32).copy())
                for key, ids, vectors, scales in self._rows("ids, vectors, scales", "tokens", keys, dimension)}

    def put_tokens_many(self, items: dict[str, TokenVectors]) -> None:
        rows = []
        for key, t in items.items():
            small = t.compact()
            rows.append((key, int(small.vectors.shape[1]), np.ascontiguousarray(small.ids, dtype=np.int64).tobytes(),
                         small.vectors.tobytes(), cast(np.ndarray, small.scales).tobytes()))
        self._db.executemany("INSERT OR REPLACE INTO tokens (key, dim, ids, vectors, scales) VALUES (?, ?, ?, ?, ?)",
                             rows)
        self._db.commit()

    def token_counts(self, keys: list[str], dimension: int) -> dict[str, int]:
        """How many tokens each of ``keys`` that has token vectors cached has (from the length of its ids,
        without reading the vectors)."""
        return {key: size // 8 for key, size in self._rows("length(ids)", "tokens", keys, dimension)}  # int64 ids

    def get_lexical_many(self, keys: list[str]) -> dict[str, tuple[list[str], list[str]]]:
        """(jieba tokens, character bigrams) of the texts cached under ``keys``."""
        return {key: (json.loads(tokens), json.loads(bigrams))
                for key, tokens, bigrams in self._rows("tokens, bigrams", "lexical", keys)}

    def put_lexical_many(self, items: dict[str, tuple[list[str], list[str]]]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO lexical (key, tokens, bigrams) VALUES (?, ?, ?)",
                             [(key, json.dumps(tokens, ensure_ascii=False), json.dumps(bigrams, ensure_ascii=False))
                              for key, (tokens, bigrams) in items.items()])
        self._db.commit()

    def close(self) -> None:
        self._db.close()


class CachedTokens:
    """The token vectors of passages ``keys`` (in order) as the cache holds them: a ``TokenSource`` for
    ``TokenIndex.build`` that reads ``PASSAGE_BLOCK`` passages at a time. Every key must be cached."""

    def __init__(self, cache: EmbeddingCache, keys: list[str], dimension: int) -> None:
        self.cache, self.keys, self.dimension = cache, keys, dimension

    def lengths(self) -> np.ndarray:
        counts = self.cache.token_counts(list(dict.fromkeys(self.keys)), self.dimension)
        missing = [k for k in self.keys if k not in counts]
        if missing:
            raise KeyError(f"{len(missing)} passages' token vectors are not in the cache")
        return np.array([counts[k] for k in self.keys], dtype=np.int64)

    def blocks(self) -> Iterator[list[TokenVectors]]:
        for start in range(0, len(self.keys), PASSAGE_BLOCK):
            part = self.keys[start:start + PASSAGE_BLOCK]
            found = self.cache.get_tokens_many(list(dict.fromkeys(part)), self.dimension)
            yield [found[k] for k in part]
