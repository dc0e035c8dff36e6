"""JSON API: ``POST /api/ask`` (the reply pipeline the webhook and the console use) and ``GET /healthz``."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify

from bot.engine import get_engine
from bot.inputs import InputError, clean_text, read_json_body
from bot.pipeline import Message, get_pipeline
from index.store import IndexStoreError

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)
MAX_K = 20
MAX_USER_CHARS = 128  # an optional caller-chosen member id: 更多 and follow-ups then work per member


@bp.post("/api/ask")
def ask():
    """Bad input is refused (``InputError`` -> 4xx JSON) before any work: the body's size
    (API_MAX_BODY_BYTES) and nesting, the question's type, characters and length (MAX_QUESTION_CHARS)."""
    cfg = current_app.config
    body = read_json_body(int(cfg["API_MAX_BODY_BYTES"]), "API_MAX_BODY_BYTES")
    if not isinstance(body, dict) or not isinstance(body.get("q"), str):
        raise InputError('请求体应为 JSON，例如 {"q": "怎样防止干部带病提拔？", "k": 5}')
    question = clean_text(body["q"], int(cfg["MAX_QUESTION_CHARS"]), "MAX_QUESTION_CHARS", "问题")
    k = body.get("k", 5)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InputError(f"k 应为 1 到 {MAX_K} 之间的整数")
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or not 1 <= len(user) <= MAX_USER_CHARS):
        raise InputError(f"user 应为 1 到 {MAX_USER_CHARS} 个字符的字符串")
    try:
        reply = get_pipeline().reply(Message(text=question, user=f"api:{user}" if user else None,
                                             channel="api", k=k, logged=user is not None))
    except IndexStoreError as exc:
        log.error("cannot answer: %s", exc)
        return jsonify(error="索引尚未就绪，请稍后再试", detail=str(exc)), 503
    return jsonify(reply.to_json(details=bool(body.get("details"))))


@bp.get("/healthz")
def healthz():
    engine = get_engine()
    status = engine.status()
    if not status["index_loaded"] and status["current_version"]:
        try:
            engine.current_index()
            status = engine.status()
        except IndexStoreError as exc:
            status["error"] = str(exc)
    ok = status["model_loaded"] and status["index_loaded"]
    return jsonify(status | {"ok": ok}), 200 if ok else 503
