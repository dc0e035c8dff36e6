"""Question sets with gold quotes -> retrieval and abstention metrics (format: ../shared/eval/README.md).

A passage hits when, with all white space deleted from both, it contains one of the gold quotes.

Besides R@k, the metrics count what a member experiences (the reply's ``tier``):
- ``right``: answered, and the first passage is a right one;
- ``wrong``: answered, and neither of the first two passages is right (a confident wrong answer);
- ``useful``: right, or a ``related`` reply whose (up to three) passages hold a right one;
- ``declined``: an answerable question declined outright;
- ``shown``: the reply's own text holds a gold quote (or ``SHOWN_CHARS`` running characters of one): the
  member reads the answer without sending 更多 — a quoted passage, or a related reply's line;
- out of scope: the share declined outright, and for ``"hard": true`` questions the share not answered
  as ``answer`` (a ``related`` reply to them is allowed), each split into everyday and hard.

``answer_auc`` needs no threshold: how well the decision's confidence puts the questions whose first
passage is right above all the others (out-of-scope ones included). The tiers move when a refit moves its
thresholds by a few questions; this figure compares two decisions without that noise.

``right_at_hard_bar`` asks the same of the thresholds: the most right answers one answer threshold gives on a
set while ``HARD_BAR`` of its hard out-of-scope questions are still not answered (the scope model as it is).
It is chosen on the set itself, so it is a ceiling of what any threshold could do there, not a figure to
expect; R@1 is the ceiling of any decision at all, and R@3 of ``useful``.

``compare`` sets two runs over the same questions side by side, question by question: how many each
outcome gained and lost, and the sign test's chance of a split that uneven from a change that does nothing.
Two fits differ on far fewer questions than two question sets do, so this sees a real change that the
sets' intervals (``wilson_interval``) are too wide to show.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.answer import RELATED_SHOWN, Answer, Answerer

WHITESPACE = re.compile(r"\s+")
RANKS = (1, 3, 5)
SHOWN_CHARS = 10
HARD_BAR = 0.8  # the share of hard out-of-scope questions not to answer (issue 11's bar)


class QuestionSetError(ValueError):
    """A question set file is malformed; the message names the line."""


def load_questions(path: Path) -> list[dict]:
    questions = []
    with open(path, encoding="utf-8-sig") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise QuestionSetError(f"{path}:{number}: not JSON ({exc.msg})") from exc
            except (RecursionError, ValueError) as exc:  # nested too deep, or an integer too long to read
                raise QuestionSetError(f"{path}:{number}: not a question line ({exc.__class__.__name__})") from exc
            if not isinstance(row, dict) or not isinstance(row.get("q"), str):
                raise QuestionSetError(f'{path}:{number}: each line needs {{"id": …, "q": "…"}}')
            row.setdefault("id", str(number))
            gold = row.get("gold", [])
            if not isinstance(gold, list) or not all(isinstance(g, str) for g in gold):
                raise QuestionSetError(f"{path}:{number}: gold must be a list of quotes")
            questions.append(row)
    return questions


def load_question_sets(paths: Iterable[Path]) -> list[dict]:
    """The questions of several sets as one list; an id an earlier set already used is prefixed with its
    file's name (``tune-more:17``), so every question keeps its own."""
    questions: list[dict] = []
    seen: set[str] = set()
    for path in paths:
        for row in load_questions(path):
            if str(row["id"]) in seen:
                row["id"] = f"{path.stem}:{row['id']}"
            seen.add(str(row["id"]))
            questions.append(row)
    return questions


def first_hit_rank(answer: Answer, gold: list[str]) -> int | None:
    quotes = [WHITESPACE.sub("", g) for g in gold]
    for rank, passage in enumerate(answer.passages, 1):
        text = WHITESPACE.sub("", passage.text)
        if any(q and q in text for q in quotes):
            return rank
    return None


