"""File -> clean text with structure: title, date, author and the section path of every paragraph.

Policy documents reach us as text extracted from PDFs. That text carries the layout's artefacts, and
``clean()`` undoes them for the whole family, not for one file:

- hard line breaks mid-sentence, often with a blank line between every two lines (double spacing);
- a paragraph end marked by a trailing space on the line, where the extractor kept one;
- a line starting with a space after a page break; page-number lines such as ``— 2 —`` or ``第 3 页``;
- spaces between CJK characters and digits (``2018 年 2 月``);
- a header (title, author, date) at the top and a distribution footer (抄送/送/发 … 印发) at the bottom.

Headings (``一、`` ``（一）`` ``第一，`` ``第一章`` ``第一条`` …) become each paragraph's section path.
"""

from __future__ import annotations

import hashlib
import re
import statistics
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from index import metadata
from index.formats import SUPPORTED_SUFFIXES, IngestError, LimitError, ReadLimits, decode, extract_text

HEADER = "header"
BODY = "body"
FOOTER = "footer"
FOOTER_SECTION = "印发信息"

CN_NUM = "一二三四五六七八九十百零〇两"

# Heading kinds, outermost first: the rank decides nesting whatever order a document uses them in.
HEADING_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("part", re.compile(rf"^第[{CN_NUM}\d]+[编部](分)?(?=\s|$|[^\w])")),
    ("chapter", re.compile(rf"^第[{CN_NUM}\d]+章")),
    ("named", re.compile(r"^(总纲|总则|序言|前言|引言|附则|结束语)$")),  # a chapter without a number
    ("section", re.compile(rf"^第[{CN_NUM}\d]+节")),
    ("cn_num", re.compile(rf"^[{CN_NUM}]+、")),
    ("paren_cn", re.compile(rf"^[（(][{CN_NUM}]+[）)]")),
    ("ordinal", re.compile(rf"^第[{CN_NUM}]+[，,、：:]")),
    ("article", re.compile(rf"^第[{CN_NUM}\d]+条")),
    ("arabic", re.compile(r"^\d{1,2}[．.、](?!\d)")),
]
HEADING_RANK = {kind: rank for rank, (kind, _) in enumerate(HEADING_PATTERNS)}
STANDALONE_HEADING_MAX = 40  # a heading on a line of its own is short and has no sentence end
SECTION_LABEL_MAX = 48

