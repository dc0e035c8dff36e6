"""The document library: the files the index is built from, kept in the instance folder.

Adding checks everything before anything changes: a refused file (empty, unknown type, undecodable,
no text layer, too large, an exact duplicate) leaves the library as it was. The shipped ``corpus/``
seeds the library once, the first time it is used; after that the admin decides what is in it.

A file name is cleaned before use (``bot.inputs.clean_file_name``). Work per file is bounded: its size,
what it unpacks to, the characters extracted (``ReadLimits``) and the passages it makes
(``max_chunks``); a refusal names the limit and the setting that moves it.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from bot.inputs import InputError, clean_file_name, clean_title, setting_hint, size_text
from bot.store import BotStore
from index.chunk import DEFAULT_TARGET_CHARS, chunk_document
from index.ingest import SUPPORTED_SUFFIXES, Document, IngestError, LimitError, ReadLimits, load_bytes, load_file

SEEDED_SETTING = "corpus_seeded"
DEFAULT_MAX_CHUNKS = 5000
LIMIT_SETTINGS = {  # ReadLimits field (or "chunks") -> the setting that moves it
    "unpacked_bytes": "MAX_UNPACKED_BYTES", "chars": "MAX_DOCUMENT_CHARS", "pdf_pages": "MAX_PDF_PAGES",
    "chunks": "MAX_CHUNKS_PER_DOCUMENT",
}


class LibraryError(ValueError):
    """A library operation was refused; ``status`` is the HTTP status that fits."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class StoredDocument:
    doc_id: str
    file_name: str
    title: str
    date: str | None
    sha256: str
    chars: int
    uploaded_by: str
    uploaded_at: float

    def to_json(self) -> dict:
        return self.__dict__.copy()


def with_setting(exc: LimitError) -> str:
    return f"{exc}{setting_hint(LIMIT_SETTINGS[exc.limit])}"


def check_chunk_count(doc: Document, target_chars: int, max_chunks: int) -> int:
    """The passages ``doc`` makes; LimitError when more than ``max_chunks``."""
    count = len(chunk_document(doc, target_chars))
    if count > max_chunks:
        raise LimitError(f"{doc.source or doc.doc_id} 切分后有 {count:,} 段，超过每个文件 {max_chunks:,} 段的上限，"
                         "请拆分后再上传", "chunks")
    return count


def doc_id_for(file_name: str) -> str:
    """A stable id from a file name: letters, digits, CJK, dot, dash and underscore."""
    stem = Path(file_name).stem
    return re.sub(r"[^\w\u4e00-\u9fff.-]+", "_", stem).strip("._") or hashlib.sha1(file_name.encode()).hexdigest()[:12]


class Library:
    def __init__(self, store: BotStore, files_dir: Path, max_bytes: int, limits: ReadLimits | None = None,
                 target_chars: int = DEFAULT_TARGET_CHARS, max_chunks: int = DEFAULT_MAX_CHUNKS) -> None:
        self.store = store
        self.files_dir = Path(files_dir)
        self.max_bytes = max_bytes
        self.limits = limits or ReadLimits()
        self.target_chars = target_chars
        self.max_chunks = max_chunks

    def seed(self, corpus_dir: Path) -> int:
        """Import ``corpus_dir`` once (the shipped documents). Returns how many were added."""
        if self.store.setting(SEEDED_SETTING):
            return 0
        added = 0
        files = sorted(p for p in Path(corpus_dir).iterdir() if p.suffix.lower() in SUPPORTED_SUFFIXES) \
            if Path(corpus_dir).is_dir() else []
        for path in files:
            try:
                self.add(path.name, path.read_bytes(), uploaded_by="system")
                added += 1
            except LibraryError as exc:
                if exc.status != 409:
                    raise
        self.store.set_setting(SEEDED_SETTING, "1")
        return added

    def all(self) -> list[StoredDocument]:
        rows = self.store.connection().execute(
            "SELECT doc_id, file_name, title, date, sha256, chars, uploaded_by, uploaded_at FROM documents "
            "ORDER BY doc_id"
        ).fetchall()
        return [StoredDocument(*row) for row in rows]

    def get(self, doc_id: str) -> StoredDocument | None:
        row = self.store.connection().execute(
            "SELECT doc_id, file_name, title, date, sha256, chars, uploaded_by, uploaded_at FROM documents "
            "WHERE doc_id = ?", (doc_id,)
        ).fetchone()
        return StoredDocument(*row) if row else None

    def add(self, file_name: str, data: bytes, uploaded_by: str, replace: bool = False,
            title: str | None = None) -> StoredDocument:
        if not file_name:
            raise LibraryError("请选择要上传的文件")
        try:
            file_name = clean_file_name(file_name)
            title = clean_title(title)
        except InputError as exc:
            raise LibraryError(str(exc), exc.status) from exc
        if len(data) > self.max_bytes:
            raise LibraryError(f"{file_name} 超过大小上限 {size_text(self.max_bytes)}"
                               f"{setting_hint('MAX_UPLOAD_BYTES')}", 413)
        doc_id = doc_id_for(file_name)
        try:
            document = load_bytes(data, file_name, doc_id=doc_id, title=title, limits=self.limits)
            check_chunk_count(document, self.target_chars, self.max_chunks)
        except LimitError as exc:
            raise LibraryError(with_setting(exc), 413) from exc
        except IngestError as exc:
            known = Path(file_name).suffix.lower() in SUPPORTED_SUFFIXES
            raise LibraryError(str(exc), 422 if known else 415) from exc
        sha = hashlib.sha256(data).hexdigest()
        same = next((d for d in self.all() if d.sha256 == sha), None)
        if same is not None and not (replace and same.doc_id == doc_id):
            raise LibraryError(
                f"{file_name} 与已有文件《{same.title}》（{same.file_name}）内容完全相同，未重复添加", 409
            )
        existing = self.get(doc_id)
        if existing is not None and not replace:
            raise LibraryError(f"已有同名文件 {existing.file_name}；如需替换，请加上 replace=1", 409)

        folder = self.files_dir / doc_id
        tmp = self.files_dir / f".upload-{doc_id}-{time.time_ns()}"
        tmp.mkdir(parents=True)
        (tmp / file_name).write_bytes(data)
        stored = StoredDocument(doc_id, file_name, document.title, document.date, sha, len(document.text),
                                uploaded_by, time.time())
        with self.store.transaction() as db:
            db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
            db.execute("INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?)", tuple(stored.__dict__.values()))
            if folder.exists():
                shutil.rmtree(folder)
            tmp.rename(folder)
        return stored

    def remove(self, doc_id: str) -> StoredDocument:
        existing = self.get(doc_id)
        if existing is None:
            raise LibraryError(f"没有编号为 {doc_id} 的文件", 404)
        with self.store.transaction() as db:
            db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
        shutil.rmtree(self.files_dir / doc_id, ignore_errors=True)
        return existing

    def documents(self) -> list[Document]:
        """Every stored file, cleaned, for an index build."""
        out = []
        for stored in self.all():
            doc = load_file(self.files_dir / stored.doc_id / stored.file_name, doc_id=stored.doc_id,
                            limits=self.limits)
            doc.title = stored.title
            out.append(doc)
        return out
