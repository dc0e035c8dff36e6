"""Sibling documents: the right one of near-identical regulations from different places.

    .venv/bin/python -m bench.siblings [--shared ../shared] [--instance instance/eval/siblings]

The library is the speech plus 242 local regulations of ../shared/bench/lawrefbook_local_regulations.jsonl
in 90 groups: each group is one regulation as two to four provinces or cities enacted it (上海市节约能源条例,
河南省节约能源条例), nearly word for word the same. ``select_documents`` picks them (a fixed draw of groups
whose titles differ only in the place that opens them) and writes them as uploads under
``--instance``/documents. ``eval/siblings.jsonl`` asks about one member of a group, as members type:
most questions name the place (在济南…, 咱们浙江…), some name none and ask a detail only that member has.
They were written by helpers who read only the documents.

A question's ``doc`` is the file stem of its document. Figures: the right document first (``doc@1``) and
in the first three; a right passage is one of that document holding a gold quote (a sibling's copy of the
same sentence is not right), and the tiers a member sees with that passage (right, useful, wrong,
declined), as ``make eval`` counts them.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

from bench.quality import fmt, instance
from bot.answer import RELATED_SHOWN, Answer
from bot.evaluate import WHITESPACE, load_questions
from index.search import TITLE_PLACE

ROOT = Path(__file__).resolve().parent.parent
REGULATIONS = "lawrefbook_local_regulations.jsonl"
GROUPS, MEMBERS, SEED = 90, 4, 20261206
MIN_CHARS = 800


def select_documents(shared: Path, folder: Path) -> list[Path]:
    """Write the chosen regulations as text files (title, then the enactment note, then the text) named
    ``g<group>-<member>.txt``, and return their paths."""
    groups: dict[str, list[dict]] = defaultdict(list)
    with open(shared / "bench" / REGULATIONS, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            place = TITLE_PLACE.match(row["title"])
            if place and len(row["text"]) >= MIN_CHARS:
                row["place"] = place[0]
                groups[row["title"][place.end():]].append(row)
    several = sorted(k for k, rows in groups.items() if len({r["place"] for r in rows}) > 1)
    random.Random(SEED).shuffle(several)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for group, key in enumerate(several[:GROUPS]):
        by_place: dict[str, dict] = {}
        for row in sorted(groups[key], key=lambda r: r["id"]):
            by_place.setdefault(row["place"], row)
        for member, row in enumerate(list(by_place.values())[:MEMBERS]):
            path = folder / f"g{group:02d}-{member}.txt"
            text = f"{row['title']}\n{row.get('info') or ''}\n\n{row['text']}"
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
            paths.append(path)
    return paths


def place_of(path: Path) -> str:
    """The place a regulation's title opens with, without 省/市/…: 济南 for 济南市优化营商环境条例."""
    place = TITLE_PLACE.match(path.read_text(encoding="utf-8").split("\n", 1)[0])
    return place[1] if place else ""


def right_rank(answer: Answer, doc: str, gold: list[str]) -> int | None:
    """Rank of the first passage of document ``doc`` holding a gold quote."""
    quotes = [WHITESPACE.sub("", g) for g in gold]
    for rank, passage in enumerate(answer.passages, 1):
        if passage.doc == doc and any(q and q in WHITESPACE.sub("", passage.text) for q in quotes):
            return rank
    return None


def measure(answerer, questions: list[dict]) -> dict:
    counts: dict[str, float] = defaultdict(float)
    for q in questions:
        answer = answerer.answer(q["q"], k=5)
        docs = [p.doc for p in answer.passages]
        rank = right_rank(answer, q["doc"], q["gold"])
        answered = answer.tier == "answer"
        counts["doc@1"] += bool(docs) and docs[0] == q["doc"]
        counts["doc@3"] += q["doc"] in docs[:3]
        counts["R@1"] += rank == 1
        counts["R@3"] += rank is not None and rank <= 3
        counts["right"] += answered and rank == 1
        counts["useful"] += (answered and rank == 1) or (
            answer.tier == "related" and rank is not None and rank <= RELATED_SHOWN)
        counts["wrong"] += answered and (rank is None or rank > 2)
        counts["wrong_document"] += answered and bool(docs) and docs[0] != q["doc"]
        counts["declined"] += answer.tier == "decline"
    n = len(questions)
    return {"questions": n, **{k: counts[k] / n for k in
                               ("doc@1", "doc@3", "R@1", "R@3", "right", "useful", "wrong", "wrong_document",
                                "declined")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--instance", type=Path, default=ROOT / "instance" / "eval" / "siblings")
    parser.add_argument("--questions", type=Path, default=ROOT / "eval" / "siblings.jsonl")
    args = parser.parse_args()
    documents = select_documents(args.shared, args.instance / "documents")
    app = instance(args.instance, documents, args.instance.parent / "models")  # the model make eval exported
    questions = load_questions(args.questions)
    places = {path.stem: place_of(path) for path in documents}
    named = [q for q in questions if places.get(q["doc"]) and places[q["doc"]] in q["q"]]
    with app.app_context():
        engine = app.extensions["engine"]
        rows = [("all", questions), ("naming the place", named),
                ("naming no place", [q for q in questions if q not in named])]
        columns = ("doc@1", "doc@3", "R@1", "R@3", "right", "useful", "wrong", "wrong_document", "declined")
        print("| questions | n | " + " | ".join(columns) + " |")
        print("|" + " --- |" * (len(columns) + 2))
        for label, subset in rows:
            if subset:
                m = measure(engine.answerer, subset)
                print(f"| {label} | {m['questions']} | " + " | ".join(fmt(m[c]) for c in columns) + " |", flush=True)


if __name__ == "__main__":
    main()
