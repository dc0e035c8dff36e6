"""The QA console at /console: try a question and see exactly what WeChat users get and why; run
question sets; read the query log; inspect documents as they were cleaned and chunked.

Server-rendered pages, no JavaScript and no external assets. The reply comes from the reply pipeline the
webhook and `/api/ask` use, so the console cannot disagree with the live bot. Sign-in takes the console token
(``FLASK_CONSOLE_TOKEN``, read-only) or the admin token; forms carry a per-session CSRF token.
"""

from __future__ import annotations

import csv
import hmac
import io
import json
import secrets
import threading
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path

from flask import Blueprint, Flask, Response, abort, current_app, redirect, render_template, request, session, url_for

from bot.answer import Answerer
from bot.engine import Engine, get_engine
from bot.evaluate import QuestionSetError, evaluate, load_questions
from bot.inputs import InputError, clean_file_name, clean_text, question_set_lines
from bot.library import LibraryError
from bot.pipeline import Message, get_pipeline
from index.embed import limit_this_thread
from index.metadata import FIELDS as METADATA_FIELDS
from index.metadata import STATUSES
from index.store import LoadedIndex

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates")
ROLE_ADMIN, ROLE_QA = "admin", "qa"
CHAT_KEEP = 12  # messages kept in the chat pane
MAX_K = 20
ROW_ID = "int(max=9223372036854775807)"  # SQLite's largest integer: a bigger id is a 404, not an overflow


def tokens() -> dict[str, str]:
    cfg = current_app.config
    out = {}
    if cfg.get("CONSOLE_TOKEN"):
        out[ROLE_QA] = str(cfg["CONSOLE_TOKEN"])
    if cfg.get("ADMIN_TOKEN"):
        out[ROLE_ADMIN] = str(cfg["ADMIN_TOKEN"])
    return out


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def check_csrf() -> None:
    sent = request.form.get("csrf", "")
    if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
        abort(400, description="表单已过期，请刷新页面后重试")


def signed_in(role: str | None = None):
    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not tokens():
                return render_template("console/off.html"), 403
            if session.get("role") not in (ROLE_ADMIN, ROLE_QA):
                return redirect(url_for("console.login", next=request.path))
            if role == ROLE_ADMIN and session.get("role") != ROLE_ADMIN:
                return render_template("console/forbidden.html"), 403
            if request.method == "POST":
                check_csrf()
            return view(*args, **kwargs)

        return wrapped

    return decorator


@bp.app_context_processor
def inject() -> dict:
    return {"csrf_token": csrf_token, "role": session.get("role")}


# ------------------------------------------------------------------------------- sign-in


@bp.route("/login", methods=["GET", "POST"])
def login():
    if not tokens():
        return render_template("console/off.html"), 403
    error = None
    if request.method == "POST":
        check_csrf()
        given = request.form.get("token", "")
        role = next((r for r, tok in tokens().items() if hmac.compare_digest(given.encode(), tok.encode())), None)
        if role:
            session.clear()
            session["role"] = role
            session["uid"] = secrets.token_hex(8)
            target = request.args.get("next", "")
            return redirect(target if target.startswith("/console") else url_for("console.ask"))
        error = "令牌不正确，请重新输入"
    return render_template("console/login.html", error=error), 401 if error else 200


@bp.post("/logout")
@signed_in()
def logout():
    session.clear()
    return redirect(url_for("console.login"))


# ----------------------------------------------------------------------------------- ask


@bp.route("/", methods=["GET", "POST"])
@signed_in()
def ask():
    chat = session.get("chat", [])
    details = None
    if request.method == "POST":
        try:
            text = clean_text(request.form.get("q", ""), int(current_app.config["MAX_QUESTION_CHARS"]),
                              "MAX_QUESTION_CHARS", "问题")
            k = int(request.form.get("k") or 5) if (request.form.get("k") or "5").isascii() else 0
        except (InputError, ValueError) as exc:
            error = str(exc) if isinstance(exc, InputError) else f"k 应为 1 到 {MAX_K} 之间的整数"
            status = exc.status if isinstance(exc, InputError) else 400
            return render_template("console/ask.html", chat=chat, details=None, error=error), status
        if not 1 <= k <= MAX_K:
            return render_template("console/ask.html", chat=chat, details=None,
                                   error=f"k 应为 1 到 {MAX_K} 之间的整数"), 400
        user = f"console:{session['uid']}"
        reply = get_pipeline().reply(Message(text=text, user=user, channel="console", k=k))
        chat = (chat + [{"who": "user", "text": text}, {"who": "bot", "text": reply.text}])[-CHAT_KEEP:]
        session["chat"] = chat
        details = reply.to_json(details=True)
        details["reply_bytes"] = len(reply.text.encode("utf-8"))
    return render_template("console/ask.html", chat=chat, details=details)


@bp.post("/clear")
@signed_in()
def clear_chat():
    session.pop("chat", None)
    return redirect(url_for("console.ask"))


# --------------------------------------------------------------------------------- batch


