"""The console's 管理 area (admins only): official answers, synonyms, sensitive words, keyword replies,
welcome and menu, feedback and the unanswered queue. Server-rendered pages; every change goes through
``bot.curation.ops`` like the admin API, so it is checked and audited the same way."""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, redirect, render_template, request, url_for

from bot.admin import ROW_ID
from bot.console import ROLE_ADMIN, signed_in
from bot.curation import get_curation, ops
from bot.curation.admin import GROUP_ID, faq_download
from bot.curation.unanswered import LOG_ROWS
from bot.inputs import InputError

bp = Blueprint("manage", __name__, url_prefix="/console/manage")
WHO = "console-admin"
TABS = {"faq": "问答对", "synonyms": "同义词", "words": "敏感词", "keywords": "关键词回复与欢迎语",
        "feedback": "反馈", "unanswered": "待处理问题"}


def _page(tab: str, error: str | None = None, status: int = 200):
    curation = get_curation()
    curation.refresh()
    store = curation.store
    data: dict = {}
    if tab == "faq":
        data["faqs"] = store.faqs()
    elif tab == "synonyms":
        data["groups"] = ops.synonym_groups(curation)
        data["shipped"] = len(curation.layer.shipped.entries)
    elif tab == "words":
        data["words"] = store.words()
    elif tab == "keywords":
        data["keywords"] = store.keywords()
        data["settings"] = ops.settings_json(curation)
    elif tab == "feedback":
        data["entries"] = store.feedback(100)
        data["counts"] = store.feedback_counts()
        data["faq_titles"] = {f.id: f.question for f in store.faqs()}
    elif tab == "unanswered":
        data["groups"] = ops.unanswered_groups(curation, curation.bot_store.recent_queries(limit=LOG_ROWS),
                                               store.useless_questions(LOG_ROWS))
    return render_template("console/manage.html", tab=tab, tabs=TABS, error=error, saved=request.args.get("saved"),
                           fmt_time=lambda at: time.strftime("%Y-%m-%d %H:%M", time.localtime(at)) if at else "",
                           **data), status


def _done(tab: str):
    return redirect(url_for("manage.page", tab=tab, saved=1))


def _try(tab: str, change) -> object:  # type: ignore[no-untyped-def]
    """Run ``change``; on refused input show the tab again with the reason."""
    try:
        change()
    except InputError as exc:
        return _page(tab, error=str(exc), status=exc.status)
    return _done(tab)


@bp.get("/")
@bp.get("/<any(faq, synonyms, words, keywords, feedback, unanswered):tab>")
@signed_in(role=ROLE_ADMIN)
def page(tab: str = "faq"):
    return _page(tab)


# ------------------------------------------------------------------------- official answers


@bp.post("/faq")
@signed_in(role=ROLE_ADMIN)
def add_faq():
    form = request.form
    body = {"question": form.get("question", ""), "answer": form.get("answer", ""), "source": form.get("source", ""),
            "alternatives": [a for a in form.get("alternatives", "").splitlines() if a.strip()]}
    return _try("faq", lambda: ops.add_faq(get_curation(), body, WHO))


@bp.post(f"/faq/<{ROW_ID}:faq_id>/delete")
@signed_in(role=ROLE_ADMIN)
def delete_faq(faq_id: int):
    ops.delete_faq(get_curation(), faq_id, WHO)
    return _done("faq")


@bp.post("/faq/import")
@signed_in(role=ROLE_ADMIN)
def import_faq():
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _page("faq", error="请选择 .csv 或 .xlsx 文件", status=400)
    replace = request.form.get("replace") == "1"
    return _try("faq", lambda: ops.import_faqs(get_curation(), upload.filename or "", upload.read(), WHO, replace))


@bp.get("/faq/export.<any(csv, xlsx):fmt>")
@signed_in(role=ROLE_ADMIN)
def export_faq(fmt: str) -> Response:
    return faq_download(fmt)


# ------------------------------------------------------------------------ synonyms, words


@bp.post("/synonyms")
@signed_in(role=ROLE_ADMIN)
def put_synonyms():
    lines = request.form.get("groups", "").splitlines()
    groups = [line.replace("，", " ").replace(",", " ").replace("=", " ").split() for line in lines]
    return _try("synonyms", lambda: ops.put_synonyms(get_curation(), {"groups": [g for g in groups if g]}, WHO))


@bp.post("/words")
@signed_in(role=ROLE_ADMIN)
def add_word():
    body = {"word": request.form.get("word", ""), "action": request.form.get("action", "mask")}
    return _try("words", lambda: ops.add_word(get_curation(), body, WHO))


@bp.post("/words/import")
@signed_in(role=ROLE_ADMIN)
def import_words():
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _page("words", error="请选择词表文件（每行一个词）", status=400)
    action = request.form.get("action", "mask")
    return _try("words", lambda: ops.import_words(get_curation(), upload.read(), action, WHO))


@bp.post(f"/words/<{ROW_ID}:word_id>/delete")
@signed_in(role=ROLE_ADMIN)
def delete_word(word_id: int):
    ops.delete_word(get_curation(), word_id, WHO)
    return _done("words")


# ------------------------------------------------------------------ keyword replies, settings


@bp.post("/keywords")
@signed_in(role=ROLE_ADMIN)
def add_keyword():
    body = {k: request.form.get(k, "") for k in ("keyword", "match", "reply")}
    return _try("keywords", lambda: ops.add_keyword(get_curation(), body, WHO))


@bp.post(f"/keywords/<{ROW_ID}:keyword_id>/delete")
@signed_in(role=ROLE_ADMIN)
def delete_keyword(keyword_id: int):
    ops.delete_keyword(get_curation(), keyword_id, WHO)
    return _done("keywords")


@bp.post("/settings")
@signed_in(role=ROLE_ADMIN)
def put_settings():
    menu = {}
    for line in request.form.get("menu", "").splitlines():
        key, sep, reply = line.partition("=")
        if sep and key.strip() and reply.strip():
            menu[key.strip()] = reply.strip()
        elif line.strip():
            return _page("keywords", error=f"菜单回复每行应为“KEY=回复内容”：{line.strip()[:40]}", status=400)
    body = {"welcome": request.form.get("welcome", ""), "menu": menu}
    return _try("keywords", lambda: ops.put_settings(get_curation(), body, WHO))


# ------------------------------------------------------------------------------- unanswered


@bp.post(f"/unanswered/{GROUP_ID}/faq")
@signed_in(role=ROLE_ADMIN)
def unanswered_faq(group_id: str):
    body = {"answer": request.form.get("answer", ""), "question": request.form.get("question", "")}
    return _try("unanswered", lambda: ops.faq_from_group(get_curation(), group_id, body, WHO))


@bp.post(f"/unanswered/{GROUP_ID}/dismiss")
@signed_in(role=ROLE_ADMIN)
def unanswered_dismiss(group_id: str):
    return _try("unanswered", lambda: ops.dismiss_group(get_curation(), group_id, WHO))


@bp.get(f"/unanswered/{GROUP_ID}/export")
@signed_in(role=ROLE_ADMIN)
def unanswered_export(group_id: str) -> Response:
    group = ops.find_group(get_curation(), group_id)
    return Response(group.eval_lines(), mimetype="application/x-ndjson",
                    headers={"Content-Disposition": f"attachment; filename=unanswered-{group_id}.jsonl"})


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
