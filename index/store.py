"""Versioned index directories with a manifest and an atomic switch.

Layout under the index root (in the Flask instance folder)::

    CURRENT                     the serving version's name, replaced atomically (os.replace); PREVIOUS the
                                one before it. A cluster publishes the serving version in its database
                                instead (``VersionPointer``; bot.versions)
    v20261125-013000-1a2b3c/    one complete build: manifest.json, chunks.jsonl, words/ (each passage's
                                search tokens, index.chunk_tokens; tokens.jsonl before; and each
                                document's title words, title_words.json), userdict.txt,
                                dense.faiss, bm25/ (jieba words), bm25-bigram/,
                                everyday.npy and errands.npy (the everyday questions' and the personal
                                errands' vectors, index.calibration), sentences/ (index.sentences),
                                token-vectors/ (every passage's token vectors, index.token_match)
    .building-…/                a build in progress; renamed into place only when complete

A build writes everything into ``.building-…``, renames it to its version name, then switches CURRENT.
A crash at any point leaves CURRENT naming the previous complete version; ``clean_leftovers`` removes
half-built directories at the next start.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

import faiss
import numpy as np

from index.bm25 import BM25Index
from index.calibration import errand_questions, everyday_questions
from index.chunk import DEFAULT_TARGET_CHARS, Chunk, chunk_document
from index.chunk_tokens import ChunkTokens
from index.dense import DenseIndex
from index.embed import Embedder, SpanEmbedder, TokenEmbedder, gives_spans, gives_tokens
from index.embed_cache import CachedTokens, EmbeddingCache
from index.ingest import Document
from index.metadata import STATUS_IN_FORCE, link_series
from index.rank import LearnedModels
from index.search import HybridSearcher
from index.sentence_map import SentenceMap, for_model
from index.sentences import SentenceIndex
from index.sources import SourceArchive, text_key
from index.synonyms import Synonyms
from index.token_match import ListedTokens, TokenIndex, TokenSource, TokenVectors
from index.tokenize import Tokenizer, find_coined_terms

SENTENCES_DIR = "sentences"
WORDS_DIR = "words"  # every passage's search tokens as numbers (index.chunk_tokens); before: tokens.jsonl
TITLE_WORDS_FILE = "title_words.json"  # in words/: each document's title words (HybridSearcher.title_words)
TOKENS_DIR = "token-vectors"
QUERY_KEY = "query\0"  # the embedding cache's key of a question starts so; a passage's never does
MANIFEST_VERSION = 5  # 2: a character-bigram BM25 index beside the jieba one, everyday.npy; 3: sentences/;
# 4: token-vectors/ (index.token_match; absent when the embedder gives no token vectors); 5: errands.npy
SENTENCE_VECTORS = ("embedded", "pooled")  # how a build makes sentence vectors (the SENTENCE_VECTORS setting)
CURRENT_FILE = "CURRENT"
PREVIOUS_FILE = "PREVIOUS"
SOURCES_DIR = "sources"  # the documents' cleaned texts by content (index.sources), kept across versions
BUILDING_PREFIX = ".building-"
EMBED_BATCH = 32

Progress = Callable[[int, int], None]  # (done, total) chunks embedded


class IndexStoreError(RuntimeError):
    """Base class for index store errors."""


class NoIndexError(IndexStoreError):
    pass


class IndexMismatchError(IndexStoreError):
    pass


@dataclass
class LoadedIndex:
    version: str
    path: Path
    manifest: dict
    searcher: HybridSearcher
    terms: list[str]  # the coined terms the documents quote, as found (the jieba user dictionary)

    @property
    def chunks(self) -> list[Chunk]:
        return self.searcher.chunks


class VersionPointer(Protocol):
    """Where the serving version is published: a file beside the versions (one machine) or a shared
    database (a cluster: ``bot.versions.DatabasePointer``)."""

    def read(self) -> str | None: ...

    def write(self, version: str) -> None: ...

    def history(self, limit: int = 10) -> list[str]:
        """Versions activated before, newest first (the first is the serving one)."""
        ...


class FilePointer:
    """``CURRENT`` replaced atomically (os.replace); ``PREVIOUS`` names the version it replaced."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def read(self) -> str | None:
        try:
            return (self.root / CURRENT_FILE).read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def write(self, version: str) -> None:
        before = self.read()
        if before and before != version:
            _replace_text(self.root / PREVIOUS_FILE, before)
        _replace_text(self.root / CURRENT_FILE, version)

    def history(self, limit: int = 10) -> list[str]:
        out = [self.read()]
        try:
            out.append((self.root / PREVIOUS_FILE).read_text(encoding="utf-8").strip())
        except FileNotFoundError:
            pass
        return [v for v in out if v][:limit]


