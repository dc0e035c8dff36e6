"""`make eval`: answer quality on every question set, as members experience it.

    .venv/bin/python -m bench.quality [--shared ../shared] [--instances instance/eval] [--against OLD.json]

Builds (once, and again when a build would now make their sentence vectors differently; embeddings are
cached) two instances under ``--instances``: the shipped speech alone, and the speech plus every document of
../shared/docs — then runs each set that belongs to it and prints one table:
R@1/R@3 and the tiers members see (right, useful, wrong, declined; shown: the reply's text holds the
answer; out-of-scope declined, hard out-of-scope not answered), the answer decision's threshold-free
AUC, and ``right_at_hard_bar``: the most right answers any one answer threshold would give on the set with 80 %
of its hard out-of-scope questions not answered (``bot.evaluate``; chosen on the set, so a ceiling — R@1 is
the ceiling of any decision). ``eval/heldout.jsonl`` is the set no weight was fitted on; read it beside the tuning set.
``eval/fresh.jsonl`` was written later, over all 20 documents, by a writer who saw no code and no other set:
it is the unseen check. ``eval/tune-more.jsonl`` is new writers' questions over the tuning documents, not
fitted on either; ``eval/errands.jsonl`` 200 personal errands (everyday questions that sound official),
all to be declined.

``--against`` a learned-models file (``flask fit``'s output, e.g. the ``index/learned.json`` of an earlier
commit) runs every set with it too and prints, question by question, what each outcome gained and lost
since, with the sign test's p (``bot.evaluate.compare``): the way to tell a change from chance.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.evaluate import OUTCOMES, EvalRow, compare, evaluate, load_questions, wilson_interval
from index.rank import LearnedModels, ModelError
from index.store import IndexStoreError
from server import create_app

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("R@1", "R@3", "right", "useful", "wrong", "related", "declined", "shown", "everyday_declined",
           "hard_not_answered", "answer_auc", "right_at_hard_bar")
INTERVAL_COLUMNS = ("R@1", "R@3", "right", "useful", "wrong", "declined", "shown")


def instance(folder: Path, documents: list[Path], models: Path | None = None):
    """An app over the speech plus ``documents``, built when the folder has no index yet. ``models``: a folder
    of exported models the instances share (linked as the instance's own), so the model is exported once."""
    if models is not None:
        models.mkdir(parents=True, exist_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "models").exists():
            (folder / "models").symlink_to(models.resolve(), target_is_directory=True)
    app = create_app({"INSTANCE_PATH": str(folder)})
    engine = app.extensions["engine"]
    with app.app_context():
        engine.library.seed(ROOT / "corpus")
        known = {d.file_name for d in engine.library.all()}
        for path in documents:
            if path.name not in known:
                engine.library.add(path.name, path.read_bytes(), uploaded_by="eval")
        try:
            engine.current_index()
            if engine.outdated_sentences():  # measured as a build now makes it
                engine.build()
        except IndexStoreError:  # no index, or one this code cannot read: build it
            engine.build()
    return app


def run(app, path: Path, models: LearnedModels | None = None) -> tuple[dict, list[EvalRow]]:
    """The set's metrics and rows, with the serving index's learned models or, for this run, ``models``."""
    with app.app_context():
        engine = app.extensions["engine"]
        searcher = engine.current_index().searcher
        kept = searcher.models
        searcher.models = models or kept
        try:
            return evaluate(engine.answerer, load_questions(path))
        finally:
            searcher.models = kept


def interval(share: float | None, n: int) -> str:
    bounds = None if share is None else wilson_interval(round(share * n), n)
    return "–" if bounds is None else f"{bounds[0]:.2f}–{bounds[1]:.2f}"


def fmt(value: object) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--instances", type=Path, default=ROOT / "instance" / "eval")
    parser.add_argument("--against", type=Path, help="learned models to compare with, question by question")
    args = parser.parse_args()
    try:
        earlier = LearnedModels.load(args.against) if args.against else None
    except ModelError as exc:
        parser.error(str(exc))
    runs = [
        ("speech alone", [], [args.shared / "eval" / "dev.jsonl",
                              ROOT / "tests" / "fixtures" / "written-first-doc.jsonl"]),
        ("all 20 documents", sorted((args.shared / "docs").glob("*.txt")),
         [ROOT / "eval" / "tune.jsonl", ROOT / "eval" / "tune-more.jsonl", ROOT / "eval" / "heldout.jsonl",
          ROOT / "eval" / "fresh.jsonl", ROOT / "eval" / "errands.jsonl",
          args.shared / "eval" / "dev.jsonl", args.shared / "eval" / "docs-dev.jsonl"]),
    ]
    print("| index | set | questions | " + " | ".join(COLUMNS) + " |")
    print("|" + " --- |" * (len(COLUMNS) + 3))
    intervals, changes = [], []
    for name, documents, sets in runs:
        app = instance(args.instances / name.replace(" ", "-"), documents, args.instances / "models")
        for path in sets:
            m, rows = run(app, path)
            label = f"{m['answerable']}+{m['out_of_scope']}"
            print(f"| {name} | {path.name} | {label} | " + " | ".join(fmt(m.get(c)) for c in COLUMNS) + " |",
                  flush=True)
            if m["answerable"]:
                intervals.append(f"| {name} | {path.name} | " + " | ".join(
                    interval(m.get(c), m["answerable"]) for c in INTERVAL_COLUMNS) + " |")
            if earlier is not None:
                change = compare(run(app, path, earlier)[1], rows)
                changes.append(f"| {name} | {path.name} | " + " | ".join(str(change[c]) for c in OUTCOMES) + " |")
    print("\n95 % intervals (Wilson) of the answerable questions' shares: where the figure of another set of "
          "such questions may fall by chance. Two fits measured on the same questions differ by less noise "
          "than this; a gain on one set that the others do not show is still chance.\n")
    print("| index | set | " + " | ".join(INTERVAL_COLUMNS) + " |")
    print("|" + " --- |" * (len(INTERVAL_COLUMNS) + 2))
    print("\n".join(intervals))
    if earlier is not None:
        print(f"\nQuestion by question against {args.against}: questions each outcome now holds for and did "
              "not (+), and the other way round (−), with the two-sided sign test's p (wrong and declined: "
              "fewer is better).\n")
        print("| index | set | " + " | ".join(OUTCOMES) + " |")
        print("|" + " --- |" * (len(OUTCOMES) + 2))
        print("\n".join(changes))


if __name__ == "__main__":
    main()