def sets_dir(engine: Engine) -> Path:
    path = engine.instance_path / "question-sets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_batch(app: Flask, batch_id: int, path: Path, versions: list[str]) -> None:
    """Run a question set on one or two index versions in a background thread; results go to SQLite."""
    limit_this_thread()  # this worker's serving thread limit, as its answer threads keep
    with app.app_context():
        engine = get_engine()
        store = engine.bot_store
        try:
            questions = load_questions(path)
            total = len(questions) * len(versions)
            results = {}
            done = 0
            for version in versions:
                answerer = Answerer(version_loader(engine, version), engine.answerer.settings)
                rows_all = []
                for start in range(0, len(questions), 10):
                    part = questions[start:start + 10]
                    _, rows = evaluate(answerer, part)
                    rows_all += rows
                    done += len(part)
                    store.update_batch(batch_id, done=done, total=total)
                from bot.evaluate import metrics

                results[version] = {"metrics": metrics(rows_all), "rows": [r.__dict__ | {"failed": r.failed}
                                                                            for r in rows_all]}
            store.update_batch(batch_id, state="done", results=json.dumps(results, ensure_ascii=False))
        except (QuestionSetError, OSError, ValueError) as exc:
            store.update_batch(batch_id, state="failed", error=str(exc))
        except Exception as exc:  # report any failure on the page rather than leave it running forever
            current_app.logger.exception("batch %s failed", batch_id)
            store.update_batch(batch_id, state="failed", error=f"{exc.__class__.__name__}: {exc}")


def version_loader(engine: Engine, version: str) -> Callable[[], LoadedIndex]:
    """The serving index, or another version loaded once for a comparison."""
    if version == engine.store.current():
        return engine.current_index
    index = engine.load_version(version)
    return lambda: index


@bp.route("/batch", methods=["GET", "POST"])
@signed_in()
def batch():
    engine = get_engine()
    folder = sets_dir(engine)
    error = None
    if request.method == "POST":
        upload = request.files.get("file")
        try:
            if upload is not None and upload.filename:
                path = save_question_set(folder, upload.filename, upload.read())
            else:
                existing = request.form.get("existing", "")
                path = folder / clean_file_name(existing) if existing else folder
                if not existing or not path.is_file():
                    raise InputError("请上传问题集文件，或选择已有的问题集")
                question_set_lines(path.read_bytes(), path.name)
                load_questions(path)
        except InputError as exc:
            error = str(exc)
        except QuestionSetError as exc:
            error = f"问题集格式不正确：{exc}"
        if error is None:
            versions = [engine.store.current() or ""]
            other = request.form.get("compare", "")
            if other and other in engine.store.versions() and other != versions[0]:
                versions.append(other)
            batch_id = engine.bot_store.create_batch(path.name, versions)
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            threading.Thread(target=run_batch, args=(app, batch_id, path, versions),
                             daemon=True, name=f"batch-{batch_id}").start()
            return redirect(url_for("console.batch_result", batch_id=batch_id))
    return render_template("console/batch.html", sets=sorted(p.name for p in folder.glob("*.jsonl")),
                           versions=engine.store.versions(), current=engine.store.current(),
                           batches=engine.bot_store.recent_batches(), error=error), 400 if error else 200


def save_question_set(folder: Path, file_name: str, data: bytes) -> Path:
    """Check an uploaded question set completely, then write it: a refused upload leaves no file."""
    name = clean_file_name(file_name)
    if not name.endswith(".jsonl"):
        raise InputError("请上传 .jsonl 格式的问题集")
    question_set_lines(data, name)  # UTF-8, every line JSON of bounded depth (before load_questions parses it)
    tmp = folder / f".upload-{secrets.token_hex(8)}.jsonl"
    tmp.write_bytes(data)
    try:
        load_questions(tmp)
    except QuestionSetError as exc:
        tmp.unlink()
        raise QuestionSetError(str(exc).replace(str(tmp), name)) from exc
    path = folder / name
    tmp.replace(path)
    return path


@bp.get(f"/batch/<{ROW_ID}:batch_id>")
@signed_in()
def batch_result(batch_id: int):
    run = get_engine().bot_store.get_batch(batch_id)
    if run is None:
        abort(404)
    failures_only = request.args.get("failures") == "1"
    comparison = compare(run) if run["state"] == "done" and len(run["versions"]) == 2 else None
    return render_template("console/batch_result.html", run=run, failures_only=failures_only,
                           comparison=comparison)


def compare(run: dict) -> list[dict]:
    a, b = run["versions"]
    rows_b = {r["id"]: r for r in run["results"][b]["rows"]}
    out = []
    for row in run["results"][a]["rows"]:
        other = rows_b.get(row["id"])
        if other is None:
            continue
        score_a, score_b = _goodness(row), _goodness(other)
        if score_a != score_b:
            out.append({"id": row["id"], "question": row["question"], "a": row, "b": other,
                        "change": "变好" if score_a > score_b else "变差"})
    return out