def _replace_text(path: Path, value: str) -> None:
    tmp = path.parent / f".{CURRENT_FILE}.{os.getpid()}.tmp"
    tmp.write_text(value + "\n", encoding="utf-8")
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class IndexStore:
    def __init__(self, root: Path, keep: int = 3, pointer: VersionPointer | None = None) -> None:
        self.root = Path(root)
        self.keep = keep
        self.root.mkdir(parents=True, exist_ok=True)
        self.pointer: VersionPointer = pointer or FilePointer(self.root)
        self.sources = SourceArchive(self.root / SOURCES_DIR)

    # ---------------------------------------------------------------- versions

    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and p.name.startswith("v") and (p / "manifest.json").exists())

    def current(self) -> str | None:
        name = self.pointer.read()
        return name if name and (self.root / name / "manifest.json").exists() else None

    def previous(self) -> str | None:
        """The version that served just before the serving one (what a rollback goes back to)."""
        current = self.current()
        return next((v for v in self.pointer.history() if v != current and (self.root / v).is_dir()), None)

    def activate(self, version: str) -> None:
        if not (self.root / version / "manifest.json").exists():
            raise NoIndexError(f"index version {version!r} does not exist; see `flask --app server index versions`")
        self.pointer.write(version)

    def manifest(self, version: str) -> dict:
        return json.loads((self.root / version / "manifest.json").read_text(encoding="utf-8"))

    def clean_leftovers(self) -> list[str]:
        """Remove half-built directories and stray temp files left by a crashed build."""
        removed = []
        for p in self.root.iterdir():
            if p.name.startswith(BUILDING_PREFIX) or (p.name.startswith(f".{CURRENT_FILE}.") and p.is_file()):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                removed.append(p.name)
        return removed

    def prune(self) -> list[str]:
        """Keep ``keep`` versions: the serving one, the one that served just before it (a rollback must
        stay possible, and another node may still be serving it), then the newest."""
        kept = [v for v in (self.current(), self.previous()) if v]
        for version in reversed(self.versions()):
            if len(kept) >= max(self.keep, 2):
                break
            if version not in kept:
                kept.append(version)
        removed = [v for v in self.versions() if v not in kept]
        for version in removed:
            shutil.rmtree(self.root / version, ignore_errors=True)
        return removed

    # ------------------------------------------------------------------ build

    def build(self, documents: Iterable[Document], embedder: Embedder, *,
              target_chars: int = DEFAULT_TARGET_CHARS, progress: Progress | None = None,
              activate: bool = True, cache: EmbeddingCache | None = None,
              check: Callable[[LoadedIndex], None] | None = None, synonyms: Synonyms | None = None,
              models: LearnedModels | None = None, pooled_sentences: bool = False) -> str:
        """Build a new version from ``documents`` and (by default) switch to it. Returns its name.

        ``cache`` skips embedding passages seen before. ``check`` gets the new version loaded before the
        switch; if it raises, the version is removed and the serving one stays. ``pooled_sentences``: map
        the sentence vectors from the passage pass (``index.sentence_map``) where a map fits the model,
        instead of embedding the sentences.
        """
        started = time.time()
        documents = list(documents)
        linked: list[dict] = [{**d.meta, "doc_id": d.doc_id, "title": d.title, "date": d.date} for d in documents]
        link_series(linked)  # series across this build's documents, newest last
        chunks = [c for doc in documents for c in chunk_document(doc, target_chars)]
        if not chunks:
            raise IndexStoreError("no text to index: the corpus is empty")
        terms = find_coined_terms(doc.text for doc in documents)
        tokenizer = Tokenizer(terms)
        texts = [c.context_text() for c in chunks]
        token_lists, bigram_lists = _lexical(texts, tokenizer, cache)

        corpus_hash = hashlib.sha256(
            "\n".join(sorted(f"{d.doc_id}:{d.sha256 or hashlib.sha256(d.text.encode()).hexdigest()}"
                             for d in documents)).encode()
        ).hexdigest()
        version = dt.datetime.now(dt.UTC).strftime("v%Y%m%d-%H%M%S-%f") + "-" + corpus_hash[:6]
        work = self.root / f"{BUILDING_PREFIX}{version}"
        work.mkdir()
        try:
            vectors, embedded, passage_tokens = _embed(texts, embedder, cache, progress,
                                                       with_tokens=gives_tokens(embedder))
            dense = DenseIndex.build(vectors)
            token_index = TokenIndex.build(passage_tokens, directory=work / TOKENS_DIR) \
                if passage_tokens is not None else None
            sentence_map = pooling_map(embedder, pooled_sentences)
            pooled = sentence_map is not None and passage_tokens is not None
            if pooled:  # mapped from the passage pass's token vectors: no second model pass
                sentences = SentenceIndex.pooled(chunks, vectors, cast(TokenSource, passage_tokens),
                                                 cast(SpanEmbedder, embedder).token_spans,
                                                 cast(SentenceMap, sentence_map))
            else:
                sentences = SentenceIndex.build(chunks, lambda texts: _embed(texts, embedder, cache, None)[0],
                                                embedder.dimension)
            bm25 = BM25Index.build(token_lists)
            bigram_bm25 = BM25Index.build(bigram_lists)
            searcher = HybridSearcher(chunks, token_lists, bm25, dense, embedder, tokenizer,
                                      bigram_bm25=bigram_bm25, synonyms=synonyms, models=models,
                                      sentences=sentences, token_index=token_index,
                                      everyday=_embed_queries(everyday_questions(), embedder, cache),
                                      errands=_embed_queries(errand_questions(), embedder, cache))
            calibration = searcher.calibration
            np.save(work / "everyday.npy", searcher.everyday)
            np.save(work / "errands.npy", searcher.errands)
            dense.save(work)
            sentences.save(work / SENTENCES_DIR)
            if token_index is not None:
                token_index.save(work / TOKENS_DIR)
            bm25.save(work / "bm25")
            bigram_bm25.save(work / "bm25-bigram")
            _write_jsonl(work / "chunks.jsonl", (c.to_dict() for c in chunks))
            searcher.chunk_tokens.save(work / WORDS_DIR)
            _write_json(work / WORDS_DIR / TITLE_WORDS_FILE, searcher.title_words)
            (work / "userdict.txt").write_text("\n".join(terms), encoding="utf-8")
            per_document = Counter(c.doc_id for c in chunks)
            manifest = {
                "manifest_version": MANIFEST_VERSION,
                "version": version,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "build_seconds": round(time.time() - started, 2),
                "model": embedder.name,
                "dimension": embedder.dimension,
                "chunker": {"target_chars": target_chars},
                "sentence_vectors": "pooled" if pooled else "embedded",
                "counts": {"documents": len(documents), "chunks": len(chunks), "sentences": sentences.size,
                           "tokens": len(token_index.ids) if token_index is not None else 0,
                           "coined_terms": len(terms),
                           "embedded": embedded, "from_cache": len(chunks) - embedded},
                "corpus_sha256": corpus_hash,
                "calibration": calibration,
                "documents": [
                    {"doc_id": d.doc_id, "title": d.title, "date": d.date, "author": d.author,
                     "source": d.source, "sha256": d.sha256, "text_key": text_key(d.text),
                     "chunks": per_document[d.doc_id]} | document_metadata(d, linked[i])
                    for i, d in enumerate(documents)
                ],
                "versions": {"faiss": faiss.__version__, "numpy": np.__version__},
            }
            _write_json(work / "manifest.json", manifest)
            for i, d in enumerate(documents):  # what 查看原文 links of this version show, kept after it is pruned
                self.sources.put(d, document_metadata(d, linked[i]))
            os.rename(work, self.root / version)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        if check is not None:
            try:
                check(self.load(embedder, version, synonyms=synonyms, models=models))
            except BaseException:
                shutil.rmtree(self.root / version, ignore_errors=True)
                raise
        if activate:
            self.activate(version)
            self.prune()
        return version

    # ------------------------------------------------------------------- load

    def load(self, embedder: Embedder, version: str | None = None, synonyms: Synonyms | None = None,
             models: LearnedModels | None = None) -> LoadedIndex:
        """Load a version (the serving one when None); ``synonyms`` and ``models`` rewrite and rank the
        questions (the shipped dictionary and learned models when None)."""
        version = version or self.current()
        if version is None:
            raise NoIndexError(
                f"no index in {self.root}; build one with `flask --app server index build` (or `make run`)"
            )
        path = self.root / version
        manifest = self.manifest(version)
        if manifest.get("manifest_version") != MANIFEST_VERSION:
            raise IndexMismatchError(
                f"index {version} has layout {manifest.get('manifest_version')}, this code reads layout "
                f"{MANIFEST_VERSION}; rebuild with `flask --app server index build`"
            )
        if manifest.get("model") != embedder.name or manifest.get("dimension") != embedder.dimension:
            raise IndexMismatchError(
                f"index {version} was built with model {manifest.get('model')!r} "
                f"(dimension {manifest.get('dimension')}), but the running model is {embedder.name!r} "
                f"(dimension {embedder.dimension}); rebuild with `flask --app server index build` "
                "or set FLASK_EMBED_MODEL to the model the index was built with"
            )
        chunks = [Chunk.from_dict(row) for row in _read_jsonl(path / "chunks.jsonl")]
        # a version built before the words were kept as numbers has tokens.jsonl, a list of words a passage
        chunk_tokens = ChunkTokens.load(path / WORDS_DIR) if (path / WORDS_DIR).is_dir() \
            else list(_read_jsonl(path / "tokens.jsonl"))
        terms = [t for t in (path / "userdict.txt").read_text(encoding="utf-8").split("\n") if t]
        title_file = path / WORDS_DIR / TITLE_WORDS_FILE  # a version built before has none: tokenised at load
        title_words = json.loads(title_file.read_text(encoding="utf-8")) if title_file.exists() else None
        dense = DenseIndex.load(path)
        if dense.size != len(chunks):
            raise IndexMismatchError(f"index {version} is inconsistent: {dense.size} vectors, {len(chunks)} chunks")
        searcher = HybridSearcher(chunks, chunk_tokens, BM25Index.load(path / "bm25", len(chunks)), dense,
                                  embedder, Tokenizer(terms),
                                  bigram_bm25=BM25Index.load(path / "bm25-bigram", len(chunks)),
                                  synonyms=synonyms, models=models, calibration=manifest.get("calibration"),
                                  everyday=np.load(path / "everyday.npy", mmap_mode="r"),
                                  errands=np.load(path / "errands.npy", mmap_mode="r"),
                                  sentences=SentenceIndex.load(path / SENTENCES_DIR),
                                  token_index=TokenIndex.load(path / TOKENS_DIR)
                                  if (path / TOKENS_DIR).is_dir() else None,
                                  newest={d["doc_id"]: d["latest"] for d in manifest.get("documents", [])
                                          if d.get("latest")},
                                  title_words=title_words)
        return LoadedIndex(version=version, path=path, manifest=manifest, searcher=searcher, terms=terms)


