"""The cleaned text of every document an index version was built from, kept by content.

A 查看原文 link names a document by the SHA-256 of its cleaned text (``text_key``) and the quoted passage
by character offsets into that text. Index versions are pruned and documents replaced, so the texts live
beside the versions, one small JSON file per distinct text (``<root>/<text_key>.json``), written by each
build and never removed: a link keeps showing the text it quoted, whatever was indexed since.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from index.chunk import HEADER_SECTION
from index.ingest import FOOTER, HEADER, Document

KEY_CHARS = 64  # a text_key is a full SHA-256 in hex
META_KEPT = ("issuer", "number", "status", "replaces", "effective", "latest", "latest_title", "latest_date")


def text_key(text: str) -> str:
    """The key of a document's cleaned text (what a chunk's offsets point into)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Section:
    """The part of a document a passage stands in: its path and paragraphs, each split into
    (before, quoted, after) around the passage's offsets."""

    path: tuple[str, ...]
    paragraphs: list[tuple[str, str, str]]


class SourceArchive:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def put(self, doc: Document, meta: dict) -> str:
        """Keep ``doc``'s cleaned text and paragraph structure (once per distinct text); returns its key."""
        key = text_key(doc.text)
        path = self.root / f"{key}.json"
        if path.exists():
            return key
        self.root.mkdir(parents=True, exist_ok=True)
        record = {
            "key": key, "doc_id": doc.doc_id, "title": doc.title, "date": doc.date,
            "meta": {k: meta[k] for k in META_KEPT if meta.get(k) not in (None, "")},
            "text": doc.text,
            "paragraphs": [[p.start, p.end, list(p.section), p.kind, p.is_heading] for p in doc.paragraphs],
        }
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
        return key

    def get(self, key: str) -> dict | None:
        if len(key) != KEY_CHARS or not all(c in "0123456789abcdef" for c in key):
            return None
        try:
            return json.loads((self.root / f"{key}.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def find(self, prefix: str) -> dict | None:
        """The record whose key starts with ``prefix`` (links carry a short prefix of the key)."""
        if not prefix or not all(c in "0123456789abcdef" for c in prefix) or not self.root.is_dir():
            return None
        matches = sorted(self.root.glob(f"{prefix}*.json"))
        return self.get(matches[0].stem) if len(matches) == 1 else None


def section_of(record: dict, start: int, end: int) -> Section | None:
    """The whole section (the run of paragraphs with the same path and kind) holding ``start``, with
    the span ``start:end`` marked in each paragraph it touches. None when the offsets are outside the text."""
    text: str = record["text"]
    if not 0 <= start < end <= len(text):
        return None
    paragraphs = record["paragraphs"]
    at = next((i for i, p in enumerate(paragraphs) if p[0] <= start < p[1] and not p[4]), None)
    if at is None:
        at = next((i for i, p in enumerate(paragraphs) if start < p[1] and p[0] < end and not p[4]), None)
    if at is None:
        return None

    def group(p: list) -> tuple:
        return (p[3], () if p[3] == HEADER else tuple(p[2]))

    key = group(paragraphs[at])
    first = last = at
    while first > 0 and group(paragraphs[first - 1]) == key:
        first -= 1
    while last + 1 < len(paragraphs) and group(paragraphs[last + 1]) == key:
        last += 1
    shown = []
    for p_start, p_end, _section, _kind, heading in paragraphs[first:last + 1]:
        if heading:
            continue
        lo, hi = max(p_start, start), min(p_end, end)
        if lo < hi:
            shown.append((text[p_start:lo], text[lo:hi], text[hi:p_end]))
        else:
            shown.append((text[p_start:p_end], "", ""))
    kind, path = key
    if kind == HEADER:
        path = (HEADER_SECTION,)
    elif kind == FOOTER and not path:
        path = ("印发信息",)
    return Section(path=tuple(path), paragraphs=shown)
