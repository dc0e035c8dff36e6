"""Clean document -> Chunks: sentence-aware passages that never cross a section or cut a sentence.

Each chunk keeps the document id and title, its section path and its character offsets into the
cleaned text, so an answer can quote the passage exactly and cite where it stands.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from index.ingest import BODY, FOOTER_SECTION, HEADER, Document, Paragraph

DEFAULT_TARGET_CHARS = 240  # chosen by measurement on ../shared/eval (see CHANGES.md)
# A passage at least this share of the target closes where a new paragraph begins, so a paragraph that
# states something new ("今年发展主要预期目标是：…") opens a passage instead of trailing the one before it.
PARAGRAPH_CLOSE_SHARE = 0.5
HEADER_SECTION = "文档信息"
# Words people use when asking about a document's metadata rather than its content; indexed with the
# header and footer passages so "谁讲的" or "发给了哪些单位" can find them.
SECTION_CONTEXT = {
    HEADER_SECTION: "标题 作者 讲话人 发言人 发文单位 日期 时间",
    FOOTER_SECTION: "印发 发送 抄送 主送 单位 范围 印发日期",
}
SENTENCE = re.compile(r"[^。！？!?；;…]*(?:[。！？!?；;…]+[”’」』）)】]*|$)")
CLAUSE = re.compile(r"[^，,、：:]*(?:[，,、：:]+|$)")


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    doc_id: str
    title: str
    section: tuple[str, ...]
    text: str  # the passage as shown to users
    start: int  # offsets into the document's cleaned text
    end: int

    def context_text(self) -> str:
        """What the indexes see: the passage with its document title and section for context."""
        head = " ".join((self.title, *self.section, *(SECTION_CONTEXT.get(s, "") for s in self.section[:1])))
        return f"{head}\n{self.text}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Chunk:
        return cls(**{**data, "section": tuple(data["section"])})


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) spans of the sentences in ``text``; they cover it without gaps."""
    spans = []
    for m in SENTENCE.finditer(text):
        if m.end() > m.start():
            spans.append((m.start(), m.end()))
    return spans


def _split_long(text: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """A sentence longer than ``limit`` is cut at clause ends (commas), the only place left to cut."""
    if end - start <= limit:
        return [(start, end)]
    pieces: list[tuple[int, int]] = []
    piece_start = start
    for m in CLAUSE.finditer(text, start, end):
        if m.end() == m.start():
            continue
        if m.end() - piece_start > limit and m.start() > piece_start:
            pieces.append((piece_start, m.start()))
            piece_start = m.start()
    pieces.append((piece_start, end))
    return pieces


def chunk_document(doc: Document, target_chars: int = DEFAULT_TARGET_CHARS) -> list[Chunk]:
    """Group consecutive sentences of the same section into passages of about ``target_chars``.

    The header (title, author, date) becomes one passage; headings travel in the section path rather
    than standing alone; short neighbouring paragraphs of one section share a passage.
    """
    chunks: list[Chunk] = []
    groups = _paragraph_groups(doc.paragraphs)
    for section, paragraphs in groups:
        spans: list[tuple[int, int]] = []
        opening: set[int] = set()  # where a paragraph begins
        for para in paragraphs:
            opening.add(para.start)
            if para.kind == HEADER:
                spans.append((para.start, para.end))
                continue
            for s, e in split_sentences(para.text):
                spans.extend(_split_long(doc.text, para.start + s, para.start + e, 2 * target_chars))
        for start, end in _pack(spans, target_chars, opening):
            text = doc.text[start:end].strip()
            if not text:
                continue
            chunks.append(Chunk(
                chunk_id=f"{doc.doc_id}#{len(chunks)}", doc_id=doc.doc_id, title=doc.title,
                section=section, text=text, start=start, end=end,
            ))
    return chunks


def _paragraph_groups(paragraphs: list[Paragraph]) -> list[tuple[tuple[str, ...], list[Paragraph]]]:
    groups: list[tuple[tuple[str, ...], list[Paragraph]]] = []
    for para in paragraphs:
        if para.is_heading:
            continue
        key = ("",) if para.kind == HEADER else para.section
        if groups and groups[-1][0] == key and para.kind == groups[-1][1][-1].kind:
            groups[-1][1].append(para)
        else:
            groups.append((key, [para]))
    return [((HEADER_SECTION,) if key == ("",) else key, paras) for key, paras in groups]


def _pack(spans: list[tuple[int, int]], target: int, opening: set[int]) -> list[tuple[int, int]]:
    """Greedily pack sentence spans; a passage closes once adding the next would pass the target, or at
    a new paragraph (``opening``) once it holds ``PARAGRAPH_CLOSE_SHARE`` of the target.

    A passage that would end up much shorter than the target joins its predecessor instead.
    """
    packed: list[list[int]] = []
    for start, end in spans:
        if not packed:
            packed.append([start, end])
            continue
        length = packed[-1][1] - packed[-1][0]
        closes = end - packed[-1][0] > target or (start in opening and length >= target * PARAGRAPH_CLOSE_SHARE)
        if length < target // 3 or not closes:
            packed[-1][1] = end
        else:
            packed.append([start, end])
    if len(packed) > 1 and packed[-1][1] - packed[-1][0] < target // 3:
        last = packed.pop()
        packed[-1][1] = last[1]
    return [(s, e) for s, e in packed]


__all__ = ["BODY", "Chunk", "chunk_document", "split_sentences"]
