"""The unanswered queue (待处理问题): what members asked that the bot could not answer well.

Declined questions and ``related`` replies from the query log, and answers members marked 没用, are
grouped: the same question after normalisation is one entry (with its count and last-asked time), and
entries whose questions are close — e5 cosine at the bar, or most character bigrams shared — form one
group. Questions an admin marked out of scope, and those an official answer now covers word for word,
leave the queue.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bot.curation.faq import bigrams, faq_key, overlap

GROUP_COSINE = 0.95  # two questions are one group at this e5 cosine …
GROUP_OVERLAP = 0.6  # … or with this share of their character bigrams in common
LOG_ROWS = 5000  # recent query-log rows read
MAX_DISTINCT = 400  # distinct questions grouped (the most asked)
REASONS = {"abstain": "declined", "related": "related"}


@dataclass
class Entry:
    key: str
    question: str
    count: int = 0
    last_asked: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"question": self.question, "count": self.count, "last_asked": self.last_asked,
                "reasons": self.reasons}


@dataclass
class Group:
    id: str
    entries: list[Entry]

    @property
    def question(self) -> str:
        return self.entries[0].question

    @property
    def count(self) -> int:
        return sum(e.count for e in self.entries)

    @property
    def last_asked(self) -> float:
        return max(e.last_asked for e in self.entries)

    def to_json(self) -> dict:
        return {"id": self.id, "question": self.question, "count": self.count, "last_asked": self.last_asked,
                "questions": [e.to_json() for e in self.entries]}

    def eval_lines(self) -> str:
        """The group's questions as a question set for QA (``{"id", "q", "gold": []}`` per line)."""
        return "".join(json.dumps({"id": f"unanswered-{self.id}-{i}", "q": e.question, "gold": []},
                                  ensure_ascii=False) + "\n" for i, e in enumerate(self.entries, 1))


def collect(rows: list[tuple[str, str, float]], skip: Callable[[str], bool]) -> list[Entry]:
    """Entries from (question, reason, at) rows, one per normalised question, most asked first."""
    entries: dict[str, Entry] = {}
    for question, reason, at in rows:
        key = faq_key(question)
        if not key or skip(key):
            continue
        entry = entries.setdefault(key, Entry(key, question))
        entry.count += 1
        if at >= entry.last_asked:
            entry.last_asked, entry.question = at, question
        entry.reasons[reason] = entry.reasons.get(reason, 0) + 1
    return sorted(entries.values(), key=lambda e: (-e.count, -e.last_asked, e.key))[:MAX_DISTINCT]


def group(entries: list[Entry], vector: Callable[[str], np.ndarray]) -> list[Group]:
    """Greedy grouping, most asked first: an entry joins the first group whose first question is close."""
    heads: list[tuple[np.ndarray, set[str]]] = []
    groups: list[list[Entry]] = []
    for entry in entries:
        v = vector(entry.question)
        grams = bigrams(entry.question)
        for (head_v, head_grams), members in zip(heads, groups, strict=True):
            if float(head_v @ v) >= GROUP_COSINE or overlap(grams, head_grams) >= GROUP_OVERLAP:
                members.append(entry)
                break
        else:
            heads.append((v, grams))
            groups.append([entry])
    out = [Group(hashlib.sha1(members[0].key.encode()).hexdigest()[:12], members) for members in groups]
    return sorted(out, key=lambda g: (-g.count, -g.last_asked, g.id))
