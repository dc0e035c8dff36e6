"""The document library: the files the index is built from, kept in the instance folder.

Adding checks everything before anything changes: a refused file (empty, unknown type, undecodable,
no text layer, too large, a duplicate) leaves the library as it was. A duplicate is the same text once
normalised (NFKC, no white space): the same document saved in GB18030 or with other line breaks.

Each document keeps the metadata its text states (``index.metadata``: issuer, number, date, status,
what it replaces); an admin may give or correct any of it, and the title, at upload or later
(``update``). A document whose text gives no title is stored as 未命名文件（上传于…）, never as its file
name, and flagged ``untitled`` until an admin names it. The shipped ``corpus/``
seeds the library once, the first time it is used; after that the admin decides what is in it.

A file name is cleaned before use (``bot.inputs.clean_file_name``). Work per file is bounded: its size,
what it unpacks to, the characters extracted (``ReadLimits``) and the passages it makes
(``max_chunks``); a refusal names the limit and the setting that moves it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, select, update

from bot.db import documents
from bot.inputs import InputError, clean_file_name, clean_title, setting_hint, size_text
from bot.store import BotStore
from index import metadata
from index.chunk import DEFAULT_TARGET_CHARS, chunk_document
from index.ingest import SUPPORTED_SUFFIXES, Document, IngestError, LimitError, ReadLimits, load_bytes, load_file

SEEDED_SETTING = "corpus_seeded"
DEFAULT_MAX_CHUNKS = 5000
COLUMNS = ("doc_id", "file_name", "title", "date", "sha256", "chars", "uploaded_by", "uploaded_at", "text_sha256",
           "meta")
ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
META_MAX_CHARS = 200
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
    text_sha256: str = ""
    meta: dict = field(default_factory=dict)  # index.metadata fields, "edited": those an admin set

    @property
    def untitled(self) -> bool:
        return self.meta.get("title_from") == "none"

    @property
    def status(self) -> str:
        return str(self.meta.get("status") or metadata.STATUS_IN_FORCE)

    def to_json(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "meta"}
        out.update({k: v for k, v in self.meta.items() if k not in ("date", "title_from", "text_sha256", "extractor")})
        out["status"] = self.status
        out["untitled"] = self.untitled
        return out

    @classmethod
    def from_row(cls, row: tuple) -> StoredDocument:
        doc_id, file_name, title, date, sha256, chars, uploaded_by, uploaded_at, text_sha, meta = row
        return cls(doc_id, file_name, title, date, sha256, chars, uploaded_by, uploaded_at,
                   text_sha or "", json.loads(meta) if meta else {})


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
        """Every document, its series linked (``index.metadata.link_series``)."""
        with self.store.engine.connect().execution_options(readonly=True) as conn:
            rows = conn.execute(select(*(documents.c[c] for c in COLUMNS)).order_by(documents.c.doc_id)).all()
        docs = [self._backfilled(StoredDocument.from_row(tuple(row))) for row in rows]
        linked = [d.meta | {"doc_id": d.doc_id, "title": d.title, "date": d.date} for d in docs]
        metadata.link_series(linked)
        for doc, meta in zip(docs, linked, strict=True):
            doc.meta = {k: v for k, v in meta.items() if k not in ("doc_id", "title", "date")}
        return docs

    def get(self, doc_id: str) -> StoredDocument | None:
        return next((d for d in self.all() if d.doc_id == doc_id), None)

    def _backfilled(self, doc: StoredDocument) -> StoredDocument:
        """A document whose metadata an older extractor found (``metadata.EXTRACTOR_VERSION``), or stored
        before metadata was kept: read its file once and store what the text states now. The fields an
        admin set (or gave at upload) stay as they were, a cleared one stays cleared."""
        if doc.text_sha256 and doc.meta.get("extractor") == metadata.EXTRACTOR_VERSION:
            return doc
        try:
            found = load_file(self.files_dir / doc.doc_id / doc.file_name, doc_id=doc.doc_id, limits=self.limits)
        except IngestError:
            return doc
        edited = set(doc.meta.get("edited", [])) | {"title_from"}
        doc.text_sha256 = found.meta.get("text_sha256", "")
        doc.meta = ({k: v for k, v in found.meta.items() if k != "text_sha256" and k not in edited}
                    | {k: v for k, v in doc.meta.items() if k in edited or k == "edited"}
                    | {"extractor": metadata.EXTRACTOR_VERSION})
        with self.store.engine.begin() as conn:
            conn.execute(update(documents).where(documents.c.doc_id == doc.doc_id).values(
                text_sha256=doc.text_sha256, meta=json.dumps(doc.meta, ensure_ascii=False)))
        return doc

    def update(self, doc_id: str, fields: dict[str, str]) -> StoredDocument:
        """Set the title or metadata fields (``index.metadata.FIELDS``) an admin gives; "" clears one."""
        existing = self.get(doc_id)
        if existing is None:
            raise LibraryError(f"没有编号为 {doc_id} 的文件", 404)
        given = check_fields(fields)
        title = given.pop("title", None)
        meta = {k: v for k, v in existing.meta.items()
                if k not in ("series", "series_order", "latest", "latest_title", "latest_date")}
        edited = set(meta.get("edited", []))
        for name, value in given.items():
            if value:
                meta[name] = value
            else:
                meta.pop(name, None)
            edited.add(name)
        date = given.get("date", existing.date) if "date" in given else existing.date
        if title:
            meta["title_from"] = "given"
            edited.add("title")
        meta["edited"] = sorted(edited)
        with self.store.engine.begin() as conn:
            conn.execute(update(documents).where(documents.c.doc_id == doc_id).values(
                title=title or existing.title, date=date or None, meta=json.dumps(meta, ensure_ascii=False)))
        return next(d for d in self.all() if d.doc_id == doc_id)

    def add(self, file_name: str, data: bytes, uploaded_by: str, replace: bool = False,
            title: str | None = None, fields: dict[str, str] | None = None) -> StoredDocument:
        """Add a file; ``title`` and ``fields`` (issuer, number, date, status …) are the admin's, and
        win over what the text states."""
        if not file_name:
            raise LibraryError("请选择要上传的文件")
        try:
            file_name = clean_file_name(file_name)
            title = clean_title(title)
        except InputError as exc:
            raise LibraryError(str(exc), exc.status) from exc
        given = {k: v for k, v in check_fields(fields or {}).items() if v and k != "title"}
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
        text_sha = document.meta.pop("text_sha256", "")
        same = next((d for d in self.all() if d.sha256 == sha or (text_sha and d.text_sha256 == text_sha)), None)
        if same is not None and not (replace and same.doc_id == doc_id):
            how = "完全相同" if same.sha256 == sha else "相同（仅编码或换行不同）"
            raise LibraryError(
                f"{file_name} 与已有文件《{same.title}》（{same.file_name}）内容{how}，未重复添加；"
                f"如需替换，请用同一文件名并加上 replace=1", 409
            )
        existing = self.get(doc_id)
        if existing is not None and not replace:
            raise LibraryError(f"已有同名文件 {existing.file_name}；如需替换，请加上 replace=1", 409)

        folder = self.files_dir / doc_id
        tmp = self.files_dir / f".upload-{doc_id}-{time.time_ns()}"
        tmp.mkdir(parents=True)
        (tmp / file_name).write_bytes(data)
        now = time.time()
        doc_title = document.title
        if document.meta.get("title_from") == "none":
            doc_title = f"{metadata.UNTITLED}（上传于{time.strftime('%Y-%m-%d', time.localtime(now))}）"
        meta = document.meta | given | ({"edited": sorted(given)} if given else {}) | {
            "extractor": metadata.EXTRACTOR_VERSION}
        date = given.get("date") or document.meta.get("date") or document.date
        stored = StoredDocument(doc_id, file_name, doc_title, date, sha,
                                len(document.text), uploaded_by, now, text_sha, meta)
        row = tuple(stored.__dict__.values())[:-1] + (json.dumps(meta, ensure_ascii=False),)
        with self.store.engine.begin() as conn:
            conn.execute(delete(documents).where(documents.c.doc_id == doc_id))
            conn.execute(documents.insert().values(dict(zip(COLUMNS, row, strict=True))))
            if folder.exists():
                shutil.rmtree(folder)
            tmp.rename(folder)
        return stored

    def remove(self, doc_id: str) -> StoredDocument:
        existing = self.get(doc_id)
        if existing is None:
            raise LibraryError(f"没有编号为 {doc_id} 的文件", 404)
        with self.store.engine.begin() as conn:
            conn.execute(delete(documents).where(documents.c.doc_id == doc_id))
        shutil.rmtree(self.files_dir / doc_id, ignore_errors=True)
        return existing

    def documents(self) -> list[Document]:
        """Every stored file, cleaned, for an index build."""
        out = []
        for stored in self.all():
            doc = load_file(self.files_dir / stored.doc_id / stored.file_name, doc_id=stored.doc_id,
                            limits=self.limits)
            doc.title = stored.title
            doc.date = stored.date
            doc.meta = stored.meta | {"status": stored.status}
            out.append(doc)
        return out


def check_fields(fields: dict[str, str]) -> dict[str, str]:
    """The metadata an admin gives: known names, bounded text, a status of the three, an ISO date."""
    out: dict[str, str] = {}
    for name, value in fields.items():
        if name not in (*metadata.FIELDS, "title"):
            raise LibraryError(f"不能设置字段 {name}；可以设置：title、{'、'.join(metadata.FIELDS)}")
        try:
            text = clean_title(str(value)) or ""
        except InputError as exc:
            raise LibraryError(str(exc), exc.status) from exc
        if len(text) > META_MAX_CHARS:
            raise LibraryError(f"{name} 过长：最多 {META_MAX_CHARS} 个字")
        if name == "status" and text and text not in metadata.STATUSES:
            raise LibraryError(f"状态只能是：{'、'.join(metadata.STATUSES)}")
        if name in ("date", "effective") and text and not ISO_DAY.fullmatch(text):
            raise LibraryError(f"{name} 的格式应为 YYYY-MM-DD，例如 2022-03-05")
        out[name] = text
    return out
