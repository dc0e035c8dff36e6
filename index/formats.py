"""File bytes -> raw text, by format: .txt/.md (encoding detected), .docx, .pdf (text layer), .html.

The raw text then goes through ``index.ingest.clean`` like any other.

Files come from people, so reading is bounded (``ReadLimits``) while it happens, not afterwards: a .docx
is a zip whose entries are measured as they are decompressed, a few kilobytes at a time, before the
Word parser sees them (a zip bomb never reaches memory); text is counted as pages and paragraphs are
extracted. Whatever a parser raises on a broken file becomes an ``IngestError`` saying the file cannot be
read.
"""

from __future__ import annotations

import io
import logging
import struct
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
SUPPORTED_SUFFIXES = (".txt", ".md", ".docx", ".pdf", ".html", ".htm")
MIN_PDF_CHARS_PER_PAGE = 20  # below this a PDF has no usable text layer (a scan)
MAX_ZIP_ENTRIES = 5000  # a Word file has a few dozen parts; the central directory is read before anything
ZIP_READ_BYTES = 64 * 1024
FORMAT_NAMES = {".txt": "文本", ".md": "文本", ".docx": "Word（docx）", ".pdf": "PDF", ".html": "网页", ".htm": "网页"}


class IngestError(ValueError):
    """A file cannot be turned into a document; the message says why and what to do."""


class LimitError(IngestError):
    """A file is over one of the ``ReadLimits``; ``limit`` names the field (the caller knows its setting)."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True)
class ReadLimits:
    unpacked_bytes: int = 50 * 1024 * 1024  # a .docx's entries, decompressed, all together
    chars: int = 1_000_000  # text extracted from one file
    pdf_pages: int = 2000


def extract_text(data: bytes, name: str, limits: ReadLimits | None = None) -> tuple[str, str | None]:
    """(raw text, title found in the file's own metadata or None)."""
    limits = limits or ReadLimits()
    suffix = Path(name).suffix.lower()
    try:
        if suffix in (".txt", ".md"):
            text, title = _bounded(decode(data, name), name, limits), None
        elif suffix == ".docx":
            text, title = _docx_text(data, name, limits), None
        elif suffix == ".pdf":
            text, title = _pdf_text(data, name, limits), None
        else:
            text, title = _html_text(_bounded(decode(data, name), name, limits), name, limits)
    except IngestError:
        raise
    except Exception as exc:  # python-docx, lxml, pypdf and zipfile raise many kinds on a broken file
        log.info("cannot read %s: %s: %s", name, exc.__class__.__name__, exc)
        kind = FORMAT_NAMES.get(suffix, "")
        raise IngestError(f"{name} 无法读取：文件已损坏，或不是有效的{kind}文件") from exc
    return text, title


def _bounded(text: str, name: str, limits: ReadLimits) -> str:
    if len(text) > limits.chars:
        raise _too_many_chars(name, limits)
    return text


def _too_many_chars(name: str, limits: ReadLimits) -> LimitError:
    return LimitError(f"{name} 的文字超过 {limits.chars:,} 字的上限，请拆分成几个文件后再上传", "chars")


def decode(data: bytes, name: str = "") -> str:
    """Bytes -> str: UTF-8 (with or without BOM), UTF-16 with BOM, else GB18030 (covers GBK/GB2312)."""
    if not data.strip():
        raise IngestError(f"{name or '文件'} 是空文件")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise IngestError(f"{name or '文件'} 的编码无法识别：请另存为 UTF-8 文本后再上传") from exc
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if _looks_like_text(text):
            return text
    raise IngestError(f"{name or '文件'} 的编码无法识别：请另存为 UTF-8 文本后再上传")


def _looks_like_text(text: str) -> bool:
    if not text:
        return False
    bad = sum(1 for ch in text if unicodedata.category(ch) in ("Cc", "Co", "Cn") and ch not in "\n\r\t\f")
    return bad / len(text) < 0.01


def _docx_text(data: bytes, name: str, limits: ReadLimits) -> str:
    import docx

    _check_zip(data, name, limits)
    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise IngestError(f"{name} 不是有效的 docx 文件，无法读取") from exc
    paragraphs: list[str] = []
    chars = 0

    def keep(text: str) -> None:
        nonlocal chars
        chars += len(text) + 2
        if chars > limits.chars:
            raise _too_many_chars(name, limits)
        paragraphs.append(text)

    for p in document.paragraphs:
        if p.text.strip():
            keep(p.text.strip())
    for table in document.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells if c.text.strip()]
            if cells:
                keep("；".join(dict.fromkeys(cells)))
    if not paragraphs:
        raise IngestError(f"{name} 中没有文字内容")
    return "\n\n".join(paragraphs)  # Word paragraphs are real paragraphs


