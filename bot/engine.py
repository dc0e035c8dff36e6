"""The retrieval engine as a Flask resource: embedder, index store and the answerer, loaded once.

``init_app`` attaches one Engine per app. The model and the serving index load at start-up when
``PRELOAD`` is set (the server does this; CLI commands load what they need). ``current_index``
notices when another process switched the serving version and loads it, so every worker follows a
re-index without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path

from flask import Flask, current_app

from bot.answer import Answerer, AnswerSettings
from bot.db import sqlite_url
from bot.jobs import Jobs
from bot.library import Library, check_chunk_count, with_setting
from bot.original import Links, check_base_url, link_secret
from bot.store import BotStore
from bot.versions import POLL_SECONDS, DatabasePointer
from index.embed import Embedder, limit_this_thread, load_embedder, set_threads
from index.embed_cache import EmbeddingCache
from index.ingest import Document, IngestError, LimitError, ReadLimits
from index.rank import DEFAULT_LEARNED, LearnedModels, ModelError
from index.store import (
    SENTENCE_VECTORS,
    IndexStore,
    IndexStoreError,
    LoadedIndex,
    NoIndexError,
    Progress,
    pooling_map,
)
from index.synonyms import DEFAULT_SYNONYMS, SynonymError, Synonyms

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, config: dict, instance_path: Path) -> None:
        self.config = config
        self.instance_path = instance_path
        self.bot_store = BotStore.open(database_url(config, instance_path), salt=config.get("LOG_SALT") or None,
                                       node=config.get("NODE_NAME") or None)
        index_dir = Path(config.get("INDEX_DIR") or instance_path / "indexes")
        self.store = IndexStore(index_dir, keep=int(config["INDEX_KEEP"]),
                                pointer=DatabasePointer(self.bot_store, index_dir))
        self._embedder: Embedder | None = None
        self._index: LoadedIndex | None = None
        self._lock = threading.RLock()  # loading an index loads the model under the same lock
        self._loading: str | None = None
        self._poller: int | None = None  # the pid whose thread follows the serving version
        self.on_load: list[Callable[[LoadedIndex], None]] = []  # e.g. the admin's synonym groups
        self.library = Library(
            self.bot_store, Path(config.get("DOCUMENTS_DIR") or instance_path / "documents"),
            int(config["MAX_UPLOAD_BYTES"]),
            limits=ReadLimits(unpacked_bytes=int(config["MAX_UNPACKED_BYTES"]),
                              chars=int(config["MAX_DOCUMENT_CHARS"]), pdf_pages=int(config["MAX_PDF_PAGES"])),
            target_chars=int(config["CHUNK_TARGET_CHARS"]), max_chunks=int(config["MAX_CHUNKS_PER_DOCUMENT"]),
        )
        self.jobs = Jobs(self.bot_store, instance_path, config)
        self.cache = EmbeddingCache(instance_path / "cache" / "embeddings.sqlite3")
        self.links = Links(link_secret(config, self.bot_store), check_base_url(config.get("PUBLIC_BASE_URL")))
        self.answerer = Answerer(self.current_index, AnswerSettings(
            answer_threshold=_optional_float(config.get("ANSWER_THRESHOLD")),
            related_threshold=_optional_float(config.get("RELATED_THRESHOLD")),
            example_questions=tuple(config.get("EXAMPLE_QUESTIONS") or ()),
            link=self.links.url,
        ))

    # --------------------------------------------------------------- loading

    def start(self) -> None:
        """Load the model and the serving index now (server start-up)."""
        if self.config.get("SERVE_THREADS"):
            set_threads(int(self.config["SERVE_THREADS"]))
        removed = self.store.clean_leftovers()
        if removed:
            log.warning("removed leftovers of an interrupted index build: %s", ", ".join(removed))
        self.embedder()
        try:
            self.current_index()
        except NoIndexError as exc:
            log.error("%s", exc)
        self.follow_versions()

    def follow_versions(self) -> None:
        """Poll the published serving version every POLL_SECONDS in the background, so an activation on
        any node serves here within seconds even when no request comes (one thread per process)."""
        import os

        with self._lock:
            if self._poller == os.getpid():
                return
            self._poller = os.getpid()

        threading.Thread(target=_follow, args=(weakref.ref(self),), name="index-poll", daemon=True).start()

    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = load_embedder(str(self.config["EMBED_MODEL"]), self.instance_path / "models",
                                               backend=str(self.config["EMBED_BACKEND"]))
            return self._embedder

    def current_index(self) -> LoadedIndex:
        """The serving index. When the store's CURRENT pointer names another version (a re-index or a
        rollback, possibly by another process), that version is loaded in the background while the
        loaded one keeps answering, then swapped in: no request waits for a load or sees half of one."""
        serving = self.store.current()
        loaded = self._index
        if loaded is not None and (serving is None or serving == loaded.version):
            return loaded
        if loaded is not None:
            self._load_in_background(serving)
            return loaded
        with self._lock:
            if self._index is None:
                self._index = self._load(serving)
            return self._index

    def load_version(self, version: str | None) -> LoadedIndex:
        """Load a version (the serving one when None) with this app's dictionary and models; not cached.
        The ``on_load`` hooks then see it (the admin's synonym groups are layered on)."""
        index = self.store.load(self.embedder(), version, synonyms=self.synonyms(), models=self.models())
        for hook in self.on_load:
            hook(index)
        return index

    def synonyms(self) -> Synonyms:
        """The members' words dictionary (read at each index load, so an edit applies at the next one)."""
        path = self.config.get("SYNONYMS_FILE")
        try:
            return Synonyms.from_file(Path(path) if path else DEFAULT_SYNONYMS)
        except (OSError, SynonymError) as exc:
            raise IndexStoreError(f"cannot read the synonym dictionary: {exc}") from exc

    def models(self) -> LearnedModels:
        path = self.config.get("LEARNED_MODELS")
        try:
            return LearnedModels.load(Path(path) if path else DEFAULT_LEARNED)
        except ModelError as exc:
            raise IndexStoreError(str(exc)) from exc

    def _load(self, version: str | None) -> LoadedIndex:
        index = self.load_version(version)
        log.info("serving index %s (%s chunks)", index.version, len(index.chunks))
        return index

    def _load_in_background(self, version: str | None) -> None:
        with self._lock:
            if self._loading == version:
                return
            self._loading = version

        def load() -> None:
            limit_this_thread()
            try:
                index = self._load(version)
                with self._lock:
                    self._index = index
            except Exception:
                log.exception("could not load index version %s; still serving the previous one", version)
            finally:
                with self._lock:
                    self._loading = None

        threading.Thread(target=load, name="index-reload", daemon=True).start()

    def wait_for_version(self, version: str, timeout: float = 60.0) -> LoadedIndex:
        """Block until ``version`` serves here (tests and the CLI use this after a switch)."""
        deadline = time.monotonic() + timeout
        while True:
            index = self.current_index()
            if index.version == version or time.monotonic() > deadline:
                return index
            time.sleep(0.05)

    def status(self) -> dict:
        return {
            "node": self.bot_store.node,
            "model_loaded": self._embedder is not None,
            "model": self.config["EMBED_MODEL"],
            "index_loaded": self._index is not None,
            "index_version": self._index.version if self._index else None,
            "current_version": self.store.current(),
        }

    # -------------------------------------------------------------- building

    def corpus_documents(self) -> list[Document]:
        """The library's documents (seeded from CORPUS_DIR the first time)."""
        self.library.seed(Path(self.config["CORPUS_DIR"]))
        try:
            documents = self.library.documents()
        except LimitError as exc:  # a file added before a limit was lowered
            raise IngestError(with_setting(exc)) from exc
        if not documents:
            raise IngestError("the document library is empty: add documents first (flask docs add FILE)")
        return documents

    def outdated_sentences(self) -> str | None:
        """Why the serving index's sentence vectors are not what a build would make now (the SENTENCE_VECTORS
        setting: an index built before the default became ``pooled``), or None. Serving goes on either way; the
        learned models are fitted on the kind a build makes."""
        serving = self.store.current()
        if serving is None:
            return None
        made = self.store.manifest(serving).get("sentence_vectors", "embedded")
        pooled = pooling_map(self.embedder(), self.config["SENTENCE_VECTORS"] == "pooled") is not None
        wanted = "pooled" if pooled else "embedded"
        return None if made == wanted else f"its sentence vectors are {made}; a build now makes them {wanted}"

    def build(self, documents: Iterable[Document] | None = None, progress: Progress | None = None) -> str:
        """Build a version from the library (or ``documents``), check it, switch to it. A document that
        makes more than MAX_CHUNKS_PER_DOCUMENT passages stops the build before anything is embedded."""
        sentences = self.config["SENTENCE_VECTORS"]
        if sentences not in SENTENCE_VECTORS:
            raise IndexStoreError(f"SENTENCE_VECTORS is {sentences!r}: it must be one of {', '.join(SENTENCE_VECTORS)}")
        docs = list(documents) if documents is not None else self.corpus_documents()
        for doc in docs:
            try:
                check_chunk_count(doc, int(self.config["CHUNK_TARGET_CHARS"]),
                                  int(self.config["MAX_CHUNKS_PER_DOCUMENT"]))
            except LimitError as exc:
                raise IngestError(with_setting(exc)) from exc
        version = self.store.build(docs, self.embedder(), target_chars=int(self.config["CHUNK_TARGET_CHARS"]),
                                   progress=progress, cache=self.cache, check=smoke_check,
                                   synonyms=self.synonyms(), models=self.models(),
                                   pooled_sentences=sentences == "pooled")
        self.wait_for_version(version)
        return version


def _follow(ref: weakref.ref[Engine]) -> None:
    """The poller's loop; it holds the engine weakly, so a discarded app (tests) is freed and it ends."""
    while True:
        time.sleep(POLL_SECONDS)
        engine = ref()
        if engine is None:
            return
        try:
            engine.current_index()
        except Exception:
            log.exception("could not follow the serving index version")
        del engine


def smoke_check(index: LoadedIndex, samples: int = 3) -> None:
    """A new version must find its own passages: a sentence from a few chunks retrieves that chunk."""
    chunks = index.chunks
    step = max(len(chunks) // samples, 1)
    for chunk in chunks[::step][:samples]:
        probe = chunk.text[:60]
        hits = index.searcher.search(probe, k=5).hits
        if chunk.chunk_id not in [h.chunk.chunk_id for h in hits]:
            raise IndexStoreError(f"smoke check failed: {chunk.chunk_id} is not found by its own text")


def database_url(config: dict, instance_path: Path) -> str:
    """``DATABASE_URL`` (PostgreSQL for a cluster: ``postgresql+psycopg://…``), else SQLite in the instance."""
    return str(config.get("DATABASE_URL") or sqlite_url(instance_path / "bot.sqlite3"))


def _optional_float(value: object) -> float | None:
    return None if value in (None, "") else float(value)  # type: ignore[arg-type]


def init_app(app: Flask) -> Engine:
    engine = Engine(app.config, Path(app.instance_path))
    app.extensions["engine"] = engine
    if app.config.get("PRELOAD"):
        engine.start()
    return engine


def get_engine() -> Engine:
    return current_app.extensions["engine"]
