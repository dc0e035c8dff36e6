"""Command line: ``flask --app server index build|versions|activate``, ``ask``, ``eval``."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext
from tqdm import tqdm

from bot.engine import get_engine
from bot.evaluate import QuestionSetError, evaluate, load_question_sets, load_questions
from bot.library import LibraryError
from bot.pipeline import Message, Reply, get_pipeline
from bot.store import get_store
from index.adapt import CHATTER_FILE
from index.embed import set_threads
from index.ingest import IngestError
from index.rank import DEFAULT_LEARNED
from index.store import IndexStoreError

log = logging.getLogger(__name__)
JOB_BEAT_SECONDS = 2.0
index_cli = AppGroup("index", help="Build and manage the versioned search index.")


@index_cli.command("build")
@click.option("--if-missing", is_flag=True,
              help="Do nothing when a serving index exists and matches the model and the sentence vectors setting.")
@click.option("--job", "job_id", type=int, help="Report progress and outcome to this re-index job (admin API).")
def index_build(if_missing: bool, job_id: int | None) -> None:
    """Clean, chunk and embed the library into a new index version, check it, then switch to it."""
    engine = get_engine()
    engine.store.clean_leftovers()
    if job_id is not None:
        run_job(engine, job_id)
        return
    if if_missing and engine.store.current():
        try:
            engine.current_index()
            outdated = engine.outdated_sentences()
            if outdated is None:
                click.echo(f"index {engine.store.current()} is in place; nothing to do")
                return
            click.echo(f"rebuilding: {outdated}")
        except IndexStoreError as exc:
            click.echo(f"rebuilding: {exc}")
    try:
        documents = engine.corpus_documents()
        bar = tqdm(total=0, unit="chunk", desc="embedding", file=sys.stderr)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        version = engine.build(documents, progress=progress)
        bar.close()
    except (IngestError, IndexStoreError) as exc:
        raise click.ClickException(str(exc)) from exc
    manifest = engine.store.manifest(version)
    click.echo(f"built and serving {version}: {manifest['counts']['documents']} documents, "
               f"{manifest['counts']['chunks']} chunks in {manifest['build_seconds']} s")


@index_cli.command("versions")
def index_versions() -> None:
    """List index versions; * marks the serving one."""
    store = get_engine().store
    current = store.current()
    for version in store.versions():
        m = store.manifest(version)
        mark = "*" if version == current else " "
        click.echo(f"{mark} {version}  {m['counts']['documents']} docs  {m['counts']['chunks']} chunks  {m['model']}")


@index_cli.command("activate")
@click.argument("version")
def index_activate(version: str) -> None:
    """Serve VERSION (roll back or forward)."""
    engine = get_engine()
    try:
        engine.store.activate(version)
    except IndexStoreError as exc:
        engine.bot_store.audit("cli", "activate", version, f"refused: {exc}")
        raise click.ClickException(str(exc)) from exc
    engine.bot_store.audit("cli", "activate", version, "serving")
    click.echo(f"serving {version}")


@index_cli.command("adapt")
@click.option("--questions", "question_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL questions with gold quotes to train on (repeatable); never a held-out set.")
@click.option("--max-pairs", default=2048, show_default=True)
@click.option("--lr", "learning_rate", default=2e-5, show_default=True)
@click.option("--max-minutes", default=10.0, show_default=True, help="Stop training (and save) after this long.")
@click.option("--freeze-embeddings/--train-embeddings", default=True, show_default=True)
@click.option("--negatives", "negatives_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=CHATTER_FILE, show_default=True,
              help="Chatter (one a line) to keep away from every passage while training; not index/everyday.txt, "
                   "which calibrates the adapted model afterwards.")
@click.option("--no-negatives", is_flag=True, help="Train on the pairs alone.")
@click.option("--hard-negatives", default="", show_default=True,
              help="Pair kinds (comma-separated: question,heading,sentence,…) that also get a hard negative, "
                   "a passage of the same document close to the query.")
def index_adapt(question_files: tuple[Path, ...], max_pairs: int, learning_rate: float, max_minutes: float,
                freeze_embeddings: bool, negatives_file: Path, no_negatives: bool, hard_negatives: str) -> None:
    """Fine-tune the bundled model on the library's own pairs (+ tuning questions); save it and its ONNX."""
    from index.adapt import PAIR_KINDS, AdaptError, AdaptSettings, adapt, load_question_files
    from index.bundled_model import BUNDLED_MODEL_NAME
    from index.calibration import everyday_questions
    from index.embed import EmbedderError, resolve_model_path

    kinds = tuple(k.strip() for k in hard_negatives.split(",") if k.strip())
    if unknown := [k for k in kinds if k not in PAIR_KINDS]:
        raise click.BadParameter(f"unknown pair kind {', '.join(unknown)}; use {', '.join(PAIR_KINDS)}",
                                 param_hint="--hard-negatives")
    engine = get_engine()
    models_dir = engine.instance_path / "models"
    settings = AdaptSettings(max_pairs=max_pairs, learning_rate=learning_rate, max_minutes=max_minutes,
                             freeze_embeddings=freeze_embeddings, hard_negatives=kinds)
    bar = tqdm(total=0, unit="step", desc="adapting", file=sys.stderr)

    def progress(step: int, steps: int, loss: float) -> None:
        bar.total, bar.n = steps, step
        bar.set_postfix(loss=f"{loss:.3f}")

    try:
        base = Path(resolve_model_path(BUNDLED_MODEL_NAME, models_dir))
        result = adapt(engine.corpus_documents(), load_question_files(question_files), base, models_dir,
                       settings, target_chars=int(engine.config["CHUNK_TARGET_CHARS"]), progress=progress,
                       negatives=() if no_negatives else everyday_questions(negatives_file))
    except (AdaptError, EmbedderError, IngestError) as exc:
        raise click.ClickException(str(exc)) from exc
    bar.close()
    limit = ", stopped at the time limit" if result.stopped_early else ""
    click.echo(f"{result.steps} steps over {sum(result.pairs.values())} pairs {result.pairs} in {result.seconds:.0f} s "
               f"(loss {result.first_loss:.3f} -> {result.last_loss:.3f}{limit})")
    click.echo(f"saved {result.folder}\nuse it: FLASK_EMBED_MODEL={result.folder} flask --app server index build")


