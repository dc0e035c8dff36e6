"""File bytes -> raw text, by format: .txt/.md (encoding detected), .docx, .pdf (text layer), .html.

The raw text then goes through ``index.ingest.clean`` like any other.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

SUPPORTED_SUFFIXES = (".txt", ".md", ".docx", ".pdf", ".html", ".htm")
MIN_PDF_CHARS_PER_PAGE = 20  # below this a PDF has no usable text layer (a scan)


class IngestError(ValueError):
    """A file cannot be turned into a document; the message says why and what to do."""


def extract_text(data: bytes, name: str) -> tuple[str, str | None]:
    """(raw text, title found in the file's own metadata or None)."""
    suffix = Path(name).suffix.lower()
    if suffix in (".txt", ".md"):
        return decode(data, name), None
    if suffix == ".docx":
        return _docx_text(data, name), None
    if suffix == ".pdf":
        return _pdf_text(data, name), None
    return _html_text(decode(data, name))


def decode(data: bytes, name: str = "") -> str:
    """Bytes -> str: UTF-8 (with or without BOM), UTF-16 with BOM, else GB18030 (covers GBK/GB2312)."""
    if not data.strip():
        raise IngestError(f"{name or '文件'} 是空文件")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
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


def _docx_text(data: bytes, name: str) -> str:
    import io
    import zipfile

    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise IngestError(f"{name} 不是有效的 docx 文件，无法读取") from exc
    paragraphs = [p.text.strip() for p in document.paragraphs if p.text.strip()]
    for table in document.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells if c.text.strip()]
            if cells:
                paragraphs.append("；".join(dict.fromkeys(cells)))
    if not paragraphs:
        raise IngestError(f"{name} 中没有文字内容")
    return "\n\n".join(paragraphs)  # Word paragraphs are real paragraphs


def _pdf_text(data: bytes, name: str) -> str:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise IngestError(f"{name} 不是有效的 PDF 文件，无法读取") from exc
    chars = sum(len(p.strip()) for p in pages)
    if not pages or chars < MIN_PDF_CHARS_PER_PAGE * len(pages):
        raise IngestError(f"{name} 没有可提取的文字层（可能是扫描件），请上传文字版 PDF 或 Word 文件")
    return "\n".join(pages)


def _html_text(html: str) -> tuple[str, str | None]:
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
        raise IngestError("网页中没有正文文字")
    return text, extractor.title or None


