"""Flask app factory: configuration, logging, and each part's ``init_app``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask

from bot import admin, api, cli, console, engine, inputs, original, pipeline, store, wechat
from index.bundled_model import ADAPTED_MODEL_NAME
from index.chunk import DEFAULT_TARGET_CHARS

PROJECT_ROOT = Path(__file__).resolve().parent


def create_app(test_config: dict | None = None) -> Flask:
    """Create the app. Settings come from defaults, then ``FLASK_*`` environment variables, then
    ``test_config``. Runtime data lives in the instance folder (``FLASK_INSTANCE_PATH`` or ./instance)."""
    test_config = dict(test_config or {})
    instance_path = test_config.pop("INSTANCE_PATH", None) or os.environ.get("FLASK_INSTANCE_PATH")
    app = Flask(__name__, instance_path=str(Path(instance_path).resolve()) if instance_path else None,
                instance_relative_config=True)
    app.config.from_mapping(
        EMBED_MODEL=ADAPTED_MODEL_NAME,  # e5-small with the shipped policy-document adapter
        EMBED_BACKEND="onnx",
        CORPUS_DIR=str(PROJECT_ROOT / "corpus"),
        CHUNK_TARGET_CHARS=DEFAULT_TARGET_CHARS,
        SENTENCE_VECTORS="pooled",  # mapped from the passage pass (index.sentence_map); "embedded": a second pass
        ANSWER_THRESHOLD=None,  # None: the learned models' own tier thresholds (index/learned.json)
        RELATED_THRESHOLD=None,
        SYNONYMS_FILE=None,  # None: the shipped dictionary, index/synonyms.txt
        LEARNED_MODELS=None,  # None: the shipped models, index/learned.json
        EXAMPLE_QUESTIONS=[],
        INDEX_KEEP=3,
        DATABASE_URL=os.environ.get("DATABASE_URL"),  # None: SQLite in the instance folder
        NODE_NAME=None,  # None: the host name (FLASK_NODE_NAME names each node of a cluster)
        INDEX_DIR=None,  # None: <instance>/indexes; a cluster's nodes share one folder
        DOCUMENTS_DIR=None,  # None: <instance>/documents; shared like INDEX_DIR
        PRELOAD=False,
        SERVE_THREADS=1,
        BUILD_THREADS=1,  # threads of a re-index job (torch, onnxruntime, FAISS, BLAS) while requests are served
        BUILD_NICE=0,  # raise it (e.g. 10) to let requests win over a build when both want the cores
        WECHAT_TOKEN=None,
        WECHAT_APP_ID="",
        WECHAT_AES_KEY=None,
        WECHAT_FRESHNESS_SECONDS=300,
        WECHAT_REPLY_BUDGET_SECONDS=4.0,
        WECHAT_MAX_BODY_BYTES=64 * 1024,
        WECHAT_RATE_LIMIT=20,
        USER_STATE_TTL_SECONDS=1800,
        LOG_SALT=None,
        ADMIN_TOKEN=None,
        CONSOLE_TOKEN=None,
        MAX_UPLOAD_BYTES=20 * 1024 * 1024,
        MAX_UNPACKED_BYTES=50 * 1024 * 1024,
        MAX_DOCUMENT_CHARS=1_000_000,
        MAX_PDF_PAGES=2000,
        MAX_CHUNKS_PER_DOCUMENT=5000,
        MAX_QUESTION_CHARS=1000,
        API_MAX_BODY_BYTES=16 * 1024,
        JSON_AS_ASCII=False,
        PUBLIC_BASE_URL=None,  # https://your.host: answers end with a 查看原文 link to /o/<token> under it
    )
    app.config.from_prefixed_env()
    app.config.from_mapping(test_config)
    if app.config.get("MAX_CONTENT_LENGTH") is None:  # Werkzeug refuses bigger bodies before reading them
        app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_UPLOAD_BYTES"]) + 1024 * 1024  # + form overhead
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    _configure_logging(app)

    retrieval = engine.init_app(app)
    bot_store = store.init_app(app, retrieval.bot_store)
    replies = pipeline.init_app(app, retrieval.answerer, bot_store)
    wechat.init_app(app, replies)
    cli.init_app(app)
    inputs.init_app(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)
    console.init_app(app)
    original.init_app(app)
    return app


def _configure_logging(app: Flask) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("jieba", "sentence_transformers", "transformers", "httpx", "huggingface_hub", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
