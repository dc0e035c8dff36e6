"""Admin-edited synonym groups, layered over the shipped dictionary (``index/synonyms.txt``).

A group lists words that mean the same (村官, 村干部; 中组部, 中共中央组织部). Which of them is "the
documents' word" is read from the serving index: the one most passages contain (the first listed on a
tie, or when the documents use none). The admin's groups come first, so they override the shipped
entries for the same member's word. The layered dictionary is set on the serving index's searcher when
curation changes and on every index a worker loads later, so a question in the member's word is
rewritten, ranked and decided as if it used the documents' word — its wording too, which the shipped
dictionary's words do not change (``Synonyms``' ``curated``); nothing is re-embedded.
"""

from __future__ import annotations

import json

from index.store import LoadedIndex
from index.synonyms import Synonyms

MAX_GROUPS = 5000
MAX_WORDS = 50
MAX_WORD_CHARS = 50


class SynonymGroupsError(ValueError):
    """Groups that cannot be stored; the message says which."""


def check_groups(groups: object) -> list[list[str]]:
    """Cleaned groups: lists of 2+ distinct non-empty words; raises ``SynonymGroupsError``."""
    if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
        raise SynonymGroupsError(f"groups 应为不超过 {MAX_GROUPS} 组的列表，例如 [[\"村官\", \"村干部\"]]")
    out = []
    for number, group in enumerate(groups, 1):
        if not isinstance(group, list) or not all(isinstance(w, str) for w in group):
            raise SynonymGroupsError(f"第 {number} 组应为词语列表")
        words = list(dict.fromkeys(w.strip() for w in group if w.strip()))
        if len(words) < 2 or len(words) > MAX_WORDS:
            raise SynonymGroupsError(f"第 {number} 组应有 2 到 {MAX_WORDS} 个不同的词")
        if any(len(w) > MAX_WORD_CHARS or "=" in w or "#" in w for w in words):
            raise SynonymGroupsError(f"第 {number} 组的词语过长或含有 = # 符号")
        out.append(words)
    return out


def groups_from_setting(value: str | None) -> list[list[str]]:
    if not value:
        return []
    data = json.loads(value)
    return [list(g) for g in data] if isinstance(data, list) else []


class SynonymLayer:
    """Sets the shipped dictionary plus the admin's groups on loaded indexes."""

    def __init__(self, shipped: Synonyms) -> None:
        self.shipped = shipped
        self.groups: list[list[str]] = []
        self._texts: dict[str, str] = {}  # index version -> its passages' normalised text

    def set_groups(self, groups: list[list[str]]) -> None:
        self.groups = groups

    def apply(self, index: LoadedIndex) -> None:
        searcher = index.searcher
        entries = [self.entry(group, index) for group in self.groups] + list(self.shipped.entries)
        searcher.synonyms = Synonyms(entries, searcher.tokenizer.normalize, curated=len(self.groups))

    def entry(self, group: list[str], index: LoadedIndex) -> tuple[str, list[str]]:
        """(the documents' word, the others) for one group, read from ``index``'s passages."""
        text = self._texts.get(index.version)
        normalize = index.searcher.tokenizer.normalize
        if text is None:
            text = "\n".join(normalize(c.text) for c in index.chunks)
            self._texts = {index.version: text}  # keep only the latest index's text
        counts = [text.count(normalize(w)) for w in group]
        best = max(range(len(group)), key=lambda i: (counts[i], -i))
        return group[best], [w for i, w in enumerate(group) if i != best]