@dataclass
class EvalRow:
    id: str
    question: str
    answerable: bool
    rank: int | None
    abstained: bool
    confidence: float | None
    tier: str = "answer"  # answer | related | decline
    hard: bool = False  # an out-of-scope question close to the documents' topic
    kind: str = ""  # the question's kind in the set (paraphrase, typo, …), when it says
    shown: bool = False  # the reply's text holds (a piece of) a gold quote
    # the scope model and the library let it be answered: its answer confidence alone decides
    answerable_by_scope: bool = True

    @property
    def failed(self) -> bool:
        return (self.rank != 1 or self.abstained) if self.answerable else not self.abstained


def evaluate(answerer: Answerer, questions: list[dict], k: int = 5) -> tuple[dict, list[EvalRow]]:
    rows = []
    for q in questions:
        answer = answerer.answer(q["q"], k=k)
        answerable = bool(q.get("gold"))
        rows.append(EvalRow(
            id=str(q["id"]), question=q["q"], answerable=answerable,
            rank=first_hit_rank(answer, q["gold"]) if answerable else None, abstained=answer.abstained,
            confidence=answer.decision.confidence if answer.decision else None,
            tier=answer.tier, hard=bool(q.get("hard")), kind=str(q.get("kind") or ""),
            shown=answerable and shows_gold(answer.text, q["gold"]),
            answerable_by_scope=answer.decision is not None and not answer.decision.missing
            and answer.decision.scope >= answer.decision.related_threshold,
        ))
    return metrics(rows), rows


def shows_gold(text: str, gold: list[str]) -> bool:
    """Whether ``text`` holds one of the gold quotes, or ``SHOWN_CHARS`` running characters of one (a reply's
    line is cut; white space ignored)."""
    text = WHITESPACE.sub("", text)
    for quote in (WHITESPACE.sub("", g) for g in gold):
        n = min(SHOWN_CHARS, len(quote))
        if n and any(quote[i:i + n] in text for i in range(len(quote) - n + 1)):
            return True
    return False


def metrics(rows: list[EvalRow]) -> dict:
    answerable = [r for r in rows if r.answerable]
    out_of_scope = [r for r in rows if not r.answerable]
    n = len(answerable)
    result: dict = {"questions": len(rows), "answerable": n, "out_of_scope": len(out_of_scope)}
    for k in RANKS:
        result[f"R@{k}"] = round(sum(1 for r in answerable if r.rank and r.rank <= k) / n, 4) if n else None
    result["MRR"] = round(sum(1 / r.rank for r in answerable if r.rank and r.rank <= 5) / n, 4) if n else None
    result["false_abstentions"] = sum(1 for r in answerable if r.abstained)
    result["abstention_rate"] = (
        round(sum(1 for r in out_of_scope if r.abstained) / len(out_of_scope), 4) if out_of_scope else None
    )
    return result | member_view(rows) | {"answer_auc": answer_auc(rows),
                                         "right_at_hard_bar": right_at_hard_bar(rows)}


