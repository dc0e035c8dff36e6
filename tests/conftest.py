"""Shared fixtures. The real model and a real index are built once per session in a temp folder."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from werkzeug.serving import make_server

from server import create_app

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for a model hub

# Property tests (tests/test_hostile.py): `make test` runs the quick, repeatable profile; `make fuzz`
# (HYPOTHESIS_PROFILE=fuzz) twenty times as many examples, freshly random, failures kept in .hypothesis/.
_RELAXED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
            HealthCheck.large_base_example]
settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_RELAXED, print_blob=True)
settings.register_profile("fuzz", max_examples=2000, deadline=None, suppress_health_check=_RELAXED, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SPEECH = ROOT / "corpus" / "quzhou-2018-organization-ministers-speech.txt"


@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL server for the session (initdb + pg_ctl in a temp folder, as an
    unprivileged user when root). Every storage test runs against it as well as SQLite."""
    import tempfile

    from deploy.ports import free_port
    from deploy.postgres import Postgres

    folder = Path(tempfile.mkdtemp(prefix="pytest-pg-"))  # not under pytest's root-only temp folder
    server = Postgres(folder / "data", free_port())
    server.init()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


_databases = iter(range(1, 1_000_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh empty database of each engine: SQLite in tmp_path, a new database on the session's server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    return request.getfixturevalue("postgres").create_database(f"test_{os.getpid()}_{next(_databases)}")


@pytest.fixture
def bot_store(db_url):
    from bot.store import BotStore

    store = BotStore.open(db_url, node="node-a")
    yield store
    store.engine.dispose()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """One converted copy of the bundled model for the whole session."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def built_instance(tmp_path_factory, models_dir) -> Path:
    """An instance folder with the real model and an index of the shipped corpus."""
    instance = tmp_path_factory.mktemp("instance")
    (instance / "models").symlink_to(models_dir, target_is_directory=True)
    app = create_app({"INSTANCE_PATH": str(instance)})
    with app.app_context():
        app.extensions["engine"].build()
    return instance


@pytest.fixture(scope="session")
def all_docs_instance(built_instance, tmp_path_factory) -> Path:
    """An instance with the shipped speech plus all 19 documents of ../shared/docs, added through the
    library and indexed once per session (about five minutes on two cores); copy it to change it."""
    instance = tmp_path_factory.mktemp("all-docs") / "instance"
    shutil.copytree(built_instance, instance, symlinks=True)
    app = create_app({"INSTANCE_PATH": str(instance), "TESTING": True})
    engine = app.extensions["engine"]
    with app.app_context():
        engine.library.seed(SPEECH.parent)
        for path in sorted((SHARED / "docs").glob("*.txt")):
            engine.library.add(path.name, path.read_bytes(), uploaded_by="test")
        engine.build()
    return instance


@pytest.fixture
def app(built_instance, tmp_path):
    """An app serving the shipped corpus, with its own copy of the instance folder."""
    instance = tmp_path / "instance"
    shutil.copytree(built_instance, instance, symlinks=True)
    app = create_app({"INSTANCE_PATH": str(instance), "TESTING": True, "PRELOAD": True})
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def answerer(app):
    return app.extensions["engine"].answerer


class HashEmbedder:
    """A deterministic stand-in for tests about storage, not about retrieval quality."""

    def __init__(self, name: str = "test-hash", dimension: int = 16) -> None:
        self.name = name
        self.dimension = dimension

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dimension, dtype=np.float32)
        for ch in text:
            v[ord(ch) % self.dimension] += 1.0
        n = np.linalg.norm(v)
        return v / n if n else v

    def encode_queries(self, texts):
        return np.vstack([self._vec(t) for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)

    def encode_passages(self, texts, batch_size: int = 32):
        return self.encode_queries(texts)


def lexical_models():
    """Learned models whose ranker weighs BM25 alone: for storage tests whose embedder is a stand-in."""
    from bot.fit import initial_models
    from index.rank import PASSAGE_FEATURES, LearnedModels, LinearModel

    base = initial_models()
    return LearnedModels(LinearModel.neutral(PASSAGE_FEATURES, {"bm25": 1.0}), base.answer, base.scope, base.tiers)


def make_app(built_instance, tmp_path, **config):
    instance = tmp_path / "instance"
    if not instance.exists():
        shutil.copytree(built_instance, instance, symlinks=True)
    return create_app({"INSTANCE_PATH": str(instance), "TESTING": True, "PRELOAD": True, **config})


@pytest.fixture
def wechat_app(built_instance, tmp_path):
    from tests.wechat_client import APP_ID, TOKEN

    return make_app(built_instance, tmp_path, WECHAT_TOKEN=TOKEN, WECHAT_APP_ID=APP_ID)


@pytest.fixture
def wechat(wechat_app):
    from tests.wechat_client import WeChatClient

    return WeChatClient(wechat_app.test_client())


@contextmanager
def served(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """``app`` on a real HTTP server on a free local port (for the browser tests); yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