def _check_zip(data: bytes, name: str, limits: ReadLimits) -> None:
    """Refuse a zip whose entries unpack past ``limits.unpacked_bytes``, counting while decompressing."""
    entries = _zip_entry_count(data)
    if entries is None:
        raise IngestError(f"{name} 不是有效的 docx 文件，无法读取")
    if entries > MAX_ZIP_ENTRIES:
        raise LimitError(f"{name} 内含 {entries:,} 个部件，不像正常的 Word 文件（上限 {MAX_ZIP_ENTRIES:,}）",
                         "unpacked_bytes")
    over = LimitError(f"{name} 解压后超过 {limits.unpacked_bytes / (1024 * 1024):g} MB 的上限，"
                      "可能是压缩炸弹或内嵌了过多图片", "unpacked_bytes")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        if sum(info.file_size for info in infos) > limits.unpacked_bytes:  # what the entries declare
            raise over
        total = 0
        for info in infos:  # and what they really hold: a header may lie
            with archive.open(info) as member:
                while chunk := member.read(ZIP_READ_BYTES):
                    total += len(chunk)
                    if total > limits.unpacked_bytes:
                        raise over


def _zip_entry_count(data: bytes) -> int | None:
    """Entries in a zip's end-of-central-directory record, read before zipfile builds its directory."""
    tail = data[-(65535 + 22):]
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return None
    total = struct.unpack("<H", tail[at + 10:at + 12])[0]
    return MAX_ZIP_ENTRIES + 1 if total == 0xFFFF else total  # 0xFFFF: a zip64 directory, never Word's


def _pdf_text(data: bytes, name: str, limits: ReadLimits) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        count = len(reader.pages)
        if count > limits.pdf_pages:
            raise LimitError(f"{name} 共 {count:,} 页，超过 {limits.pdf_pages:,} 页的上限，请拆分后再上传",
                             "pdf_pages")
        pages = []
        chars = 0
        for page in reader.pages:  # pypdf bounds each decompressed stream itself (75 MB)
            pages.append(page.extract_text() or "")
            chars += len(pages[-1]) + 1
            if chars > limits.chars:
                raise _too_many_chars(name, limits)
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, IngestError):
            raise
        raise IngestError(f"{name} 不是有效的 PDF 文件，无法读取") from exc
    chars = sum(len(p.strip()) for p in pages)
    if not pages or chars < MIN_PDF_CHARS_PER_PAGE * len(pages):
        raise IngestError(f"{name} 没有可提取的文字层（可能是扫描件），请上传文字版 PDF 或 Word 文件")
    return "\n".join(pages)


def _html_text(html: str, name: str, limits: ReadLimits) -> tuple[str, str | None]:
    from html.parser import HTMLParser

    blocks = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "td"}

    class Extractor(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.parts: list[str] = []
            self.title: str | None = None
            self._skip = 0
            self._in_title = False

        def handle_starttag(self, tag: str, attrs: list) -> None:
            if tag in ("script", "style", "noscript", "nav", "footer", "header"):
                self._skip += 1
            elif tag == "title":
                self._in_title = True
            elif tag in blocks:
                self.parts.append("\n\n")

        def handle_endtag(self, tag: str) -> None:
            if tag in ("script", "style", "noscript", "nav", "footer", "header"):
                self._skip = max(0, self._skip - 1)
            elif tag == "title":
                self._in_title = False
            elif tag in blocks:
                self.parts.append("\n\n")

        def handle_data(self, data: str) -> None:
            if self._in_title:
                self.title = (self.title or "") + data.strip()
            elif not self._skip:
                self.parts.append(data.replace("\n", " "))

    extractor = Extractor()
    extractor.feed(html)
    text = "".join(extractor.parts)
    text = "\n\n".join(line.strip() for line in text.split("\n\n") if line.strip())
    if not text.strip():
        raise IngestError(f"{name} 网页中没有正文文字")
    return text, (extractor.title or "")[:200] or None


