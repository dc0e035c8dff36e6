"""The retrieval engine as a Flask resource: embedder, index store and the answerer, loaded once.

``init_app`` attaches one Engine per app. The model and the serving index load at start-up when
``PRELOAD`` is set (the server does this; CLI commands load what they need). ``current_index``
notices when another process switched the serving version and loads it, so every worker follows a
re-index without a restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path

from flask import Flask, current_app

from bot.answer import Answerer, AnswerSettings
from index.embed import Embedder, load_embedder, set_threads
from index.ingest import Document, IngestError, load_file
from index.store import IndexStore, LoadedIndex, NoIndexError, Progress

log = logging.getLogger(__name__)
SUPPORTED_SUFFIXES = (".txt", ".md")


class Engine:
    def __init__(self, config: dict, instance_path: Path) -> None:
        self.config = config
        self.instance_path = instance_path
        self.store = IndexStore(instance_path / "indexes", keep=int(config["INDEX_KEEP"]))
        self._embedder: Embedder | None = None
        self._index: LoadedIndex | None = None
        self._lock = threading.Lock()
        self.answerer = Answerer(self.current_index, AnswerSettings(
            threshold=float(config["ABSTAIN_THRESHOLD"]),
            lexical_weight=float(config["ABSTAIN_LEXICAL_WEIGHT"]),
            example_questions=tuple(config.get("EXAMPLE_QUESTIONS") or ()),
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

    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = load_embedder(str(self.config["EMBED_MODEL"]), self.instance_path / "models")
            return self._embedder

    def current_index(self) -> LoadedIndex:
        """The serving index; reloaded when the store's CURRENT pointer names another version."""
        serving = self.store.current()
        loaded = self._index
        if loaded is not None and (serving is None or serving == loaded.version):
            return loaded
        embedder = self.embedder()
        with self._lock:
            if self._index is None or self._index.version != serving:
                index = self.store.load(embedder, serving, dense_weight=float(self.config["DENSE_WEIGHT"]))
                log.info("serving index %s (%s chunks)", index.version, len(index.chunks))
                self._index = index
            return self._index

    def status(self) -> dict:
        return {
            "model_loaded": self._embedder is not None,
            "model": self.config["EMBED_MODEL"],
            "index_loaded": self._index is not None,
            "index_version": self._index.version if self._index else None,
            "current_version": self.store.current(),
        }

    # -------------------------------------------------------------- building

    def corpus_documents(self) -> list[Document]:
        corpus = Path(self.config["CORPUS_DIR"])
        files = sorted(p for p in corpus.iterdir() if p.suffix.lower() in SUPPORTED_SUFFIXES) if corpus.is_dir() else []
        if not files:
            raise IngestError(f"no documents (.txt, .md) in {corpus}")
        return [load_file(p) for p in files]

    def build(self, documents: Iterable[Document] | None = None, progress: Progress | None = None) -> str:
        docs = list(documents) if documents is not None else self.corpus_documents()
        version = self.store.build(docs, self.embedder(), target_chars=int(self.config["CHUNK_TARGET_CHARS"]),
                                   progress=progress)
        self.current_index()
        return version


def init_app(app: Flask) -> Engine:
    engine = Engine(app.config, Path(app.instance_path))
    app.extensions["engine"] = engine
    if app.config.get("PRELOAD"):
        engine.start()
    return engine


def get_engine() -> Engine:
    return current_app.extensions["engine"]
