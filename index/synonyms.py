"""Members' words -> the documents' words: a dictionary that rewrites questions before they are searched.

Members write 村官, 一把手, 交党费; the documents write 村干部, 主要负责人, 交纳党费. The dictionary is a plain
text file an admin can read and edit, one entry a line::

    # comment
    村干部 = 村官 村两委干部
    主要负责人 = 一把手

The left side is how the documents say it; the right side lists what members say instead. A question is
rewritten by replacing each member's word (longest first, on normalised text) with the documents' word,
and the rewritten question is what both the lexical and the dense side see, so it is ranked *and*
decided as if the member had used the documents' word. Nothing is re-embedded when the file changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SYNONYMS = Path(__file__).resolve().parent / "synonyms.txt"
ENTRY = re.compile(r"^\s*(?P<canonical>[^=#]+?)\s*=\s*(?P<variants>[^#]*?)\s*$")


class SynonymError(ValueError):
    """A dictionary line cannot be read; the message names the line."""


@dataclass(frozen=True)
class Rewrite:
    text: str  # the question with members' words replaced
    replaced: tuple[tuple[str, str], ...]  # (member's word, documents' word), in the order found
    # the question as given, but for the words of an admin's own groups: how the member worded it (the wording
    # and figure evidence read this), where an admin's group says a word names the documents' subject
    asked: str = ""


class Synonyms:
    def __init__(self, entries: Iterable[tuple[str, Iterable[str]]] = (),
                 normalize: Callable[[str], str] = str, curated: int = 0) -> None:
        """``curated``: how many of the first entries are an admin's own groups (bot.curation.synonyms). The
        words they map are replaced in ``Rewrite.asked`` too: the shipped dictionary maps members' everyday
        words broadly (an errand reads as policy in the documents' words), an admin's group means its words
        are the documents' subject."""
        self.entries = [(canonical, list(variants)) for canonical, variants in entries]
        self.curated = curated
        self.canonical: dict[str, str] = {}  # member's word -> documents' word (the first entry wins)
        self.curated_words: set[str] = set()  # the member's words an admin's group maps
        for number, (canonical, variants) in enumerate(self.entries):
            canonical = normalize(canonical)
            for variant in variants:
                variant = normalize(variant)
                if variant and variant != canonical and variant not in canonical and variant not in self.canonical:
                    self.canonical[variant] = canonical
                    if number < curated:
                        self.curated_words.add(variant)
        words = sorted(self.canonical, key=lambda w: (-len(w), w))
        self._pattern = re.compile("|".join(map(re.escape, words))) if words else None

    @classmethod
    def from_text(cls, text: str, normalize: Callable[[str], str] = str, source: str = "synonyms") -> Synonyms:
        return cls(parse(text, source), normalize)

    @classmethod
    def from_file(cls, path: Path, normalize: Callable[[str], str] = str) -> Synonyms:
        return cls.from_text(Path(path).read_text(encoding="utf-8-sig"), normalize, str(path))

    def normalized(self, normalize: Callable[[str], str]) -> Synonyms:
        """The same entries matched on text normalised by ``normalize`` (the tokenizer's)."""
        return Synonyms(self.entries, normalize, self.curated)

    def __len__(self) -> int:
        return len(self.canonical)

    def rewrite(self, text: str, known: Callable[[str], bool] = lambda word: False) -> Rewrite:
        """Replace members' words in normalised ``text`` with the documents' words, longest match first.

        A word the documents use themselves (``known``: 提拔 in 带病提拔, 一把手 in a speech) is not only a
        member's word: it is left as it is, so the passages that use it still match it exactly."""
        if self._pattern is None:
            return Rewrite(text, (), text)
        replaced: list[tuple[str, str]] = []
        curated: list[tuple[int, int, str]] = []  # (start, end, documents' word) of an admin's words

        def swap(m: re.Match[str]) -> str:
            word = m.group(0)
            canonical = self.canonical[word]
            if known(word) or text.startswith(canonical, m.start()) or text.endswith(canonical, 0, m.end()):
                return word
            replaced.append((word, canonical))
            if word in self.curated_words:
                curated.append((m.start(), m.end(), canonical))
            return canonical

        rewritten = self._pattern.sub(swap, text)
        asked = text
        for start, end, canonical in reversed(curated):
            asked = asked[:start] + canonical + asked[end:]
        return Rewrite(rewritten, tuple(replaced), asked)


def parse(text: str, source: str = "synonyms") -> list[tuple[str, list[str]]]:
    """The entries of a dictionary file; a malformed line raises ``SynonymError`` naming it."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = ENTRY.match(stripped)
        variants = m.group("variants").replace("，", " ").replace(",", " ").split() if m else []
        if not m or not variants:
            raise SynonymError(f"{source}:{number}: expected '文档用词 = 说法1 说法2', got {stripped!r}")
        entries.append((m.group("canonical").strip(), variants))
    return entries
