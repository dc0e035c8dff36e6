"""question -> Answer: routing (greeting, help, empty, query), the answer decision and the reply templates.

No Flask here: the webhook, the HTTP API, the CLI and the console all call ``Answerer.answer`` and so
show the same reply for the same question.

The decision is learned, not a hand rule (``index.rank``, fitted by ``flask eval fit``): from the evidence
about the ranking's first passages (``SearchResult.evidence``: semantic closeness above the corpus's
noise floor, lexical coverage, the ranker's score and margin, coined names, a how-to question's missing
action, closeness to everyday chatter …) two logistic models give P(the first passage answers the
question) and P(the question is about the documents' subjects at all). They pick one of three tiers:

- ``answer``: P(first) reaches the answer threshold and P(about the documents' subjects) the related
  threshold — the passage is quoted and cited;
- ``decline``: neither reaches its threshold — said plainly;
- ``related``: otherwise — "没有找到确切答案，以下内容可能相关" with the best passages' document, section
  and sentence nearest the question (``related_lines``). This includes a first passage the answer model is
  sure of when the scope model doubts the subject: the models disagree, so it is listed, neither quoted nor
  declined (``index.rank.Tiers.tier``).

``abstained`` is true for ``related`` and ``decline``. The thresholds are fitted with the models
(settings ANSWER_THRESHOLD and RELATED_THRESHOLD override them).
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from bot import templates as t
from index.chunk import Chunk
from index.metadata import STATUS_AMENDED, STATUS_IN_FORCE, STATUS_REPEALED
from index.rank import ANSWER_FEATURES, SCOPE_FEATURES, TIER_ANSWER, TIER_DECLINE, TIER_RELATED, LearnedModels, Tiers
from index.search import Hit, HybridSearcher, SearchResult
from index.store import LoadedIndex
from index.tokenize import Tokenizer

MAX_QUESTION_CHARS = 200  # longer messages are searched by their beginning
# a sentence said again and again (请详细说明。请详细说明。…) is searched once: repeats only drown the question
REPEATED_SENTENCE = re.compile(r"([^\s。！？!?；;][^。！？!?；;]{0,59}[。！？!?；;])(?:\s*\1)+")
SECOND_QUOTE_RATIO = 0.85  # a second passage is quoted when its fused score is this close to the best
MAX_QUOTES = 2
MORE_LIMIT = 8  # 更多 goes no deeper than this many passages in all
MORE_MIN_RATIO = 0.3  # nor to passages scoring below this share of the best one (chosen on eval/tune.jsonl)
RELATED_SHOWN = 3  # a related reply lists this many passages
RELATED_LINE_CHARS = 60  # and this much of each one's sentence nearest the question
RELATED_SECTION_CHARS = 16  # and of its innermost heading

GREETING_WORDS = re.compile(
    r"^(你好|您好|嗨|哈喽|hi|hello|hey|在吗|在么|在不在|早上好|上午好|中午好|下午好|晚上好)[啊呀吗呢～~!！。.,，\s]*$"
)
HELP_WORDS = re.compile(r"^(帮助|help|\?|？|使用说明|说明|怎么用|如何使用|菜单|功能)[!！。.\s]*$")
HAS_WORD = re.compile(r"[0-9a-zA-Z\u3400-\u4dbf\u4e00-\u9fff]")

KIND_ANSWER, KIND_RELATED, KIND_ABSTAIN = "answer", "related", "abstain"
KIND_GREETING, KIND_HELP, KIND_EMPTY, KIND_NOT_TEXT = "greeting", "help", "empty", "not_text"
KIND_MORE = "more"


@dataclass
class Passage:
    doc: str
    title: str
    section: str
    text: str
    score: float
    dense: float
    bm25: float
    dense_rank: int | None
    bm25_rank: int | None
    doc_prior: float
    date: str | None = None  # the passage's document's publication date (YYYY-MM-DD)
    status: str = STATUS_IN_FORCE  # 现行有效 / 已修订 / 已废止
    latest: str | None = None  # the newest document of its series, when this one is older

    @classmethod
    def from_hit(cls, hit: Hit, documents: dict[str, dict] | None = None) -> Passage:
        c = hit.chunk
        meta = (documents or {}).get(c.doc_id, {})
        latest = meta.get("latest")
        return cls(doc=c.doc_id, title=c.title, section=" › ".join(c.section), text=c.text, score=hit.score,
                   dense=hit.dense, bm25=hit.bm25, dense_rank=hit.dense_rank, bm25_rank=hit.bm25_rank,
                   doc_prior=hit.doc_prior, date=meta.get("date"), status=meta.get("status") or STATUS_IN_FORCE,
                   latest=latest if latest and latest != c.doc_id else None)


@dataclass
class Decision:
    """Why the bot answered, listed related passages or declined: the evidence and the learned verdict."""

    semantic: float
    semantic_z: float
    lexical: float
    named: float
    confidence: float  # P(the first passage answers the question)
    threshold: float  # answer when confidence reaches it
    scope: float  # P(the question is about the documents' subjects, not everyday chatter)
    related_threshold: float  # otherwise list related passages when scope reaches it
    tier: str
    abstained: bool
    action: str | None = None  # what a how-to question asks to do
    action_found: bool | None = None  # whether a top passage has it
    rewritten: str = ""  # the question in the documents' words
    replaced: list[tuple[str, str]] = field(default_factory=list)  # (member's word, documents' word)
    evidence: dict[str, float] = field(default_factory=dict)  # the decision model's inputs
    missing: str | None = None  # a document the question names that the library lacks: never answered


@dataclass
class Answer:
    question: str
    abstained: bool
    text: str
    passages: list[Passage]
    elapsed_ms: float
    kind: str
    decision: Decision | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    index_version: str | None = None
    quoted: int = 0  # how many of the passages the text quotes (更多 continues after them)
    link: str | None = None  # 查看原文: the first quoted passage in its document (the text's last URL)

    @property
    def tier(self) -> str:
        """What the member got for a question: ``answer``, ``related`` (possibly relevant passages) or
        ``decline``; replies that are not about a question (greeting, help) count as ``answer``."""
        return {KIND_ABSTAIN: TIER_DECLINE, KIND_RELATED: TIER_RELATED}.get(self.kind, TIER_ANSWER)

    def to_json(self, details: bool = False) -> dict:
        """The public JSON shape; ``details`` adds the scores and stages the QA console shows."""
        out: dict = {
            "question": self.question,
            "abstained": self.abstained,
            "text": self.text,
            "passages": [
                {"doc": p.doc, "title": p.title, "section": p.section, "text": p.text, "score": p.score,
                 "date": p.date, "status": p.status, "latest": p.latest}
                | ({"dense": p.dense, "bm25": p.bm25, "dense_rank": p.dense_rank, "bm25_rank": p.bm25_rank,
                    "doc_prior": p.doc_prior} if details else {})
                for p in self.passages
            ],
            "elapsed_ms": self.elapsed_ms,
            "link": self.link,
        }
        out["tier"] = self.tier
        if details:
            out["kind"] = self.kind
            out["decision"] = asdict(self.decision) if self.decision else None
            out["timings_ms"] = self.timings_ms
            out["index_version"] = self.index_version
        return out


@dataclass
class AnswerSettings:
    answer_threshold: float | None = None  # None: the learned models' own thresholds
    related_threshold: float | None = None
    example_questions: tuple[str, ...] = ()
    max_bytes: int = t.WECHAT_MAX_BYTES
    # 查看原文: (chunk, its document's manifest entry) -> the page's URL, or None (no PUBLIC_BASE_URL)
    link: Callable[[Chunk, dict], str | None] | None = None


class Answerer:
    def __init__(self, index: Callable[[], LoadedIndex], settings: AnswerSettings | None = None) -> None:
        self._index = index
        self.settings = settings or AnswerSettings()

    def answer(self, question: str, k: int = 5, lead: str = "") -> Answer:
        """Answer ``question``; ``lead`` is text placed before the reply (within the byte limit)."""
        started = time.perf_counter()
        index = self._index()
        question = question if isinstance(question, str) else ""
        shown = " ".join(question.split())
        compact = unicodedata.normalize("NFKC", shown).lower()
        if not compact:
            return self._fixed(question, KIND_EMPTY, t.render(t.EMPTY, examples=self._examples(index)), started, index)
        if GREETING_WORDS.match(compact):
            text = t.render(t.GREETING, examples=self._examples(index))
            return self._fixed(question, KIND_GREETING, text, started, index)
        if HELP_WORDS.match(compact):
            return self._fixed(question, KIND_HELP, self.help_text(index), started, index)
        if not HAS_WORD.search(compact):
            return self._fixed(question, KIND_NOT_TEXT, t.render(t.NOT_TEXT, examples=self._examples(index)),
                               started, index)

        too_long = len(shown) > MAX_QUESTION_CHARS
        query = search_text(question)
        result = index.searcher.search(query, k=max(k, MORE_LIMIT))
        decision = self.decide(result, index.searcher.models)
        documents = documents_by_id(index)
        passages = [Passage.from_hit(h, documents) for h in result.hits[:k]]
        quoted = self._short(query)
        count = 0
        notice = t.render(t.LONG_QUESTION_NOTICE, limit=MAX_QUESTION_CHARS) if too_long else ""
        link = None
        if decision.tier == TIER_ANSWER:
            kind = KIND_ANSWER
            pool = more_pool(result.hits)
            link = self.link_for(pool[0], documents)
            text, count = self.compose(t.ANSWER, quoted, pool, notice, lead, documents=documents, link=link)
        elif decision.tier == TIER_RELATED:
            kind = KIND_RELATED
            if result.missing:
                notice = t.render(t.MISSING_DOCUMENT_NOTICE, document=result.missing) + notice
            listed = result.hits[:RELATED_SHOWN]
            text = lead + self.related_text(quoted, listed, notice, related_lines(index.searcher, listed, result))
        else:
            kind = KIND_ABSTAIN
            text = lead + t.render(t.ABSTAIN, question=quoted, examples=self._examples(index))
        return Answer(
            question=question, abstained=decision.abstained, text=text, passages=passages,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 2), kind=kind, decision=decision,
            timings_ms={k_: round(v, 3) for k_, v in result.timings_ms.items()}, index_version=index.version,
            quoted=count, link=link,
        )

    def more(self, question: str, shown: int) -> Answer:
        """The next passages for ``question`` after the ``shown`` ones already quoted (for 更多)."""
        started = time.perf_counter()
        index = self._index()
        query = search_text(question)
        result = index.searcher.search(query, k=MORE_LIMIT)
        decision = self.decide(result, index.searcher.models)
        rest = more_pool(result.hits)[shown:]
        documents = documents_by_id(index)
        link = None
        if decision.tier == TIER_DECLINE or not rest:
            text, count = t.render(t.NO_MORE, question=self._short(query)), 0
        else:
            link = self.link_for(rest[0], documents)
            text, count = self.compose(t.MORE, self._short(query), rest, "", "", ratio=0.0, documents=documents,
                                       link=link)
        return Answer(
            question=question, abstained=False, text=text,
            passages=[Passage.from_hit(h, documents) for h in rest],
            elapsed_ms=round((time.perf_counter() - started) * 1000, 2), kind=KIND_MORE, decision=decision,
            index_version=index.version, quoted=shown + count, link=link,
        )

    def confidence(self, question: str) -> float:
        """P(the first passage answers ``question``): how a follow-up's readings are compared."""
        index = self._index()
        result = index.searcher.search(search_text(question), k=MORE_LIMIT)
        return self.decide(result, index.searcher.models).confidence

    def tokenizer(self) -> Tokenizer:
        """The serving index's tokenizer (its dictionary knows the documents' coined terms)."""
        return self._index().searcher.tokenizer

    @staticmethod
    def is_fixed(text: str) -> bool:
        """A greeting or a help request: answered by a fixed reply, never read as a question's part."""
        compact = unicodedata.normalize("NFKC", " ".join(text.split())).lower()
        return bool(GREETING_WORDS.match(compact) or HELP_WORDS.match(compact))

    def link_for(self, hit: Hit, documents: dict[str, dict]) -> str | None:
        """查看原文 for the passage of ``hit`` (None without a link maker or a base URL)."""
        if self.settings.link is None:
            return None
        return self.settings.link(hit.chunk, documents.get(hit.chunk.doc_id, {}))

    def decide(self, result: SearchResult, models: LearnedModels | None = None) -> Decision:
        """The tier for ``result``, by ``models`` (the serving index's when None)."""
        models = models or self._index().searcher.models
        answer_at = self.settings.answer_threshold
        related_at = self.settings.related_threshold
        answer_at = models.tiers.answer if answer_at is None else answer_at
        related_at = models.tiers.related if related_at is None else related_at
        if result.hits:
            p_answer = float(models.answer.probability(evidence_row(result, ANSWER_FEATURES))[0])
            p_scope = float(models.scope.probability(evidence_row(result, SCOPE_FEATURES))[0])
        else:
            p_answer = p_scope = 0.0
        tier = Tiers(answer_at, related_at).tier(p_answer, p_scope)
        if tier == TIER_ANSWER and result.missing:  # the document it names is not in the library
            tier = TIER_RELATED
        return Decision(
            semantic=round(result.semantic, 6), semantic_z=round(result.semantic_z, 4),
            lexical=round(result.lexical, 6), named=round(result.named, 6),
            confidence=round(p_answer, 6), threshold=answer_at, scope=round(p_scope, 6),
            related_threshold=related_at, tier=tier, abstained=tier != TIER_ANSWER,
            action=result.action, action_found=result.action_found, rewritten=result.rewritten,
            replaced=list(result.replaced), evidence={k: round(v, 6) for k, v in result.evidence.items()},
            missing=result.missing,
        )

    def related_text(self, question: str, hits: list[Hit], notice: str, lines: list[str]) -> str:
        """The related tier: the best passages' document, innermost section and ``lines`` (``related_lines``),
        within the byte limit (a phone shows a long section path as a wall of text: the innermost heading
        says where)."""
        items = []
        for i, (h, line) in enumerate(zip(hits, lines, strict=True), 1):
            section = first_line(h.chunk.section[-1], RELATED_SECTION_CHARS) if h.chunk.section else ""
            if section and not section.startswith(("（", "(")):  # （二）… is bracketed already
                section = f"（{section}）"
            items.append(t.render(t.RELATED_ITEM, number=i, title=h.chunk.title, section=section, line=line))
        while True:
            text = t.render(t.RELATED, question=question, items="\n".join(items), notice=notice)
            if t.utf8_len(text) <= self.settings.max_bytes or len(items) == 1:
                return text
            items = items[:-1]

    def compose(self, template: str, question: str, hits: list[Hit], notice: str, lead: str,
                ratio: float = SECOND_QUOTE_RATIO, documents: dict[str, dict] | None = None,
                link: str | None = None) -> tuple[str, int]:
        """Quote the first passage of ``hits`` (and a close second), cited, within the byte limit.

        ``hits`` are the passages 更多 may still show. Returns the text and how many passages it
        quotes. When passages remain, or the quote had to be cut, the text ends with the hint to send 更多.
        A quote from an older document of a series, or a repealed or amended one, gets a note saying so
        (``documents``: the index manifest's documents by id). ``link`` (查看原文 for the first quote) ends
        the text; when the text is too long the quote is cut, never the link.
        """
        tail = t.render(t.ORIGINAL_LINK, url=link) if link else ""
        base_notice = notice
        best = hits[0].score
        chosen = [h for h in hits[:MAX_QUOTES] if h.score >= ratio * best] or hits[:1]
        hint = t.MORE_HINT if len(hits) > len(chosen) else ""
        while True:
            notice = source_notes(chosen, documents) + base_notice
            text = lead + self._render(template, question, chosen, notice) + hint + tail
            if t.utf8_len(text) <= self.settings.max_bytes or len(chosen) == 1:
                break
            chosen = chosen[:-1]
            hint = t.MORE_HINT
        if t.utf8_len(text) > self.settings.max_bytes:
            hint = t.MORE_HINT
            text = lead + self._render(template, question, chosen, notice) + hint + tail
            overflow = t.utf8_len(text) - self.settings.max_bytes
            passage = cut_to_bytes(chosen[0].chunk.text, t.utf8_len(chosen[0].chunk.text) - overflow)
            text = lead + self._render(template, question, chosen, notice, override=passage) + hint + tail
        return text, len(chosen)

    def _render(self, template: str, question: str, hits: list[Hit], notice: str,
                override: str | None = None) -> str:
        quotes = "\n\n".join(
            t.render(t.QUOTE, text=override if override is not None and i == 0 else h.chunk.text,
                     title=h.chunk.title, section=" › ".join(h.chunk.section))
            for i, h in enumerate(hits)
        )
        if template == t.ANSWER:
            intro = t.SOURCE_ONE if len(hits) == 1 else t.SOURCE_MANY
            return t.render(template, question=question, source_intro=intro, quotes=quotes, notice=notice)
        return t.render(template, question=question, quotes=quotes, notice=notice)

    def examples(self) -> str:
        return self._examples(self._index())

    def document_count(self) -> int:
        return len(self._index().manifest.get("documents", []))

    def help_text(self, index: LoadedIndex | None = None) -> str:
        index = index or self._index()
        titles = list(dict.fromkeys(d["title"] for d in index.manifest.get("documents", [])))
        shown = titles[:10] + ([f"等共 {len(titles)} 份文件"] if len(titles) > 10 else [])
        return t.render(t.HELP, examples=self._examples(index), documents=t.bullet_list(shown))

    def _examples(self, index: LoadedIndex) -> str:
        return t.bullet_list(list(self.settings.example_questions) or example_questions(index))

    def _fixed(self, question: str, kind: str, text: str, started: float, index: LoadedIndex) -> Answer:
        return Answer(question=question, abstained=False, text=text, passages=[],
                      elapsed_ms=round((time.perf_counter() - started) * 1000, 2), kind=kind,
                      index_version=index.version)

    @staticmethod
    def _short(question: str, limit: int = 60) -> str:
        return question if len(question) <= limit else question[: limit - 1] + "…"