def pooling_map(embedder: Embedder, pooled: bool) -> SentenceMap | None:
    """The map a build asked to pool (``pooled``) maps ``embedder``'s sentence vectors with: one fitted for the
    model, when the back end gives token vectors and their spans. None: the build embeds each sentence (the
    manifest's ``sentence_vectors`` says which)."""
    return for_model(embedder.name) if pooled and gives_spans(embedder) else None


def _lexical(texts: list[str], tokenizer: Tokenizer,
             cache: EmbeddingCache | None) -> tuple[list[list[str]], list[list[str]]]:
    """Each text's jieba tokens and character bigrams (for the two BM25 indexes), from the cache where the
    same tokenizer (``Tokenizer.fingerprint``: its rules and coined terms) cut the same text before."""
    keys = [EmbeddingCache.key(f"lexical:{tokenizer.fingerprint}", t) for t in texts]
    found = cache.get_lexical_many(keys) if cache else {}
    fresh: dict[str, tuple[list[str], list[str]]] = {}
    for key, text in zip(keys, texts, strict=True):
        if key not in found and key not in fresh:
            normalized = tokenizer.normalize(text)  # once for both
            fresh[key] = (tokenizer.tokens(normalized, normalized=True), tokenizer.bigrams(normalized, normalized=True))
    if cache and fresh:
        cache.put_lexical_many(fresh)
    found.update(fresh)
    return [found[key][0] for key in keys], [found[key][1] for key in keys]