PAGE_NUMBER = re.compile(
    r"^[\s—–\-－·•]*(第\s*)?\d{1,4}\s*(页)?[\s—–\-－·•]*$"  # — 2 —, - 3 -, 第 4 页
    r"|^[\s—–\-－]*\d{1,4}\s*/\s*\d{1,4}[\s—–\-－]*$"  # 2 / 10
)
DATE = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日")
HEADER_DATE = re.compile(r"^[（(]?\s*\d{4}\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*日\s*[）)]?$")
AUTHOR = re.compile(r"^[\u4e00-\u9fff·]{2,8}$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATELINE = re.compile(r"^(新华社|人民网|中新社|央视网|本报).{0,16}电$")  # wire datelines above a title
TITLE_LINE_MAX = 40
DOC_NUMBER = re.compile(r"[〔\[［(（]\s*\d{4}\s*[〕\]］)）]\s*\d+\s*号[）)]?$")  # 阿府办发〔2021〕21号, （…82号）
FOOTER_LINE = re.compile(r"^(抄送|主送|送|发|报|分送|印送)[：:]|印发\s*$|^(联系人|联系电话)[：:]")
SENTENCE_END = "。！？!?；;…"
LONG_TITLE_MAX = 120
DOCUMENT_TYPE_END = re.compile(r"(通知|意见|办法|决定|规定|方案|条例|细则|规划|纲要|公告|通告|批复|报告)[》”」]?$")
CLOSERS = "”’」』）)】"
CJK = r"\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef“”‘’"

__all__ = ["IngestError", "LimitError", "ReadLimits", "SUPPORTED_SUFFIXES", "Document", "Paragraph", "clean", "decode",
           "load_bytes", "load_file"]




@dataclass
class Paragraph:
    text: str
    section: tuple[str, ...]
    kind: str  # HEADER, BODY or FOOTER
    start: int = 0  # character offsets into Document.text
    end: int = 0
    is_heading: bool = False


@dataclass
class Document:
    doc_id: str
    title: str
    text: str
    paragraphs: list[Paragraph]
    source: str = ""
    date: str | None = None
    author: str | None = None
    sha256: str = ""
    meta: dict[str, str] = field(default_factory=dict)




def load_file(path: Path, doc_id: str | None = None, title: str | None = None,
              limits: ReadLimits | None = None) -> Document:
    """Read a document file (.txt .md .docx .pdf .html) and clean it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{path.name} 无法读取：{exc.strerror}") from exc
    return load_bytes(data, path.name, doc_id=doc_id, title=title, limits=limits)


def load_bytes(data: bytes, name: str, doc_id: str | None = None, title: str | None = None,
               limits: ReadLimits | None = None) -> Document:
    """Bytes of a file called ``name`` -> Document. Raises IngestError saying what is wrong (LimitError
    when the file is over one of ``limits``)."""
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise IngestError(
            f"{name}：不支持的文件类型 {suffix or '（无扩展名）'}，请上传 txt、md、docx、pdf 或 html 文件"
        )
    if not data.strip():
        raise IngestError(f"{name} 是空文件")
    text, found_title = extract_text(data, name, limits)
    title = title or found_title
    doc = clean(text, doc_id=doc_id or Path(name).stem, source=name, sha256=hashlib.sha256(data).hexdigest())
    if title:
        doc.title = title.strip()
        doc.meta["title_from"] = "given"
    doc.meta["text_sha256"] = hashlib.sha256(metadata.normalised_text(doc.text).encode()).hexdigest()
    return doc


def clean(raw: str, doc_id: str, source: str = "", sha256: str = "") -> Document:
    """Raw extracted text -> Document with reflowed paragraphs, header, footer and section paths."""
    blocks = _reflow(raw)
    if not blocks:
        raise IngestError(f"{source or doc_id} 中没有可用的文字")
    header, body, footer = _split_header_footer(blocks)
    title_lines = [line for line in header if line.startswith(TITLE_MARK)]
    header = [line.removeprefix(TITLE_MARK) for line in header]
    title = "".join(t.removeprefix(TITLE_MARK) for t in title_lines)
    date = author = None
    for line in header:
        if line in (t.removeprefix(TITLE_MARK) for t in title_lines):
            continue
        if date is None and (DATE.search(line) or ISO_DATE.match(line)):
            date = _iso_date(line) or line
        elif AUTHOR.match(line.replace(" ", "")) and author is None:
            author = line.replace(" ", "")
    if date is None:
        date = next((_iso_date(p) for p in footer if DATE.search(p)), None)
    title_from = "header" if title else "content"
    title = metadata.refine_title(title, header + body, date) if title else \
        metadata.infer_title(body, date) or ""
    if not title:
        title, title_from = metadata.UNTITLED, "none"
    meta = metadata.extract(title, header, body, footer, date)
    meta["title_from"] = title_from

    paragraphs = [Paragraph(text=p, section=(), kind=HEADER) for p in header]
    paragraphs += _sectioned(body)
    paragraphs += [Paragraph(text=p, section=(FOOTER_SECTION,), kind=FOOTER) for p in footer]
    parts: list[str] = []
    offset = 0
    for para in paragraphs:
        para.start, para.end = offset, offset + len(para.text)
        parts.append(para.text)
        offset = para.end + 1
    return Document(
        doc_id=doc_id, title=title, text="\n".join(parts), paragraphs=paragraphs,
        source=source, date=meta.get("date") or date, author=author, sha256=sha256, meta=meta,
    )


def _iso_date(text: str) -> str | None:
    m = DATE.search(text)
    return f"{int(m.group(1)):04d}-{int(m.group(2)):02d}-{int(m.group(3)):02d}" if m else None


# ----------------------------------------------------------------------------------- reflow


def _reflow(raw: str) -> list[str]:
    """Join hard-wrapped lines into paragraphs, dropping page numbers and layout blanks."""
    raw = raw.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n").replace("\ufeff", "")
    lines = raw.split("\n")
    nonblank = [ln for ln in lines if ln.strip()]
    if not nonblank:
        return []
    # Double spacing: nearly every text line is followed by a blank one, and the lines are hard-wrapped
    # (long lines stop mid-sentence); then blanks mean nothing. With whole paragraphs on their lines,
    # the same blanks separate paragraphs.
    blank_after = sum(1 for a, b in zip(lines, lines[1:], strict=False) if a.strip() and not b.strip())
    long_lines = [ln.strip() for ln in nonblank if len(ln.strip()) >= 20]
    wrapped = sum(1 for ln in long_lines if ln[-1] not in SENTENCE_END + CLOSERS + "：:")
    hard_wrapped = bool(long_lines) and wrapped > 0.5 * len(long_lines)
    double_spaced = blank_after >= 0.6 * len(nonblank) and hard_wrapped
    marked = sum(1 for ln in nonblank if ln != ln.rstrip() and ln.strip())
    uses_end_marks = marked >= max(3, 0.03 * len(nonblank))
    width = statistics.median(len(ln.strip()) for ln in nonblank)

    paragraphs: list[str] = []
    current: list[str] = []
    previous = ""

    def flush() -> None:
        if current:
            paragraphs.append(_tidy(_join(current)))
            current.clear()

    for line in lines:
        stripped = line.strip()
        if not stripped:
            if not double_spaced:
                flush()
            continue
        if PAGE_NUMBER.match(stripped):
            continue
        if _repeats(stripped, previous):
            continue
        previous = stripped
        if current and _starts_new_paragraph(stripped, current[-1]):
            flush()
        current.append(stripped)
        if uses_end_marks:
            ends = line != line.rstrip()
        else:  # whole paragraphs on their lines (not hard-wrapped): a line closing a sentence ends one
            closes = stripped[-1] in SENTENCE_END + CLOSERS
            ends = _looks_like_last_line(stripped, width) or (not hard_wrapped and closes)
        if ends or _is_standalone_heading(stripped) or FOOTER_LINE.search(stripped) or _is_meta_line(stripped):
            flush()
    flush()
    return [p for p in paragraphs if p]


def _repeats(line: str, previous: str) -> bool:
    """A line that says the previous line again (a title printed twice, once with half-width brackets)."""
    return len(line) >= 6 and _comparable(line) == _comparable(previous)


def _comparable(text: str) -> str:
    return re.sub(r"[\s\-‐‑‒–—―－]", "", unicodedata.normalize("NFKC", text))


def _starts_new_paragraph(line: str, previous: str) -> bool:
    """A heading marker or a footer line begins a paragraph when the previous line closed a sentence."""
    if FOOTER_LINE.search(line) and not previous.endswith(("，", "、")):
        return True
    if _is_meta_line(line):
        return True
    if _heading_kind(line) is None or _heading_kind(line) == "arabic":
        return False
    return previous[-1] in SENTENCE_END + CLOSERS + "：:" or len(previous) < 20


def _is_meta_line(line: str) -> bool:
    """A line of its own in a header: document number, date, wire dateline."""
    return bool(DOC_NUMBER.search(line) and len(line) <= 30 or ISO_DATE.match(line) or HEADER_DATE.match(line)
                or DATELINE.match(line))


def _looks_like_last_line(line: str, width: float) -> bool:
    """Without end marks: a wrapped line fills the width, so a short one ends its paragraph."""
    if line[-1] in SENTENCE_END + CLOSERS + "：:":
        return len(line) < 0.85 * width
    return len(line) < 0.6 * width and line[-1] not in "，,、"


def _join(lines: list[str]) -> str:
    out = lines[0]
    for line in lines[1:]:
        if out and out[-1].isascii() and out[-1].isalnum() and line[0].isascii() and line[0].isalnum():
            out += " "
        out += line
    return out


def _tidy(text: str) -> str:
    """Collapse white space; drop the spaces PDF extraction puts between CJK and other characters."""
    pieces = re.split(r"\s{3,}", text.strip())  # wide gaps separate fields (e.g. office and date)
    tidy = []
    for piece in pieces:
        piece = re.sub(r"\s+", " ", piece)
        piece = re.sub(rf"(?<=[{CJK}]) (?=\S)|(?<=\S) (?=[{CJK}])", "", piece)
        tidy.append(piece)
    return " ".join(tidy)


# ------------------------------------------------------------------------ header and footer


TITLE_MARK = "\x00title:"  # marks the header lines that make up the title, inside _split_header_footer


def _split_header_footer(blocks: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Header (title lines marked with TITLE_MARK, subtitle, author, date), body, footer."""
    header: list[str] = []
    i = 0
    while i < len(blocks) and i < 2 and DATELINE.match(blocks[i]):
        header.append(blocks[i])
        i += 1
    if i < len(blocks) and _is_title(blocks[i], blocks[i + 1] if i + 1 < len(blocks) else ""):
        header.append(TITLE_MARK + blocks[i])
        i += 1
        # a long title wraps onto a second line of the same kind
        if (i < len(blocks) and _is_title(blocks[i]) and len(blocks[i]) >= 6 and len(blocks[i - 1]) >= 8
                and len(blocks[i]) <= TITLE_LINE_MAX and not DOC_NUMBER.search(blocks[i])):
            header.append(TITLE_MARK + blocks[i])
            i += 1
        start = i
        while i < len(blocks) and i < start + 5:
            candidate = blocks[i]
            compact = candidate.replace(" ", "")
            is_author = AUTHOR.match(compact) and _heading_kind(candidate) is None
            if (HEADER_DATE.match(candidate) or ISO_DATE.match(candidate) or is_author
                    or DOC_NUMBER.search(candidate) or compact.startswith(("——", "—"))):
                header.append(candidate)
                i += 1
            else:
                break
    j = len(blocks)
    while j > i and FOOTER_LINE.search(blocks[j - 1]) and len(blocks[j - 1]) <= 120:
        j -= 1
    return header, blocks[i:j], blocks[j:]


def _is_title(block: str, next_block: str = "") -> bool:
    """A title line: short, or long when it names an official document type (关于印发…的通知) or sits
    right above a date line (a news headline), never a sentence, a heading or a date."""
    long_title = len(block) <= LONG_TITLE_MAX and bool(
        DOCUMENT_TYPE_END.search(block) or HEADER_DATE.match(next_block) or ISO_DATE.match(next_block))
    return ((len(block) <= 60 or long_title) and block[-1] not in SENTENCE_END + "：:，,"
            and _heading_kind(block) is None and not DATE.search(block) and not ISO_DATE.match(block))


# --------------------------------------------------------------------------------- sections


def _heading_kind(text: str) -> str | None:
    for kind, pattern in HEADING_PATTERNS:
        if pattern.match(text):
            return kind
    return None


def _is_standalone_heading(text: str) -> bool:
    kind = _heading_kind(text)
    if kind is None or kind in ("article", "ordinal"):
        return False
    return (len(text) <= STANDALONE_HEADING_MAX and not any(ch in SENTENCE_END for ch in text)
            and text[-1] not in "，,、：:")


def _section_label(text: str, kind: str) -> str:
    if kind == "article":
        m = HEADING_PATTERNS[HEADING_RANK["article"]][1].match(text)
        return m.group(0) if m else text
    if _is_standalone_heading(text):
        return text
    m = re.search(rf"[{SENTENCE_END}]", text)
    label = text[: m.start()] if m else text
    return label if len(label) <= SECTION_LABEL_MAX else label[: SECTION_LABEL_MAX - 1] + "…"


STRUCTURAL = ("part", "chapter", "named", "section")  # always the outermost levels, in this order


def _sectioned(blocks: list[str]) -> list[Paragraph]:
    """Section paths. Parts, chapters and sections nest in that order; the other heading kinds nest in
    the order a document first uses them (a notice puts （一） under 一、, a law puts 第一条 under 第一章).
    Below an article (第X条), numbered items are the article's list, not sections of their own."""
    stack: list[tuple[str, str]] = []  # (kind, label), outermost first
    ranks = {kind: HEADING_RANK[kind] for kind in STRUCTURAL}
    ranks["named"] = ranks["chapter"]
    out: list[Paragraph] = []
    for text in blocks:
        kind = _heading_kind(text)
        if kind is not None and kind not in ranks:
            ranks[kind] = len(HEADING_RANK) + len(ranks)
        if kind is not None and "article" in ranks and ranks[kind] > ranks["article"]:
            kind = None  # an item of the current article
        if kind is not None:
            rank = ranks[kind]
            stack = [(k, label) for k, label in stack if ranks[k] < rank]
            stack.append((kind, _section_label(text, kind)))
        section = tuple(label for _, label in stack)
        out.append(Paragraph(text=text, section=section, kind=BODY, is_heading=_is_standalone_heading(text)))
    return out
