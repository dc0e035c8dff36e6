"""Admin API under /admin/api: documents, re-index jobs, index versions. Bearer-token protected.

Without ``FLASK_ADMIN_TOKEN`` the API is off (403 saying which setting enables it). Every action is
written to the audit log with who did it (the ``X-Admin-User`` header, else "admin") and the result.
"""

from __future__ import annotations

import hmac
import re
from functools import wraps

from flask import Blueprint, current_app, jsonify, request

from bot.engine import get_engine
from bot.inputs import clean_label
from bot.library import LibraryError
from index.metadata import FIELDS as METADATA_FIELDS
from index.store import IndexStoreError

bp = Blueprint("admin", __name__, url_prefix="/admin/api")
VERSION_NAME = re.compile(r"v[\w-]{1,80}", re.ASCII)
ROW_ID = "int(max=9223372036854775807)"  # SQLite's largest integer: a bigger id is a 404, not an overflow


def admin_token_ok(given: str | None) -> bool:
    token = current_app.config.get("ADMIN_TOKEN")
    return bool(token) and given is not None and hmac.compare_digest(given.encode(), str(token).encode())


def require_admin(view):
    @wraps(view)
    def wrapped(*args, **kwargs):
        if not current_app.config.get("ADMIN_TOKEN"):
            return jsonify(error="管理接口未启用：请设置环境变量 FLASK_ADMIN_TOKEN 后重启服务"), 403
        header = request.headers.get("Authorization", "")
        given = header[7:].strip() if header.lower().startswith("bearer ") else None
        if not admin_token_ok(given):
            return jsonify(error="管理令牌缺失或不正确"), 401
        return view(*args, **kwargs)

    return wrapped


def who() -> str:
    return clean_label(request.headers.get("X-Admin-User") or "") or "admin"


@bp.get("/documents")
@require_admin
def list_documents():
    engine = get_engine()
    engine.library.seed(engine.config["CORPUS_DIR"])
    return jsonify(documents=[d.to_json() for d in engine.library.all()])


@bp.post("/documents")
@require_admin
def add_document():
    engine = get_engine()
    engine.library.seed(engine.config["CORPUS_DIR"])
    upload = request.files.get("file")
    if upload is None:
        return jsonify(error="请用 multipart 表单字段 file 上传文件"), 400
    replace = request.form.get("replace") in ("1", "true", "yes")
    name = upload.filename or ""
    fields = {k: v for k, v in request.form.items() if k in METADATA_FIELDS and v}
    try:
        doc = engine.library.add(name, upload.read(), uploaded_by=who(), replace=replace,
                                 title=request.form.get("title") or None, fields=fields)
    except LibraryError as exc:
        engine.bot_store.audit(who(), "add_document", clean_label(name, 200), f"refused: {exc}")
        return jsonify(error=str(exc)), exc.status
    engine.bot_store.audit(who(), "add_document", doc.doc_id, "replaced" if replace else "added")
    return jsonify(document=doc.to_json(), note="重新建立索引后生效：POST /admin/api/reindex"), 201


@bp.patch("/documents/<doc_id>")
@require_admin
def update_document(doc_id: str):
    """Set a document's title or metadata: JSON {"title", "issuer", "number", "date", "status", …};
    "" clears a field. Takes effect in replies after the next re-index."""
    engine = get_engine()
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not body or not all(isinstance(v, str) for v in body.values()):
        return jsonify(error="请用 JSON 对象提交要修改的字段，值为文字，例如 {\"status\": \"已废止\"}"), 400
    try:
        doc = engine.library.update(doc_id, body)
    except LibraryError as exc:
        engine.bot_store.audit(who(), "update_document", clean_label(doc_id, 200), f"refused: {exc}")
        return jsonify(error=str(exc)), exc.status
    engine.bot_store.audit(who(), "update_document", doc.doc_id, "set " + ", ".join(sorted(body)))
    return jsonify(document=doc.to_json(), note="重新建立索引后生效：POST /admin/api/reindex")


@bp.delete("/documents/<doc_id>")
@require_admin
def remove_document(doc_id: str):
    engine = get_engine()
    try:
        doc = engine.library.remove(doc_id)
    except LibraryError as exc:
        engine.bot_store.audit(who(), "remove_document", doc_id, f"refused: {exc}")
        return jsonify(error=str(exc)), exc.status
    engine.bot_store.audit(who(), "remove_document", doc_id, "removed")
    return jsonify(removed=doc.to_json(), note="重新建立索引后生效：POST /admin/api/reindex")


@bp.post("/reindex")
@require_admin
def reindex():
    engine = get_engine()
    job_id, new = engine.jobs.start(who())
    engine.bot_store.audit(who(), "reindex", f"job {job_id}", "started" if new else "already running")
    return jsonify(job=job_id, started=new), 202 if new else 200


@bp.get(f"/jobs/<{ROW_ID}:job_id>")
@require_admin
def job(job_id: int):
    state = get_engine().jobs.get(job_id)
    if state is None:
        return jsonify(error=f"没有编号为 {job_id} 的任务"), 404
    return jsonify(state)


@bp.get("/versions")
@require_admin
def versions():
    store = get_engine().store
    current = store.current()
    out = []
    for version in reversed(store.versions()):
        m = store.manifest(version)
        out.append({"version": version, "serving": version == current, "created": m["created"],
                    "documents": m["counts"]["documents"], "chunks": m["counts"]["chunks"], "model": m["model"]})
    return jsonify(versions=out, current=current)


@bp.post("/versions/<version>/activate")
@require_admin
def activate(version: str):
    engine = get_engine()
    if not VERSION_NAME.fullmatch(version):
        return jsonify(error="版本名称不正确"), 400
    try:
        engine.store.activate(version)
    except IndexStoreError as exc:
        engine.bot_store.audit(who(), "activate", version, f"refused: {exc}")
        return jsonify(error=f"没有版本 {version}"), 404
    engine.bot_store.audit(who(), "activate", version, "serving")
    return jsonify(current=version)


@bp.get("/log")
@require_admin
def member_log():
    """The query log of one member (``?user=OPENID``; ``api:<id>`` for an API caller): question, tier,
    node and time of each, newest first, so an operator can see where a member's messages went."""
    user = request.args.get("user", "")
    if not 1 <= len(user) <= 128:
        return jsonify(error="请用 ?user=OPENID 指定要查看的用户"), 400
    limit = request.args.get("limit", 100, type=int) or 100
    entries = get_engine().bot_store.recent_queries(limit=max(1, min(limit, 1000)), user=user)
    return jsonify(entries=[e.to_json() for e in entries])


@bp.get("/audit")
@require_admin
def audit():
    limit = request.args.get("limit", 50, type=int) or 50
    return jsonify(entries=get_engine().bot_store.audit_log(limit=max(1, min(limit, 1000))))