def _embed_queries(texts: list[str], embedder: Embedder, cache: EmbeddingCache | None) -> np.ndarray:
    """Question vectors for ``texts`` (the everyday and errand references, index.calibration), from the
    cache where possible: the same 720 questions took about 5 s of every build. Cached apart from passages
    (the model reads a question with another prefix)."""
    if cache is None or not texts:
        return embedder.encode_queries(texts)
    keys = [EmbeddingCache.key(embedder.name, f"{QUERY_KEY}{t}") for t in texts]
    found = cache.get_many(keys, embedder.dimension)
    missing = [i for i, key in enumerate(keys) if key not in found]
    if missing:
        fresh = embedder.encode_queries([texts[i] for i in missing])
        new = {keys[i]: fresh[j] for j, i in enumerate(missing)}
        cache.put_many(new)
        found.update(new)
    return np.vstack([found[key] for key in keys])


def _embed(texts: list[str], embedder: Embedder, cache: EmbeddingCache | None, progress: Progress | None,
           with_tokens: bool = False) -> tuple[np.ndarray, int, TokenSource | None]:
    """Vectors for ``texts`` (from the cache where possible); also how many were newly embedded. Each
    distinct text is embedded once, shortest first, so that a batch holds texts of like length and pads
    little (sentences run from 10 to several hundred characters). ``with_tokens`` (an embedder that gives
    them): each text's token vectors too, from the same pass, as a source for ``TokenIndex.build`` — read
    back from the cache a block at a time when there is one (a library's tokens are gigabytes), else held."""
    vectors = np.zeros((len(texts), embedder.dimension), dtype=np.float32)
    keys = [EmbeddingCache.key(embedder.name, t) for t in texts]
    cached = cache.get_many(keys, embedder.dimension) if cache else {}
    if with_tokens and cache:  # a text needs its token vectors cached too, or it is embedded again
        present = cache.token_counts(keys, embedder.dimension)
        cached = {k: v for k, v in cached.items() if k in present}
    held: dict[str, TokenVectors] = {}  # without a cache, each text's token vectors
    wanted: dict[str, list[int]] = {}  # a text not cached -> every position that has it
    for i, key in enumerate(keys):
        if key in cached:
            vectors[i] = cached[key]
        else:
            wanted.setdefault(key, []).append(i)
    todo = sorted((positions[0] for positions in wanted.values()), key=lambda i: len(texts[i]))
    done = len(texts) - sum(len(positions) for positions in wanted.values())
    if progress:
        progress(done, len(texts))
    for start in range(0, len(todo), EMBED_BATCH):
        batch = todo[start:start + EMBED_BATCH]
        batch_texts = [texts[i] for i in batch]
        if with_tokens:
            fresh, fresh_tokens = cast(TokenEmbedder, embedder).encode_passages_with_tokens(
                batch_texts, batch_size=EMBED_BATCH)
        else:
            fresh, fresh_tokens = embedder.encode_passages(batch_texts, batch_size=EMBED_BATCH), []
        compact = [t.compact() for t in fresh_tokens]  # int8, as the cache keeps them
        for j, i in enumerate(batch):
            vectors[wanted[keys[i]]] = fresh[j]
            done += len(wanted[keys[i]])
        if cache:
            cache.put_many({keys[i]: fresh[j] for j, i in enumerate(batch)})
            if compact:
                cache.put_tokens_many({keys[i]: compact[j] for j, i in enumerate(batch)})
        else:
            held.update((keys[i], compact[j]) for j, i in enumerate(batch) if compact)
        if progress:
            progress(done, len(texts))
    source: TokenSource | None = None
    if with_tokens:
        source = CachedTokens(cache, keys, embedder.dimension) if cache else ListedTokens([held[k] for k in keys])
    return vectors, len(todo), source


MANIFEST_METADATA = ("issuer", "number", "status", "replaces", "effective", "kind", "series", "series_order",
                     "latest", "latest_title", "latest_date")


def document_metadata(doc: Document, linked: dict) -> dict:
    """What ranking and replies may use about a document: its policy metadata and series (``index.metadata``)."""
    meta = doc.meta | linked
    out = {name: meta[name] for name in MANIFEST_METADATA if meta.get(name) not in (None, "")}
    out.setdefault("status", STATUS_IN_FORCE)
    return out


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")


def _write_jsonl(path: Path, rows: Iterable[object]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> Iterable:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