def _goodness(row: dict) -> float:
    """Higher is better: a first hit high up and answered (listed as related counts half); for
    out-of-scope, declining (related passages count half)."""
    tier = row.get("tier") or ("decline" if row["abstained"] else "answer")  # batches run before tiers
    if not row["answerable"]:
        return {"decline": 1.0, "related": 0.5}.get(tier, 0.0)
    if tier == "decline" or not row["rank"]:
        return 0.0
    return (1.0 if tier == "answer" else 0.5) / row["rank"]


@bp.get(f"/batch/<{ROW_ID}:batch_id>/download.<fmt>")
@signed_in()
def batch_download(batch_id: int, fmt: str):
    run = get_engine().bot_store.get_batch(batch_id)
    if run is None or run["state"] != "done" or fmt not in ("csv", "jsonl"):
        abort(404)
    rows = run["results"][run["versions"][0]]["rows"]
    if fmt == "jsonl":
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        return Response(body, mimetype="application/x-ndjson",
                        headers={"Content-Disposition": f"attachment; filename=batch-{batch_id}.jsonl"})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["id", "question", "answerable", "rank", "tier", "abstained", "confidence",
                                             "shown", "failed"])
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k) for k in writer.fieldnames})
    return Response("\ufeff" + out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename=batch-{batch_id}.csv"})


# ----------------------------------------------------------------------------------- log


@bp.route("/log", methods=["GET", "POST"])
@signed_in()
def log_page():
    store = get_engine().bot_store
    if request.method == "POST":
        ids = {int(i) for i in request.form.getlist("id")[:1000] if i.isascii() and i.isdigit() and len(i) < 19}
        entries = [e for e in store.recent_queries(limit=1000) if e.id in ids]
        body = "".join(json.dumps({"id": f"log-{e.id}", "q": e.question, "gold": []}, ensure_ascii=False) + "\n"
                       for e in sorted(entries, key=lambda e: e.id))
        return Response(body, mimetype="application/x-ndjson",
                        headers={"Content-Disposition": "attachment; filename=questions-from-log.jsonl"})
    abstained = request.args.get("abstained") == "1"
    channel = request.args.get("channel") or None
    entries = store.recent_queries(limit=200, abstained_only=abstained, channel=channel)
    return render_template("console/log.html", entries=entries, abstained=abstained, channel=channel,
                           fmt_time=lambda at: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)))


# ----------------------------------------------------------------------------- documents


@bp.get("/documents")
@signed_in()
def documents():
    engine = get_engine()
    index = engine.current_index()
    library = {d.doc_id: d for d in engine.library.all()}
    return render_template("console/documents.html", documents=index.manifest.get("documents", []),
                           version=index.version, manifest=index.manifest, library=library)


@bp.get("/documents/<doc_id>")
@signed_in()
def document(doc_id: str, error: str | None = None):
    engine = get_engine()
    index = engine.current_index()
    meta = next((d for d in index.manifest.get("documents", []) if d["doc_id"] == doc_id), None)
    stored = engine.library.get(doc_id)
    if meta is None and stored is None:
        abort(404)
    chunks = [c for c in index.chunks if c.doc_id == doc_id]
    return render_template("console/document.html", doc=meta or (stored.to_json() if stored else {}),
                           stored=stored.to_json() if stored else None, chunks=chunks, version=index.version,
                           fields=METADATA_FIELDS, statuses=STATUSES, error=error), 400 if error else 200


@bp.post("/documents/<doc_id>/meta")
@signed_in(role=ROLE_ADMIN)
def document_meta(doc_id: str):
    """Save the title and metadata an admin typed; they apply to replies after the next re-index."""
    engine = get_engine()
    fields = {name: request.form.get(name, "") for name in ("title", *METADATA_FIELDS) if name in request.form}
    try:
        engine.library.update(doc_id, fields)
    except LibraryError as exc:
        engine.bot_store.audit("console-admin", "update_document", doc_id, f"refused: {exc}")
        if exc.status == 404:
            abort(404)
        return document(doc_id, error=str(exc))
    engine.bot_store.audit("console-admin", "update_document", doc_id, "set " + ", ".join(sorted(fields)))
    return redirect(url_for("console.document", doc_id=doc_id, saved=1))


@bp.post("/reindex")
@signed_in(role=ROLE_ADMIN)
def reindex():
    engine = get_engine()
    job_id, new = engine.jobs.start("console-admin")
    engine.bot_store.audit("console-admin", "reindex", f"job {job_id}", "started" if new else "already running")
    return redirect(url_for("console.documents", job=job_id))


def init_app(app: Flask) -> None:
    if not app.config.get("SECRET_KEY"):
        key_file = Path(app.instance_path) / "secret_key"
        if not key_file.exists():
            key_file.write_text(secrets.token_hex(32), encoding="utf-8")
            key_file.chmod(0o600)
        app.config["SECRET_KEY"] = key_file.read_text(encoding="utf-8").strip()
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.register_blueprint(bp)