@index_cli.command("export-adapter")
@click.argument("adapted", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The adapter file to write (index/adapter.safetensors is the one the project ships).")
@click.option("--rank", default=32, show_default=True, help="Rank of each matrix's change.")
def index_export_adapter(adapted: Path, out: Path, rank: int) -> None:
    """Write an adapted model's change from the bundled model as a small adapter file."""
    from index.adapt import AdaptError, export_adapter
    from index.bundled_model import BUNDLED_MODEL_NAME, file_sha256
    from index.embed import EmbedderError, resolve_model_path

    engine = get_engine()
    try:
        base = Path(resolve_model_path(BUNDLED_MODEL_NAME, engine.instance_path / "models"))
        kept = export_adapter(base, adapted, out, rank)
    except (AdaptError, EmbedderError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {out}: {kept['weights_changed']} weights changed, {kept['share_kept']:.1%} of the change kept "
               f"at rank {rank}, {kept['bytes'] / 1e6:.1f} MB, sha256 {file_sha256(out)}")


@click.command("ask")
@with_appcontext
@click.argument("question", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the Answer as JSON.")
@click.option("-k", default=5, show_default=True, help="How many passages to return.")
@click.option("--batch", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSONL file of {"id", "q"} lines; one output line each.')
def ask(question: str | None, as_json: bool, k: int, batch: Path | None) -> None:
    """Answer QUESTION (or every question in --batch) exactly as the bot would: through the reply
    pipeline the webhook and the API use, with no member history and nothing logged."""
    _answerer()  # a missing or broken index is a clear error here, not a traceback
    pipeline = get_pipeline()

    def reply(text: str) -> Reply:
        return pipeline.reply(Message(text=text, channel="cli", k=k, logged=False))

    if batch is not None:
        try:
            questions = load_questions(batch)
        except QuestionSetError as exc:
            raise click.ClickException(str(exc)) from exc
        for q in questions:
            r = reply(q["q"])
            out = {"id": q["id"], **r.to_json()}
            click.echo(json.dumps(out, ensure_ascii=False) if as_json else f"[{q['id']}] {r.text}\n")
        return
    if question is None:
        raise click.UsageError("give a QUESTION or --batch FILE")
    r = reply(question)
    if as_json:
        click.echo(json.dumps(r.to_json(), ensure_ascii=False, indent=1))
        return
    click.echo(r.text)
    click.echo()
    if r.answer is None:
        click.echo(f"answered by {r.source}")
        return
    answer = r.answer
    for i, p in enumerate(answer.passages, 1):
        click.echo(f"{i}. [{p.score:.3f}] {p.title} › {p.section}: {p.text[:60]}…")
    if answer.decision:
        d = answer.decision
        click.echo(f"tier {d.tier}: confidence {d.confidence:.4f} (answer at {d.threshold}), in scope "
                   f"{d.scope:.4f} (related at {d.related_threshold}), {answer.elapsed_ms} ms")
        if d.replaced:
            click.echo("read as: " + d.rewritten)


@click.command("eval")
@with_appcontext
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-k", default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print metrics and per-question rows as JSON.")
def eval_command(path: Path, k: int, as_json: bool) -> None:
    """Run a question set with gold quotes and print R@1/3/5, MRR and abstention figures."""
    try:
        questions = load_questions(path)
    except QuestionSetError as exc:
        raise click.ClickException(str(exc)) from exc
    result, rows = evaluate(_answerer(), questions, k=k)
    if as_json:
        click.echo(json.dumps({"metrics": result, "rows": [r.__dict__ for r in rows]}, ensure_ascii=False))
        return
    for key, value in result.items():
        click.echo(f"{key:18s} {value}")
    failures = [r for r in rows if r.failed]
    if failures:
        click.echo("\nnot right at rank 1:")
        for r in failures:
            click.echo(f"  {r.id} rank={r.rank} abstained={r.abstained} conf={r.confidence} {r.question}")


@click.command("fit")
@with_appcontext
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_LEARNED, show_default=True,
              help="Where to write the fitted models (JSON).")
def fit_command(paths: tuple[Path, ...], out: Path) -> None:
    """Fit the passage ranker and the answer decision on tuning question sets (needs their documents indexed)."""
    from bot.fit import FitError, fit, initial_models

    engine = get_engine()
    try:
        questions = load_question_sets(paths)
        # the serving index, loaded with hand-set models: the current ones may not fit the code's features
        index = engine.store.load(engine.embedder(), synonyms=engine.synonyms(), models=initial_models())
        models = fit(index.searcher, questions, source=" ".join(str(p) for p in paths), log=click.echo)
    except (QuestionSetError, FitError, IndexStoreError) as exc:
        raise click.ClickException(str(exc)) from exc
    models.save(out)
    click.echo(f"wrote {out}; it applies when an index is next loaded (restart, or `index activate`)")


def run_job(engine, job_id: int) -> None:
    """The body of a re-index job's child process."""
    jobs = engine.jobs
    jobs.update(job_id, state="running", pid=os.getpid(), node=jobs.node, heartbeat=time.time())
    building = threading.Event()

    def beat() -> None:  # other nodes cannot see this pid: they read the heartbeat
        while not building.wait(JOB_BEAT_SECONDS):
            try:
                jobs.beat(job_id)
            except Exception:
                log.warning("could not record job %s's heartbeat", job_id)

    threading.Thread(target=beat, name="job-heartbeat", daemon=True).start()
    # the build shares the machine with the web workers: its own thread budget and a lower priority
    set_threads(int(engine.config.get("BUILD_THREADS") or 1))
    nice = int(engine.config.get("BUILD_NICE") or 0)
    if nice > 0:
        os.nice(nice)
    last = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last
        if time.monotonic() - last > 0.5 or done == total:
            last = time.monotonic()
            jobs.update(job_id, done=done, total=total)

    try:
        version = engine.build(progress=progress)
    except Exception as exc:
        building.set()
        jobs.update(job_id, state="failed", error=f"{exc.__class__.__name__}: {exc}", finished=time.time())
        engine.bot_store.audit("system", "reindex", f"job {job_id}", f"failed: {exc}")
        raise click.ClickException(str(exc)) from exc
    building.set()
    jobs.update(job_id, state="done", version=version, finished=time.time())
    engine.bot_store.audit("system", "reindex", f"job {job_id}", f"serving {version}")
    click.echo(f"job {job_id}: serving {version}")


docs_cli = AppGroup("docs", help="The document library the index is built from.")


@docs_cli.command("add")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Replace a document with the same file name.")
@click.option("--title", help="Title to use instead of the one found in the file (one file only).")
def docs_add(files: tuple[Path, ...], replace: bool, title: str | None) -> None:
    """Add documents (txt, md, docx, pdf, html). Run `index build` afterwards."""
    engine = get_engine()
    engine.library.seed(Path(engine.config["CORPUS_DIR"]))
    failed = 0
    for path in files:
        try:
            doc = engine.library.add(path.name, path.read_bytes(), uploaded_by="cli", replace=replace,
                                     title=title if len(files) == 1 else None)
        except LibraryError as exc:
            failed += 1
            click.echo(f"refused {path.name}: {exc}", err=True)
            engine.bot_store.audit("cli", "add_document", path.name, f"refused: {exc}")
            continue
        engine.bot_store.audit("cli", "add_document", doc.doc_id, "added")
        click.echo(f"added {doc.doc_id}: 《{doc.title}》 {doc.chars} characters")
    if failed:
        raise click.ClickException(f"{failed} file(s) refused")


@docs_cli.command("list")
def docs_list() -> None:
    """List the documents in the library."""
    engine = get_engine()
    engine.library.seed(Path(engine.config["CORPUS_DIR"]))
    for doc in engine.library.all():
        click.echo(f"{doc.doc_id}  《{doc.title}》  {doc.date or '-'}  {doc.chars} chars  {doc.file_name}")


@docs_cli.command("remove")
@click.argument("doc_id")
def docs_remove(doc_id: str) -> None:
    """Remove a document from the library. Run `index build` afterwards."""
    engine = get_engine()
    try:
        doc = engine.library.remove(doc_id)
    except LibraryError as exc:
        raise click.ClickException(str(exc)) from exc
    engine.bot_store.audit("cli", "remove_document", doc_id, "removed")
    click.echo(f"removed {doc.doc_id}: 《{doc.title}》")


log_cli = AppGroup("log", help="The query log (questions from WeChat and the console).")


@log_cli.command("tail")
@click.option("-n", "count", default=20, show_default=True, help="How many entries.")
@click.option("--abstained", is_flag=True, help="Only questions the bot declined: the gaps in the documents.")
def log_tail(count: int, abstained: bool) -> None:
    """Show the latest logged questions, oldest first."""
    entries = get_store().recent_queries(limit=count, abstained_only=abstained)
    for e in reversed(entries):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.at))
        verdict = "ABSTAIN" if e.abstained else e.kind
        where = f"{e.top_doc} › {e.top_section}" if e.top_doc and not e.abstained else "-"
        click.echo(f"{when} {e.channel:7s} {e.user_hash} {verdict:8s} {e.latency_ms:7.1f}ms "
                   f"{e.index_version or '-'}  {e.question[:40]}  [{where}]")


def _answerer():
    engine = get_engine()
    try:
        engine.current_index()
    except IndexStoreError as exc:
        raise click.ClickException(str(exc)) from exc
    return engine.answerer


def init_app(app: Flask) -> None:
    app.cli.add_command(index_cli)
    app.cli.add_command(ask)
    app.cli.add_command(eval_command)
    app.cli.add_command(fit_command)
    app.cli.add_command(log_cli)
    app.cli.add_command(docs_cli)