def documents_by_id(index: LoadedIndex) -> dict[str, dict]:
    """The index manifest's documents (title, date, status, series …) by id."""
    return {d["doc_id"]: d for d in index.manifest.get("documents", [])}


def chinese_date(iso_date: str | None) -> str:
    """2018-03-23 -> 2018年3月23日."""
    if not iso_date or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", iso_date):
        return iso_date or t.UNDATED
    year, month, day = iso_date.split("-")
    return f"{int(year)}年{int(month)}月{int(day)}日"


def source_note(meta: dict) -> str:
    """The note after a quote from a repealed or amended document, or an older one of a series."""
    title, date = meta.get("title", ""), chinese_date(meta.get("date"))
    status = meta.get("status")
    if status == STATUS_REPEALED:
        return t.render(t.REPEALED_NOTICE, title=title, date=date)
    if status == STATUS_AMENDED:
        return t.render(t.AMENDED_NOTICE, title=title, date=date)
    latest = meta.get("latest")
    if latest and latest != meta.get("doc_id"):
        return t.render(t.SERIES_NOTICE, title=title, date=date, latest=meta.get("latest_title", ""),
                        latest_date=chinese_date(meta.get("latest_date")))
    return ""


def source_notes(hits: list[Hit], documents: dict[str, dict] | None) -> str:
    """One note per quoted document that needs one, in quoting order."""
    if not documents:
        return ""
    notes = dict.fromkeys(source_note(documents.get(h.chunk.doc_id, {})) for h in hits)
    return "".join(n for n in notes if n)


