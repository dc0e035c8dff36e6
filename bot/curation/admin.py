"""Curation routes of the admin API (``/admin/api``, the same bearer token as the rest of it).

Official answers, synonyms, sensitive words, keyword replies, settings (welcome, menu), feedback and the
unanswered queue. Every change is audited with who made it (``X-Admin-User``) and applies to the next
message on every worker.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from bot.admin import ROW_ID, require_admin, who
from bot.curation import faq as faq_files
from bot.curation import get_curation, ops
from bot.curation.unanswered import LOG_ROWS
from bot.inputs import InputError

bp = Blueprint("curation_admin", __name__, url_prefix="/admin/api")
GROUP_ID = "<string(length=12):group_id>"


def _curation():
    curation = get_curation()
    curation.refresh()
    return curation


def _json() -> object:
    return request.get_json(silent=True)


def _not_found(what: str, item_id: int):
    return jsonify(error=f"没有编号为 {item_id} 的{what}"), 404


# ------------------------------------------------------------------------- official answers


@bp.get("/faq")
@require_admin
def list_faq():
    return jsonify(faqs=[f.to_json() for f in _curation().store.faqs()])


@bp.post("/faq")
@require_admin
def add_faq():
    return jsonify(id=ops.add_faq(_curation(), _json(), who())), 201


@bp.put(f"/faq/<{ROW_ID}:faq_id>")
@require_admin
def update_faq(faq_id: int):
    if not ops.update_faq(_curation(), faq_id, _json(), who()):
        return _not_found("问答对", faq_id)
    return jsonify(id=faq_id)


@bp.delete(f"/faq/<{ROW_ID}:faq_id>")
@require_admin
def delete_faq(faq_id: int):
    if not ops.delete_faq(_curation(), faq_id, who()):
        return _not_found("问答对", faq_id)
    return jsonify(deleted=faq_id)


@bp.get("/faq/export.<fmt>")
@require_admin
def export_faq(fmt: str):
    return faq_download(fmt)


def faq_download(fmt: str) -> Response:
    faqs = get_curation().store.faqs()
    if fmt == "csv":
        body, mime = faq_files.to_csv(faqs), "text/csv; charset=utf-8"
    elif fmt == "xlsx":
        body, mime = faq_files.to_xlsx(faqs), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    else:
        raise InputError("导出格式应为 csv 或 xlsx", 404)
    return Response(body, mimetype=mime, headers={"Content-Disposition": f"attachment; filename=faq.{fmt}"})


@bp.post("/faq/import")
@require_admin
def import_faq():
    upload = request.files.get("file")
    if upload is None:
        raise InputError("请用 multipart 表单字段 file 上传 .csv 或 .xlsx 文件")
    replace = request.form.get("replace") in ("1", "true", "yes")
    ids = ops.import_faqs(_curation(), upload.filename or "", upload.read(), who(), replace)
    return jsonify(imported=len(ids), ids=ids), 201


# -------------------------------------------------------------------------------- synonyms


@bp.get("/synonyms")
@require_admin
def get_synonyms():
    curation = _curation()
    return jsonify(groups=ops.synonym_groups(curation), shipped=len(curation.layer.shipped.entries))


@bp.put("/synonyms")
@require_admin
def put_synonyms():
    return jsonify(groups=ops.put_synonyms(_curation(), _json(), who()))


# ------------------------------------------------------------------------- sensitive words


@bp.get("/sensitive-words")
@require_admin
def list_words():
    return jsonify(words=_curation().store.words())


@bp.post("/sensitive-words")
@require_admin
def add_word():
    return jsonify(id=ops.add_word(_curation(), _json(), who())), 201


@bp.post("/sensitive-words/import")
@require_admin
def import_words():
    upload = request.files.get("file")
    if upload is None:
        raise InputError("请用 multipart 表单字段 file 上传词表（每行一个词，可跟 block 或 mask）")
    count = ops.import_words(_curation(), upload.read(), request.form.get("action", "mask"), who())
    return jsonify(imported=count), 201


@bp.delete(f"/sensitive-words/<{ROW_ID}:word_id>")
@require_admin
def delete_word(word_id: int):
    if not ops.delete_word(_curation(), word_id, who()):
        return _not_found("敏感词", word_id)
    return jsonify(deleted=word_id)


# ------------------------------------------------------------------------- keyword replies


@bp.get("/keyword-replies")
@require_admin
def list_keywords():
    return jsonify(replies=_curation().store.keywords())


@bp.post("/keyword-replies")
@require_admin
def add_keyword():
    return jsonify(id=ops.add_keyword(_curation(), _json(), who())), 201


@bp.delete(f"/keyword-replies/<{ROW_ID}:keyword_id>")
@require_admin
def delete_keyword(keyword_id: int):
    if not ops.delete_keyword(_curation(), keyword_id, who()):
        return _not_found("关键词回复", keyword_id)
    return jsonify(deleted=keyword_id)


# -------------------------------------------------------------------------------- settings


@bp.get("/settings")
@require_admin
def get_settings():
    return jsonify(ops.settings_json(_curation()))


@bp.put("/settings")
@require_admin
def put_settings():
    return jsonify(ops.put_settings(_curation(), _json(), who()))


# ------------------------------------------------------------------- feedback, unanswered


@bp.get("/feedback")
@require_admin
def feedback():
    store = _curation().store
    limit = max(1, min(request.args.get("limit", 200, type=int) or 200, 1000))
    return jsonify(entries=store.feedback(limit), counts=store.feedback_counts())


@bp.get("/unanswered")
@require_admin
def unanswered():
    curation = _curation()
    groups = ops.unanswered_groups(curation, curation.bot_store.recent_queries(limit=LOG_ROWS),
                                   curation.store.useless_questions(LOG_ROWS))
    return jsonify(groups=[g.to_json() for g in groups])


@bp.post(f"/unanswered/{GROUP_ID}/faq")
@require_admin
def unanswered_to_faq(group_id: str):
    return jsonify(id=ops.faq_from_group(_curation(), group_id, _json(), who())), 201


@bp.post(f"/unanswered/{GROUP_ID}/dismiss")
@require_admin
def unanswered_dismiss(group_id: str):
    return jsonify(dismissed=ops.dismiss_group(_curation(), group_id, who()))


@bp.get(f"/unanswered/{GROUP_ID}/export")
@require_admin
def unanswered_export(group_id: str):
    group = ops.find_group(_curation(), group_id)
    return Response(group.eval_lines(), mimetype="application/x-ndjson",
                    headers={"Content-Disposition": f"attachment; filename=unanswered-{group_id}.jsonl"})
