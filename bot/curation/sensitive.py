"""Sensitive words (敏感词): one Aho-Corasick automaton over every listed word, matched in one pass.

``block`` words stop a question before it is searched; ``mask`` words are replaced by ＊ in every reply
text. Matching ignores letter case (on a copy of the text of the same length, so positions map back).
"""

from __future__ import annotations

from dataclasses import dataclass

import ahocorasick

MASK_CHAR = "＊"
BLOCK, MASK = "block", "mask"


@dataclass(frozen=True)
class Found:
    word_id: int
    word: str
    action: str
    start: int
    end: int  # exclusive


def fold(text: str) -> str:
    """Lower case, keeping every character's position."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


class SensitiveWords:
    def __init__(self, words: list[tuple[int, str, str]] = ()) -> None:  # type: ignore[assignment]
        """``words``: (id, word, action) rows."""
        self.size = 0
        self._automaton: ahocorasick.Automaton | None = None
        automaton = ahocorasick.Automaton()
        for word_id, word, action in words:
            key = fold(word.strip())
            if key:
                automaton.add_word(key, (word_id, word, action, len(key)))
                self.size += 1
        if self.size:
            automaton.make_automaton()
            self._automaton = automaton

    def find(self, text: str) -> list[Found]:
        """Every occurrence of a listed word in ``text``."""
        if self._automaton is None or not text:
            return []
        return [Found(word_id, word, action, end - length + 1, end + 1)
                for end, (word_id, word, action, length) in self._automaton.iter(fold(text))]

    def blocking(self, text: str) -> list[Found]:
        return [f for f in self.find(text) if f.action == BLOCK]

    def mask(self, text: str) -> tuple[str, list[Found]]:
        """``text`` with every ``mask`` word (and any ``block`` word, which must not be shown either)
        replaced by ＊, one per character; and what was masked."""
        found = self.find(text)
        if not found:
            return text, []
        chars = list(text)
        for f in found:
            chars[f.start:f.end] = MASK_CHAR * (f.end - f.start)
        return "".join(chars), found