def wilson_interval(count: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The 95 % interval (Wilson score) of a share of ``count`` in ``n``: how far the figure of another set of
    questions like these may fall from it by chance alone. None for an empty set."""
    if n <= 0:
        return None
    p = count / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


# Each outcome of one question, yes or no (None: the outcome is not about this kind of question): what
# ``member_view`` counts shares of, and ``compare`` counts the questions each one turned on and off.
OUTCOMES: dict[str, Callable[[EvalRow], bool | None]] = {
    "R@1": lambda r: r.rank == 1 if r.answerable else None,
    "R@3": lambda r: bool(r.rank and r.rank <= 3) if r.answerable else None,
    "right": lambda r: r.tier == "answer" and r.rank == 1 if r.answerable else None,
    "useful": lambda r: (r.tier == "answer" and r.rank == 1
                         or r.tier == "related" and bool(r.rank and r.rank <= RELATED_SHOWN)) if r.answerable else None,
    "wrong": lambda r: r.tier == "answer" and not (r.rank and r.rank <= 2) if r.answerable else None,
    "related": lambda r: r.tier == "related" if r.answerable else None,
    "declined": lambda r: r.tier == "decline" if r.answerable else None,
    "shown": lambda r: r.shown if r.answerable else None,
    "everyday_declined": lambda r: r.tier == "decline" if not r.answerable and not r.hard else None,
    "hard_not_answered": lambda r: r.tier != "answer" if not r.answerable and r.hard else None,
    "hard_declined": lambda r: r.tier == "decline" if not r.answerable and r.hard else None,
}
MEMBER_VIEW = tuple(name for name in OUTCOMES if not name.startswith("R@"))


@dataclass(frozen=True)
class Change:
    gained: int  # questions where the outcome holds after and did not before
    lost: int  # the other way round
    p: float  # two-sided sign test: the chance of a split at least this uneven if the change did nothing

    def __str__(self) -> str:
        return f"+{self.gained} −{self.lost} (p {self.p:.2g})" if self.gained or self.lost else "="


def sign_test(gained: int, lost: int) -> float:
    """Two-sided exact sign test of ``gained`` against ``lost`` (ties dropped): P(a split at least as uneven
    | each changed question as likely to go either way)."""
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(gained, lost) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def compare(before: list[EvalRow], after: list[EvalRow]) -> dict[str, Change]:
    """Each outcome's questions gained and lost from ``before`` to ``after`` (the same questions, matched by
    id), with the sign test's p."""
    earlier = {r.id: r for r in before}
    if len(earlier) != len(before) or {r.id for r in after} != set(earlier) or len(after) != len(before):
        raise QuestionSetError("the two runs are not over the same questions")
    out: dict[str, Change] = {}
    for name, outcome in OUTCOMES.items():
        gained = lost = 0
        for row in after:
            was, now = outcome(earlier[row.id]), outcome(row)
            gained += bool(now) and not was
            lost += bool(was) and not now
        out[name] = Change(gained, lost, round(sign_test(gained, lost), 4))
    return out


def answer_auc(rows: list[EvalRow]) -> float | None:
    """The area under the ROC curve of the answer confidence for "the first passage is right" against every
    other question: the chance that a right one is more confident than another (ties count half)."""
    scored = [(r.confidence, r.answerable and r.rank == 1) for r in rows if r.confidence is not None]
    right = np.array([y for _, y in scored], dtype=bool)
    n_right, n_other = int(right.sum()), int((~right).sum())
    if not n_right or not n_other:
        return None
    _, which, counts = np.unique([c for c, _ in scored], return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[which]  # 1-based, ties sharing their mean rank
    return round(float((ranks[right].sum() - n_right * (n_right + 1) / 2) / (n_right * n_other)), 4)


def right_at_hard_bar(rows: list[EvalRow], bar: float = HARD_BAR) -> float | None:
    """The largest share of the answerable questions answered with a right first passage that one answer
    threshold gives while at least ``bar`` of the hard out-of-scope questions are not answered (every
    threshold when the set has none). A row is answered at threshold t when its confidence reaches t and
    the scope model lets it (``answerable_by_scope``). None without answerable questions."""
    answerable = [r for r in rows if r.answerable]
    if not answerable:
        return None
    hard = np.sort([r.confidence for r in rows if r.hard and not r.answerable and r.answerable_by_scope
                    and r.confidence is not None])
    n_hard = sum(1 for r in rows if r.hard and not r.answerable)
    right = np.sort([r.confidence for r in answerable
                     if r.rank == 1 and r.answerable_by_scope and r.confidence is not None])
    best = 0
    for t in np.concatenate([right, [np.inf]]):  # the best threshold sits at some right row's confidence
        answered_hard = len(hard) - np.searchsorted(hard, t, side="left")
        if n_hard and (n_hard - answered_hard) / n_hard < bar:
            continue
        best = max(best, int(len(right) - np.searchsorted(right, t, side="left")))
    return round(best / len(answerable), 4)


def member_view(rows: list[EvalRow]) -> dict:
    """What members experience: each outcome of ``OUTCOMES`` but R@k, as the share of the questions it is
    about (answerable, everyday or hard) that it holds for; None when the set has none of them."""
    view: dict = {}
    for name in MEMBER_VIEW:
        about = [held for held in map(OUTCOMES[name], rows) if held is not None]
        view[name] = round(sum(about) / len(about), 4) if about else None
    return view
