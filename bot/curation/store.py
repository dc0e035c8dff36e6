"""Curation tables (SQLAlchemy Core, on ``bot.db.metadata``) and the store that reads and writes them.

Every change bumps one version number (``curation_state``); each worker compares it with the version its
cache was built from before it answers a message (one indexed read), so an admin's change applies to the
next message on every worker without a restart. Changes are audited by the caller (who, what, when).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)

from bot.db import metadata, upsert

faq_table = Table(
    "curation_faq", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("question", Text, nullable=False),
    Column("alternatives", Text, nullable=False, default="[]"),  # JSON list of other phrasings
    Column("answer", Text, nullable=False),
    Column("source", Text, nullable=False, default=""),  # optional document / section the answer rests on
    Column("vectors", LargeBinary),  # float32 rows: the question and each alternative, as the matcher embeds them
    Column("model", String(200)),  # the embedding model the vectors come from
    Column("updated", Float, nullable=False),
    Column("updated_by", String(200), nullable=False),
)
words_table = Table(
    "curation_sensitive_words", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("word", String(200), nullable=False, unique=True),
    Column("action", String(10), nullable=False),  # block or mask
    Column("hits", Integer, nullable=False, default=0),  # questions blocked / replies masked because of it
    Column("last_hit", Float),
    Column("created", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
)
keywords_table = Table(
    "curation_keyword_replies", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("keyword", String(200), nullable=False),
    Column("match", String(10), nullable=False),  # exact or contains
    Column("reply", Text, nullable=False),
    Column("hits", Integer, nullable=False, default=0),
    Column("created", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
)
settings_table = Table(
    "curation_settings", metadata,
    Column("name", String(100), primary_key=True),  # welcome, menu (JSON), synonyms (JSON groups)
    Column("value", Text, nullable=False),
)
state_table = Table(
    "curation_state", metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)
feedback_table = Table(
    "curation_feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("log_id", Integer),  # the query_log row of the answer judged
    Column("user_hash", String(64), nullable=False),
    Column("verdict", String(10), nullable=False),  # useful or useless
    Column("source", String(20), nullable=False),  # search or faq
    Column("tier", String(20), nullable=False),
    Column("faq_id", Integer),
    Column("doc", Text),  # the answer's first document (search) or the official answer's source
    Column("question", Text, nullable=False),
)
pending_table = Table(  # each member's last answer, waiting for 有用 / 没用
    "curation_pending_feedback", metadata,
    Column("user_hash", String(64), primary_key=True),
    Column("at", Float, nullable=False),
    Column("data", Text, nullable=False),  # JSON: log_id, source, tier, faq_id, doc, question
)
dismissed_table = Table(  # questions an admin marked out of scope: they leave the unanswered queue
    "curation_dismissed", metadata,
    Column("key", String(500), primary_key=True),
    Column("at", Float, nullable=False),
    Column("who", String(200), nullable=False),
)

ACTIONS = ("block", "mask")
MATCHES = ("exact", "contains")
VERDICTS = ("useful", "useless")


@dataclass
class Faq:
    id: int
    question: str
    alternatives: list[str]
    answer: str
    source: str = ""
    vectors: np.ndarray | None = None
    model: str | None = None
    updated: float = 0.0
    updated_by: str = ""

    def to_json(self) -> dict:
        return {"id": self.id, "question": self.question, "alternatives": self.alternatives,
                "answer": self.answer, "source": self.source, "updated": self.updated,
                "updated_by": self.updated_by}


@dataclass
class Snapshot:
    """Everything the responders need, read in one go at one version."""

    version: int
    faqs: list[Faq] = field(default_factory=list)
    words: list[dict] = field(default_factory=list)
    keywords: list[dict] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)


class CurationStore:
    def __init__(self, engine: Engine) -> None:
        """The curation tables on the bot store's engine; its migrations (bot/migrations, 0003) created them."""
        self.engine = engine

    def _read(self):  # type: ignore[no-untyped-def]
        """A read-only connection: on SQLite a deferred transaction, which takes no write lock (every other
        transaction begins IMMEDIATE), so the version check each message makes never waits on a writer."""
        return self.engine.connect().execution_options(readonly=True)

    # ------------------------------------------------------------ version

    def version(self) -> int:
        with self._read() as db:
            return int(db.execute(select(state_table.c.version).where(state_table.c.id == 1)).scalar_one())

    def _bump(self, db) -> None:  # type: ignore[no-untyped-def]
        db.execute(update(state_table).where(state_table.c.id == 1).values(version=state_table.c.version + 1))

    def snapshot(self) -> Snapshot:
        with self._read() as db:
            version = int(db.execute(select(state_table.c.version).where(state_table.c.id == 1)).scalar_one())
            faqs = [_faq(r) for r in db.execute(select(faq_table).order_by(faq_table.c.id))]
            words = [dict(r._mapping) for r in db.execute(select(words_table).order_by(words_table.c.id))]
            keywords = [dict(r._mapping) for r in db.execute(select(keywords_table).order_by(keywords_table.c.id))]
            settings = {r.name: r.value for r in db.execute(select(settings_table))}
        return Snapshot(version, faqs, words, keywords, settings)

    # ---------------------------------------------------------------- faq

    def faqs(self) -> list[Faq]:
        with self._read() as db:
            return [_faq(r) for r in db.execute(select(faq_table).order_by(faq_table.c.id))]

    def faq(self, faq_id: int) -> Faq | None:
        with self._read() as db:
            row = db.execute(select(faq_table).where(faq_table.c.id == faq_id)).first()
        return _faq(row) if row else None

    def add_faqs(self, items: Iterable[Faq], who: str, replace_all: bool = False) -> list[int]:
        """Insert official answers (``replace_all``: instead of the existing ones) in one transaction."""
        ids = []
        with self.engine.begin() as db:
            if replace_all:
                db.execute(delete(faq_table))
            for item in items:
                result = db.execute(insert(faq_table).values(**_faq_row(item, who)))
                ids.append(_new_id(result))
            self._bump(db)
        return ids

    def update_faq(self, item: Faq, who: str) -> bool:
        with self.engine.begin() as db:
            n = db.execute(update(faq_table).where(faq_table.c.id == item.id).values(**_faq_row(item, who))).rowcount
            self._bump(db)
        return n == 1

    def delete_faq(self, faq_id: int) -> bool:
        with self.engine.begin() as db:
            n = db.execute(delete(faq_table).where(faq_table.c.id == faq_id)).rowcount
            self._bump(db)
        return n == 1

    # ------------------------------------------------------ sensitive words

    def words(self) -> list[dict]:
        with self._read() as db:
            return [dict(r._mapping) for r in db.execute(select(words_table).order_by(words_table.c.id))]

    def add_words(self, pairs: Iterable[tuple[str, str]], who: str) -> list[int]:
        """Add (word, action) pairs; a word already listed gets the new action. Returns the rows' ids."""
        ids = []
        now = time.time()
        with self.engine.begin() as db:
            for word, action in pairs:
                row = db.execute(select(words_table.c.id).where(words_table.c.word == word)).first()
                if row:
                    db.execute(update(words_table).where(words_table.c.id == row.id).values(action=action))
                    ids.append(int(row.id))
                else:
                    result = db.execute(insert(words_table).values(word=word, action=action, hits=0, created=now,
                                                                   created_by=who))
                    ids.append(_new_id(result))
            self._bump(db)
        return ids

    def delete_word(self, word_id: int) -> str | None:
        with self.engine.begin() as db:
            row = db.execute(select(words_table.c.word).where(words_table.c.id == word_id)).first()
            if row is None:
                return None
            db.execute(delete(words_table).where(words_table.c.id == word_id))
            self._bump(db)
        return str(row.word)

    def count_hits(self, word_ids: Iterable[int]) -> None:
        """Count a block or a mask for each word (not a curation change: the version stays)."""
        ids = sorted(set(word_ids))
        if not ids:
            return
        with self.engine.begin() as db:
            db.execute(update(words_table).where(words_table.c.id.in_(ids))
                       .values(hits=words_table.c.hits + 1, last_hit=time.time()))

    # ---------------------------------------------------- keyword replies

    def keywords(self) -> list[dict]:
        with self._read() as db:
            return [dict(r._mapping) for r in db.execute(select(keywords_table).order_by(keywords_table.c.id))]

    def add_keyword(self, keyword: str, match: str, reply: str, who: str) -> int:
        with self.engine.begin() as db:
            result = db.execute(insert(keywords_table).values(keyword=keyword, match=match, reply=reply, hits=0,
                                                              created=time.time(), created_by=who))
            self._bump(db)
        return _new_id(result)

    def delete_keyword(self, keyword_id: int) -> str | None:
        with self.engine.begin() as db:
            row = db.execute(select(keywords_table.c.keyword).where(keywords_table.c.id == keyword_id)).first()
            if row is None:
                return None
            db.execute(delete(keywords_table).where(keywords_table.c.id == keyword_id))
            self._bump(db)
        return str(row.keyword)

    def count_keyword(self, keyword_id: int) -> None:
        with self.engine.begin() as db:
            db.execute(update(keywords_table).where(keywords_table.c.id == keyword_id)
                       .values(hits=keywords_table.c.hits + 1))

    # ----------------------------------------------------------- settings

    def settings(self) -> dict[str, str]:
        with self._read() as db:
            return {r.name: r.value for r in db.execute(select(settings_table))}

    def put_settings(self, values: dict[str, str]) -> None:
        with self.engine.begin() as db:
            for name, value in values.items():
                if db.execute(select(settings_table.c.name).where(settings_table.c.name == name)).first():
                    db.execute(update(settings_table).where(settings_table.c.name == name).values(value=value))
                else:
                    db.execute(insert(settings_table).values(name=name, value=value))
            self._bump(db)

    # ----------------------------------------------------------- feedback

    def set_pending(self, user_hash: str, data: dict | None) -> None:
        """Remember the member's last answer (None: the last reply was not an answer). One upsert: two of a
        member's messages answered at once on PostgreSQL would both delete, then both insert."""
        with self.engine.begin() as db:
            if data is None:
                db.execute(delete(pending_table).where(pending_table.c.user_hash == user_hash))
                return
            values = {"user_hash": user_hash, "at": time.time(), "data": json.dumps(data, ensure_ascii=False)}
            upsert(db, pending_table, values, "user_hash", update=["at", "data"])

    def pending(self, user_hash: str, max_age: float) -> dict | None:
        with self._read() as db:
            row = db.execute(select(pending_table).where(pending_table.c.user_hash == user_hash)).first()
        if row is None or time.time() - row.at > max_age:
            return None
        return json.loads(row.data)

    def record_feedback(self, user_hash: str, verdict: str, answer: dict) -> int:
        """Record ``verdict`` on ``answer`` (a pending entry) and forget the pending entry, atomically."""
        with self.engine.begin() as db:
            result = db.execute(insert(feedback_table).values(
                at=time.time(), log_id=answer.get("log_id"), user_hash=user_hash, verdict=verdict,
                source=answer.get("source", "search"), tier=answer.get("tier", "answer"),
                faq_id=answer.get("faq_id"), doc=answer.get("doc"), question=answer.get("question", "")))
            db.execute(delete(pending_table).where(pending_table.c.user_hash == user_hash))
        return _new_id(result)

    def feedback(self, limit: int = 200) -> list[dict]:
        with self._read() as db:
            rows = db.execute(select(feedback_table).order_by(feedback_table.c.id.desc()).limit(limit))
            return [dict(r._mapping) for r in rows]

    def feedback_counts(self) -> dict[str, list[dict]]:
        """Useful / useless counts per document (search answers) and per official answer."""
        useful = func.sum((feedback_table.c.verdict == "useful").cast(Integer))
        useless = func.sum((feedback_table.c.verdict == "useless").cast(Integer))
        with self._read() as db:
            docs = db.execute(select(feedback_table.c.doc, useful, useless)
                              .where(feedback_table.c.source == "search")
                              .group_by(feedback_table.c.doc).order_by(feedback_table.c.doc)).all()
            faqs = db.execute(select(feedback_table.c.faq_id, useful, useless)
                              .where(feedback_table.c.source == "faq")
                              .group_by(feedback_table.c.faq_id).order_by(feedback_table.c.faq_id)).all()
        return {"documents": [{"doc": d or "", "useful": int(u or 0), "useless": int(n or 0)} for d, u, n in docs],
                "faqs": [{"faq_id": f, "useful": int(u or 0), "useless": int(n or 0)} for f, u, n in faqs]}

    def useless_questions(self, limit: int) -> list[dict]:
        with self._read() as db:
            rows = db.execute(select(feedback_table.c.question, feedback_table.c.at)
                              .where(feedback_table.c.verdict == "useless")
                              .order_by(feedback_table.c.id.desc()).limit(limit))
            return [{"question": r.question, "at": r.at} for r in rows]

    # ---------------------------------------------------------- dismissed

    def dismissed(self) -> set[str]:
        with self._read() as db:
            return {r.key for r in db.execute(select(dismissed_table.c.key))}

    def dismiss(self, keys: Iterable[str], who: str) -> None:
        now = time.time()
        with self.engine.begin() as db:
            for key in set(keys):
                if not db.execute(select(dismissed_table.c.key).where(dismissed_table.c.key == key)).first():
                    db.execute(insert(dismissed_table).values(key=key, at=now, who=who))


def _faq(row) -> Faq:  # type: ignore[no-untyped-def]
    m = row._mapping
    vectors = None
    if m["vectors"]:
        vectors = np.frombuffer(m["vectors"], dtype=np.float32)
    return Faq(id=int(m["id"]), question=m["question"], alternatives=json.loads(m["alternatives"] or "[]"),
               answer=m["answer"], source=m["source"] or "", vectors=vectors, model=m["model"],
               updated=float(m["updated"]), updated_by=m["updated_by"])


def _faq_row(item: Faq, who: str) -> dict:
    return {"question": item.question, "alternatives": json.dumps(item.alternatives, ensure_ascii=False),
            "answer": item.answer, "source": item.source or "",
            "vectors": item.vectors.astype(np.float32).tobytes() if item.vectors is not None else None,
            "model": item.model, "updated": time.time(), "updated_by": who}


def _new_id(result) -> int:  # type: ignore[no-untyped-def]
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the database returned no id for a new row")
    return int(key[0])