def evidence_row(result: SearchResult, features: tuple[str, ...]) -> np.ndarray:
    return np.array([[result.evidence[f] for f in features]])


def related_lines(searcher: HybridSearcher, hits: list[Hit], result: SearchResult) -> list[str]:
    """What a related reply shows of each passage: the sentence nearest the question (index.sentences), after
    "…" when it is not the passage's first. The answer is seldom a passage's first line: of the related
    replies to the unseen sets' answerable questions that list a right passage, its first line held the
    answer for 15–27 of 81–127 a set; its nearest sentence, cut to 60 characters, for 61–101 (bench.quality's
    ``shown``)."""
    lines = []
    for h in hits:
        sentence, first = searcher.nearest_sentence(h.position, result.query_vector)
        line = shorten(" ".join(sentence.split()), RELATED_LINE_CHARS)
        lines.append(line if first else f"…{line}")
    return lines


def first_line(text: str, limit: int) -> str:
    """A passage's first line or sentence, cut to ``limit`` characters."""
    from index.chunk import split_sentences

    line = text.strip().split("\n", 1)[0]
    spans = split_sentences(line)
    if spans:
        line = line[:spans[0][1]]
    return shorten(line, limit)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the last one "…" when cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def search_text(question: str) -> str:
    """What is searched for a member's message: white space runs made one space, a sentence repeated in a
    row said once, and no more than ``MAX_QUESTION_CHARS`` of it."""
    return REPEATED_SENTENCE.sub(r"\1", " ".join(question.split()))[:MAX_QUESTION_CHARS]


def more_pool(hits: list[Hit]) -> list[Hit]:
    """The passages worth showing for one question: the top ones, not far below the best."""
    if not hits:
        return []
    best = hits[0].score
    return [h for h in hits[:MORE_LIMIT] if h.score >= MORE_MIN_RATIO * best]


def cut_to_bytes(text: str, max_bytes: int) -> str:
    """Keep whole sentences of ``text`` that fit in ``max_bytes`` (with the ellipsis mark)."""
    from index.chunk import split_sentences

    budget = max_bytes - t.utf8_len(t.TRUNCATED_MARK)
    kept = ""
    for _start, end in split_sentences(text):
        if t.utf8_len(text[:end]) > budget:
            break
        kept = text[:end]
    if not kept:  # the first sentence alone is too long: cut after its last clause that fits
        head = text.encode("utf-8")[: max(budget, 0)].decode("utf-8", "ignore")
        clause_end = max(head.rfind(mark) for mark in "，；：、,;:")
        kept = head[: clause_end + 1] if clause_end > 0 else head
    return kept + t.TRUNCATED_MARK


def example_questions(index: LoadedIndex, n: int = 3) -> list[str]:
    """Example questions made from the terms the documents coin (“海燕归巢” -> 海燕归巢是指什么？)."""
    terms = sorted((w for w in index.terms if 3 <= len(w) <= 6), key=lambda w: (-len(w), w))
    if not terms:
        return ["文件的主要内容是什么？"]
    step = max(len(terms) // n, 1)
    return [f"“{w}”是指什么？" for w in terms[::step][:n]]
