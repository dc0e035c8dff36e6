"""Hybrid search: three candidate channels, a learned ranker over their evidence, and the evidence for
the answer decision.

A question is first rewritten into the documents' words (``index.synonyms``: 村官 -> 村干部). Candidates
come from three channels, each over-fetched: the dense index (e5 cosine), BM25 over jieba words, and BM25
over character bigrams (no dictionary: it still matches typos, rare names and words jieba cuts
differently in a question than in a passage). Each candidate is described by the features in
``index.rank.PASSAGE_FEATURES`` — its scores in each channel, how much of the question it covers, its
section headings, its neighbours, and how much its document as a whole is about the question (BM25 over
whole documents, the title, the best passage of the document, and whether the question names the
document's year or congress session: 2019年政府工作报告…, 十九大…). The learned ranker (a logistic model fitted
on the tuning questions, ``index/learned.json``) orders them; ties break on the chunk's position in the
index, so a ranking never depends on dictionary or thread order.

Besides the ranking, ``search`` reports the evidence that decides whether the documents answer the
question at all (``SearchResult.evidence``, the features in ``index.rank.DECISION_FEATURES``) and the
figures behind it that the console shows: ``semantic`` (the nearest passage's cosine, also as
``semantic_z``, standard deviations above the corpus's off-topic noise floor, ``index.calibration``),
``lexical`` (the IDF-weighted share of the question's terms found in one of the top passages), ``named``
(the part of it that is the documents' own coined names, 村情通), and for a how-to question its ``action``
and whether a top passage has it.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from index.bm25 import BM25Index
from index.calibration import background_stats, errand_questions, everyday_questions, z_score
from index.chunk import HEADER_SECTION, Chunk
from index.chunk_tokens import ChunkTokens
from index.dense import DenseIndex
from index.embed import Embedder, TokenEmbedder, gives_tokens
from index.rank import DECISION_FEATURES, PASSAGE_FEATURES, LearnedModels, LinearModel, log_rank
from index.sentences import SentenceIndex, sentence_pieces
from index.synonyms import DEFAULT_SYNONYMS, Rewrite, Synonyms
from index.token_match import TokenIndex, TokenVectors
from index.tokenize import Tokenizer, nfkc

# candidates taken from each channel: the depth the ranker and the decision were fitted with (bm25_rank and
# bigram_rank count a passage the channel did not return as ranked just past it)
CHANNEL_FETCH = 50
TOP_BLOCK = 1024  # scores a block in ``kth_floor``
QUERY_VECTORS_KEPT = 64  # recent question embeddings kept per searcher
EVIDENCE_HITS = 3  # lexical evidence may come from any of the passages a reply can quote
# the place a title opens with (浙江省…, 济南市…, 延边朝鲜族自治州…): one regulation as several places enacted it
TITLE_PLACE = re.compile(r"^(.{1,7}?)(省|市|自治区|自治州|县)")
YEAR = re.compile(r"(?<!\d)((?:19|20)\d{2})(?!\d)")
# How far (ranker log-odds) the newest document of a series may trail an older one's best passage and still
# go first for a question that names no year (HybridSearcher.prefer_current); measured in CHANGES.md
SERIES_CURRENT_MARGIN = 2.0
# A report named by its year or session: 2023年政府工作报告, 22年的工作报告, 十八大报告
DOCUMENT_MENTION = re.compile(r"((?:19|20)?\d{2}年|[一二三四五六七八九十]{1,3}大"
                              r"|第[一二三四五六七八九十]+次全国代表大会)的?[\u4e00-\u9fff]{0,6}?报告")
SHORT_YEAR = re.compile(r"(?<![\d.])(\d{2})年(?![代级])")  # 18年 -> 2018, as members type it (not 80年代)
CN_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")}
SESSION = re.compile(r"第([一二三四五六七八九十]{1,3}|\d{1,2})次(?:全国)?代表大会"
                     r"|([一二三四五六七八九]?十[一二三四五六七八九]?|\d{2})大")
WHITESPACE = re.compile(r"\s+")
# A question that asks for a figure (多少钱, 几年, 多久; not 哪几个, a list), and a figure in a passage: an
# Arabic number, or a Chinese one with a unit. A passage that states no figure cannot answer it, however
# close its subject. Numbers that only place or date the text are not figures: an article or list number
# (第八十二条, （三）, 一是, 85．) and a year or date (2022年10月16日).
FIGURE_ASKED = re.compile(r"多少|(?<!哪)几[个年天次岁级项种条倍月届名人成]|多久|多长|多大|百分之几")
FIGURE = re.compile(r"[0-9０-９]+"
                    r"|[一二三四五六七八九十百千万亿两半]+(?:个|年|天|岁|次|级|项|种|条|倍|月|元|万|亿|%|分之|成|届|名|人|数)")
NOT_A_FIGURE = re.compile(r"第[〇零一二三四五六七八九十百千0-9０-９]+[条章节款项编部次届批]"
                          r"|[（(][一二三四五六七八九十0-9]+[）)]|[一二三四五六七八九十]+是|[0-9]+[．.、](?![0-9])"
                          r"|[0-9]{4}年(?:[0-9]{1,2}月)?(?:[0-9]{1,2}日)?|[0-9]{4}[-/.][0-9]{1,2}(?:[-/.][0-9]{1,2})?")
# A figure of a kind, when the question asks for one: an amount of money in 元, an age in 岁, a share (%,
# 成, 百分之…), a length of time, a number of people. A passage stating only figures of another kind
# (3700多万学生 for 补助多少钱) does not answer it.
_NUMBER = r"(?:[0-9０-９]+(?:\.[0-9]+)?|[一二三四五六七八九十百千万亿两半]+)\s*(?:多|余)?"
FIGURE_KINDS = (
    (re.compile(r"多少钱|多少元|多少万|[补贴助]多少|多少[补贴助]|费[是有]?多少|[奖罚]多少|金额"),
     re.compile(_NUMBER + r"(?:万|亿)?元")),
    (re.compile(r"多少岁|几岁|多大岁数|岁数|多大年[纪龄]|年龄"), re.compile(_NUMBER + r"周?岁")),
    (re.compile(r"利率|比例|比重|占比|百分之几|百分比|几成"),
     re.compile(_NUMBER + r"(?:%|％|个百分点|成)|百分之[一二三四五六七八九十百零点0-9]+")),
    (re.compile(r"多久|多长时间|几天|多少天|几年|多少年|几个月|多少个月|几个?工作日|多少个?工作日|几周|多少小时|几个?小时|学时"),
     re.compile(_NUMBER + r"个?(?:天|日|年|月|周|小时|学时|工作日)")),
    (re.compile(r"多少人|几个人|几人|多少名|几名|多少位"), re.compile(_NUMBER + r"(?:人|名|位)")),
)


def asks_figure(question: str) -> bool:
    """True when the question asks for a figure of any kind."""
    return bool(FIGURE_ASKED.search(question)) or any(asked.search(question) for asked, _ in FIGURE_KINDS)


def figure_missing(question: str, passage: str) -> bool:
    """True when the question asks for a figure and the passage states none of the kind it asks for."""
    if not asks_figure(question):
        return False
    text = NOT_A_FIGURE.sub(" ", passage)
    for asked, stated in FIGURE_KINDS:
        if asked.search(question):
            return not stated.search(text)
    return not FIGURE.search(text)


@dataclass
class Hit:
    chunk: Chunk
    score: float  # the ranker's probability that this passage answers the question
    dense: float  # cosine similarity
    bm25: float  # raw BM25 score (jieba words)
    dense_rank: int | None  # 1-based rank among the candidates by cosine
    bm25_rank: int | None  # 1-based rank by BM25, None when BM25 did not match it
    position: int  # the chunk's position in the index
    doc_prior: float = 0.0  # how much the passage's document as a whole is about the query (BM25 or title)
    bigram_rank: int | None = None  # 1-based rank by character-bigram BM25


@dataclass
class SearchResult:
    query: str
    tokens: list[str]
    hits: list[Hit]
    query_vector: np.ndarray  # the rewritten question's embedding
    semantic: float  # cosine of the passage nearest to the question (0 when there is none)
    semantic_z: float  # the same in standard deviations above this corpus's off-topic noise floor
    lexical: float  # IDF-weighted share of query terms present in one of the top passages
    named: float = 0.0  # the same share counting only the documents' own coined names (村情通)
    missing: str | None = None  # a document the question names that the library lacks ("2023年政府工作报告")
    action: str | None = None  # what a how-to question asks to do (个人所得税怎么申报 -> 申报)
    action_found: bool | None = None  # whether a top passage has it; None when there is no action
    rewritten: str = ""  # the question in the documents' words (the synonym dictionary applied)
    replaced: tuple[tuple[str, str], ...] = ()  # (member's word, documents' word) pairs applied
    evidence: dict[str, float] = field(default_factory=dict)  # DECISION_FEATURES, for the answer decision
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Ranking:
    """One question's candidates in ranked order, with the evidence ``search`` reports about them."""

    hits: list[Hit]
    semantic: float
    lexical: float
    named: float
    action: str | None
    action_found: bool | None
    evidence: dict[str, float]


@dataclass
class Candidates:
    """Every candidate passage of one question with its features (rows in ``PASSAGE_FEATURES`` order)."""

    text: str  # the question they were found for: normalised, in the documents' words
    positions: np.ndarray
    features: np.ndarray
    cosine: np.ndarray
    bm25: np.ndarray
    ranks: dict[str, dict[int, int]]  # channel -> position -> 1-based rank
    doc_prior: np.ndarray
    query_vector: np.ndarray
    terms: list[str]
    tokens: list[str]
    sentence: float = 0.0  # the best cosine of one sentence (or whole passage, if closer) among them
    asked: str = ""  # the question before the synonym rewrite (which turns 多少岁 into 年满): the figure it asks


class HybridSearcher:
    def __init__(self, chunks: list[Chunk], chunk_tokens: list[list[str]] | ChunkTokens, bm25: BM25Index,
                 dense: DenseIndex, embedder: Embedder, tokenizer: Tokenizer,
                 bigram_bm25: BM25Index | None = None, synonyms: Synonyms | None = None,
                 models: LearnedModels | None = None, calibration: dict | None = None,
                 everyday: np.ndarray | None = None, errands: np.ndarray | None = None,
                 sentences: SentenceIndex | None = None,
                 newest: dict[str, str] | None = None, token_index: TokenIndex | None = None,
                 title_words: dict[str, list[str]] | None = None) -> None:
        self.chunks = chunks
        # an older document of a series -> the series' newest document (index.metadata.link_series)
        self.newest = {old: new for old, new in (newest or {}).items() if old != new}
        # each passage's words, as numbers (index.chunk_tokens); lists are converted
        self.chunk_tokens = (chunk_tokens if isinstance(chunk_tokens, ChunkTokens)
                             else ChunkTokens.from_lists(chunk_tokens))
        self.bm25 = bm25
        self.bigram_bm25 = bigram_bm25 or BM25Index.build([tokenizer.bigrams(c.context_text()) for c in chunks])
        self.synonyms = (synonyms if synonyms is not None else Synonyms.from_file(DEFAULT_SYNONYMS)).normalized(
            tokenizer.normalize)
        self.models = models or LearnedModels.load()
        if len(self.chunk_tokens) != len(chunks):
            raise ValueError(f"{len(self.chunk_tokens)} passages' tokens for {len(chunks)} passages")
        titles: dict[str, str] = {}  # each document's, in the order of their first passages
        heads: dict[str, str] = {}
        for chunk in chunks:
            titles.setdefault(chunk.doc_id, chunk.title)
            if chunk.section[:1] == (HEADER_SECTION,):
                heads.setdefault(chunk.doc_id, chunk.text)
        documents = list(titles)
        number = {doc_id: i for i, doc_id in enumerate(documents)}
        self.document_ids = documents
        self.document_number = number
        self.chunk_document = np.array([number[c.doc_id] for c in chunks], dtype=np.int64)
        # whole documents: their passages' words one after another
        self.document_bm25 = BM25Index.from_ids(*self.chunk_tokens.grouped(self.chunk_document, len(documents)),
                                                self.chunk_tokens.terms) if len(documents) > 1 else None
        # each document's title words, as the version keeps them (tokenising its 13,170 titles at every load
        # kept a 100k-passage version's load at 4.4 s, 3.3 s without); tokenised here when it has none
        given = title_words or {}
        self.title_words = {d: given[d] if d in given else sorted(set(tokenizer.tokens(title)))
                            for d, title in titles.items()}
        having: dict[str, list[int]] = {}  # a title word -> the documents whose title has it
        for doc_id, words in self.title_words.items():
            for word in words:
                having.setdefault(word, []).append(number[doc_id])
        self.title_documents = {word: np.array(docs, dtype=np.int64) for word, docs in having.items()}
        # a document whose title opens with a place, and another place enacted the same title's rest ->
        # (the place without 省/市/…, the rest of the title)
        placed = {d: (m[1], title[m.end():]) for d, title in titles.items()
                  if (m := TITLE_PLACE.match(title)) and len(m[1]) > 1}
        enacted = Counter(rest for _, rest in placed.values())
        self.document_place = {d: place for d, place in placed.items() if enacted[place[1]] > 1}
        # what a question may name a document by: the years and congress sessions of its title and header
        # (and of its id, the admin's file name, for reports whose text carries no title or date)
        self.document_labels = [" ".join((titles[d], heads.get(d, "")[:200])) for d in documents]
        self.document_names: list[set[str]] = [
            names_in(f"{label} {d.replace('_', ' ')}") for label, d in zip(self.document_labels, documents, strict=True)
        ]
        self.all_document_names = set().union(*self.document_names)
        self._section_words: dict[tuple[str, ...], set[str]] = {}
        self._bigram_text: dict[int, str] = {}
        self._query_vectors: dict[str, np.ndarray] = {}
        self._query_tokens: dict[str, TokenVectors] = {}
        # every passage's token vectors (index.token_match); None when the embedder gives none
        self.token_index = token_index if token_index is not None and token_index.passages == len(chunks) \
            and gives_tokens(embedder) else None
        self.dense = dense
        self.embedder = embedder
        self.sentences = sentences if sentences is not None else SentenceIndex.build(
            chunks, lambda texts: embedder.encode_passages(texts), embedder.dimension)
        self.tokenizer = tokenizer
        # the everyday questions' vectors (index.calibration): what off-topic chatter looks like to the model
        self.everyday = everyday if everyday is not None else self.embedder.encode_queries(everyday_questions())
        # the personal errands' vectors (index.calibration.ERRANDS_FILE)
        self.errands = errands if errands is not None else self.embedder.encode_queries(errand_questions())
        self.calibration = calibration or self.measure_background()

    def measure_background(self) -> dict:
        """The off-topic noise floor of this corpus: the everyday questions' best cosines (index.calibration)."""
        return background_stats(self.dense.best_scores(self.everyday).tolist())

    # ---------------------------------------------------------------- search

    def search(self, query: str, k: int = 5) -> SearchResult:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        rewrite = self.rewrite(query)
        text = rewrite.text
        t1 = time.perf_counter()
        timings["tokenize"] = (t1 - t0) * 1000
        query_vector = self.query_vector(text)
        t2 = time.perf_counter()
        timings["embed"] = (t2 - t1) * 1000
        found = self.candidates(text, query_vector, fetch=max(k, CHANNEL_FETCH), asked=rewrite.asked)
        t3 = time.perf_counter()
        timings["search"] = (t3 - t2) * 1000
        r = self.ranking(found)
        timings["rank"] = (time.perf_counter() - t3) * 1000
        return SearchResult(query=query, tokens=found.tokens, hits=r.hits[:k], semantic=r.semantic,
                            semantic_z=z_score(r.semantic, self.calibration), lexical=r.lexical, named=r.named,
                            action=r.action, action_found=r.action_found, rewritten=text,
                            replaced=rewrite.replaced, evidence=r.evidence, timings_ms=timings,
                            missing=self.missing_document(text), query_vector=query_vector)

    def query_vector(self, text: str) -> np.ndarray:
        """The embedding of a question already normalised and rewritten. The last few are kept, so a check
        before the search (an official answer's close match) and the search itself embed a question once.
        With a token index, the question's token vectors come from the same pass (``query_tokens``)."""
        vector = self._query_vectors.get(text)
        if vector is None:
            if len(self._query_vectors) >= QUERY_VECTORS_KEPT:
                self._query_vectors.clear()
                self._query_tokens.clear()
            if self.token_index is not None:
                vectors, tokens = cast(TokenEmbedder, self.embedder).encode_queries_with_tokens([text])
                vector = vectors[0]
                self._query_tokens[text] = tokens[0]
            else:
                vector = self.embedder.encode_queries([text])[0]
            self._query_vectors[text] = vector
        return vector

    def nearest_sentence(self, position: int, query_vector: np.ndarray) -> tuple[str, bool]:
        """The sentence of passage ``position`` nearest the question (index.sentences), and whether it is
        the passage's first; a passage of one sentence is that sentence."""
        chunk = self.chunks[position]
        pieces = sentence_pieces(chunk)
        nearest = self.sentences.nearest(position, query_vector) if pieces else None
        if nearest is None or nearest >= len(pieces):  # one sentence, or vectors of another build's cut
            return chunk.text.strip(), True
        return pieces[nearest], nearest == 0

    def query_tokens(self, text: str) -> TokenVectors | None:
        """The token vectors of a question already normalised and rewritten (None without a token index)."""
        if self.token_index is None:
            return None
        if text not in self._query_tokens:  # embedded before the token index came, or dropped with the vectors
            self._query_vectors.pop(text, None)
            self.query_vector(text)
        return self._query_tokens[text]

    def rewrite(self, query: str) -> Rewrite:
        """The question normalised and in the documents' words (a word the documents use stays as it is)."""
        return self.synonyms.rewrite(self.tokenizer.normalize(query),
                                     known=lambda word: self.bm25.document_frequency(word) > 0)

    def ranking(self, found: Candidates, ranker: LinearModel | None = None) -> Ranking:
        """The candidates ranked (by ``ranker`` when given: fitting tries rankers) and the evidence for the
        answer decision."""
        hits, scores = self.prefer_current(found, *self.prefer_placed(found, *self.prefer_named(
            found, *self.rank(found, ranker))))
        semantic = float(found.cosine.max()) if len(found.cosine) else 0.0
        action = self.tokenizer.asked_action(found.text)
        lexical, named, action_found = self.evidence(found.terms, action, hits[:EVIDENCE_HITS])
        evidence = self.decision_evidence(found, scores, hits, semantic, lexical, named, action_found)
        return Ranking(hits, semantic, lexical, named, action, action_found, evidence)

    def candidates(self, text: str, query_vector: np.ndarray, fetch: int = CHANNEL_FETCH,
                   asked: str = "") -> Candidates:
        """The union of each channel's best passages for the question ``text`` — already normalised
        (``Tokenizer.normalize``) and rewritten — with their features. ``asked`` is the question before the
        rewrite (``text`` when not given)."""
        tokens = self.tokenizer.tokens(text, normalized=True)
        terms = self.tokenizer.terms(text, normalized=True)
        grams = self.tokenizer.bigrams(text, normalized=True)
        dense_ids, _ = self.dense.search(query_vector, fetch)
        bm25_all = self.bm25.scores(tokens)
        bigram_all = self.bigram_bm25.scores(grams)
        bm25_order = top_positions(bm25_all, fetch)
        bigram_order = top_positions(bigram_all, fetch)
        sentence_order = self.sentences.search(query_vector, fetch)
        positions = np.array(sorted({int(i) for i in dense_ids if i >= 0} | {int(i) for i in sentence_order}
                                    | {int(i) for i in bm25_order} | {int(i) for i in bigram_order}), dtype=np.int64)
        n = len(positions)
        features = np.zeros((n, len(PASSAGE_FEATURES)), dtype=np.float64)
        if n == 0:
            return Candidates(text, positions, features, np.zeros(0), np.zeros(0), {}, np.zeros(0), query_vector,
                              terms, tokens, asked=asked or text)
        cosine = self.dense.vectors(positions.tolist()) @ query_vector
        cosine = cosine.astype(np.float64)
        sentence = self.sentences.best_cosine(positions, query_vector, cosine)
        ranks = {"dense": rank_of(positions, cosine), "bm25": rank_of(positions, bm25_all[positions]),
                 "bigram": rank_of(positions, bigram_all[positions]), "sentence": rank_of(positions, sentence)}
        best_cosine = float(cosine.max())
        column = {name: i for i, name in enumerate(PASSAGE_FEATURES)}

        def put(name: str, values: np.ndarray | list[float]) -> None:
            features[:, column[name]] = values

        put("dense_gap", cosine - best_cosine)
        put("dense_z", z_scores(cosine, self.calibration))
        listed = positions.tolist()
        put("dense_rank", [log_rank(ranks["dense"].get(p), n) for p in listed])
        put("sentence_gap", sentence - float(sentence.max()))
        put("sentence_rank", [log_rank(ranks["sentence"].get(p), n) for p in listed])
        put("bm25", share_of_best(bm25_all[positions]))
        put("bm25_rank", [log_rank(ranks["bm25"].get(p), fetch) for p in listed])
        put("bigram", share_of_best(bigram_all[positions]))
        put("bigram_rank", [log_rank(ranks["bigram"].get(p), fetch) for p in listed])
        weights = self.term_weights(terms)
        put("coverage", self.coverage(weights, positions))
        gram_weights = self.bigram_weights(grams)
        gram_total = sum(gram_weights.values())
        put("bigram_coverage", [self.bigram_coverage(gram_weights, p, gram_total) for p in listed])
        put("section_coverage", [self._shares(weights, self.section_words(self.chunks[p].section))[0]
                                 for p in listed])
        put("neighbour_gap", self.neighbour_cosine(positions, query_vector) - best_cosine)
        question_tokens = self.query_tokens(text)
        if question_tokens is not None and self.token_index is not None:
            match, low = self.token_index.match(positions, question_tokens)
            put("token_match", match)
            put("token_match_gap", match - match.max())
            put("token_low", low)
            put("token_low_gap", low - low.max())
        put("header", [1.0 if self.chunks[p].section[:1] == (HEADER_SECTION,) else 0.0 for p in listed])
        documents = self.chunk_document[positions]
        # with one document, it is the best document for every question: its features take the values the
        # best of several would, so a ranking's scores mean the same whatever the library's size
        body, title = self.document_scores(tokens, terms)
        put("doc_bm25", body[documents])
        put("doc_title", title[documents])
        doc_prior = np.maximum(body, title)[documents] if self.document_bm25 is not None else np.zeros(n)
        doc_best: dict[int, float] = {}
        for d, c in zip(documents.tolist(), cosine.tolist(), strict=True):
            doc_best[d] = max(doc_best.get(d, -1.0), c)
        put("doc_dense_gap", [doc_best[d] - best_cosine for d in documents.tolist()])
        named = names_in(text)
        if named:
            hits = np.array([bool(named & self.document_names[d]) for d in range(len(self.document_ids))])
            if hits.any():
                put("doc_named", hits[documents].astype(np.float64))
                put("doc_named_other", (~hits[documents]).astype(np.float64))
        return Candidates(text, positions, features, cosine, bm25_all[positions].astype(np.float64), ranks,
                          doc_prior, query_vector, terms, tokens, sentence=float(sentence.max()), asked=asked or text)

    def rank(self, found: Candidates, ranker: LinearModel | None = None) -> tuple[list[Hit], np.ndarray]:
        """Hits ordered by the learned ranker (or ``ranker``; ties by position), and their scores in that
        order (log-odds between the candidates). A hit's ``score`` is its share of the softmax over all the
        candidates: the ranker's probability that it is the right one, when one of them is."""
        if len(found.positions) == 0:
            return [], np.zeros(0)
        scores = (ranker or self.models.ranker).score(found.features)
        order = np.lexsort((found.positions, -np.round(scores, 9)))
        probability = np.exp(scores - scores.max())
        probability /= probability.sum()
        dense_ranks, bm25_ranks, bigram_ranks = found.ranks["dense"], found.ranks["bm25"], found.ranks["bigram"]
        columns = (found.positions[order].tolist(), probability[order].tolist(), found.cosine[order].tolist(),
                   found.bm25[order].tolist(), found.doc_prior[order].tolist())
        hits = [Hit(chunk=self.chunks[p], score=round(share, 6), dense=round(cosine, 6), bm25=round(bm25, 6),
                    dense_rank=dense_ranks.get(p), bm25_rank=bm25_ranks.get(p), bigram_rank=bigram_ranks.get(p),
                    position=p, doc_prior=round(prior, 6))
                for p, share, cosine, bm25, prior in zip(*columns, strict=True)]
        return hits, scores[order]

    def missing_document(self, text: str) -> str | None:
        """A report the question names by a year or congress session that no document of the library is
        named by ("2023年政府工作报告", "十八大报告"): what it asks about is not here, whatever passage
        comes closest."""
        for m in DOCUMENT_MENTION.finditer(text):
            names = names_in(m.group(0))
            kind = m.group(0)[len(m.group(1)):].lstrip("的")  # 政府工作报告, 报告
            if names and not any(names & self.document_names[d] and kind in self.document_labels[d]
                                 for d in range(len(self.document_ids))):
                return m.group(0)
        return None

    def prefer_named(self, found: Candidates, hits: list[Hit], scores: np.ndarray) -> tuple[list[Hit], np.ndarray]:
        """A question that names one document of a series by its year or congress session (17年棚改, 二十大报告)
        asks about that one: when the best passage comes from a sibling the question does not name, the
        named sibling's best passage goes first. Documents outside the series are left to the ranker's
        ``doc_named`` feature: a year is also a target inside other texts (2020年全面建成小康社会)."""
        named = names_in(found.text) & self.all_document_names
        if not hits or not named:
            return hits, scores
        top = hits[0].chunk.doc_id
        if self.document_names[self.document_number[top]] & named:
            return hits, scores
        siblings = {doc for doc in self.series_of(top) if self.document_names[self.document_number[doc]] & named}
        for i in range(1, len(hits)):
            if hits[i].chunk.doc_id in siblings:
                return moved_first(hits, scores, i)
        return hits, scores

    def prefer_placed(self, found: Candidates, hits: list[Hit], scores: np.ndarray) -> tuple[list[Hit], np.ndarray]:
        """A question that names a place (在青岛…, 咱们浙江…) asks about that place's regulation: when the best
        passage comes from another place's enactment of the same regulation (青岛市劳动保障监察条例 beside
        浙江省劳动保障监察条例: the titles differ only in the place they open with), the named place's best
        passage goes first. A question naming no place, or the best passage's own, keeps the ranker's order."""
        top = self.document_place.get(hits[0].chunk.doc_id) if hits else None
        if top is None or top[0] in found.asked:
            return hits, scores
        for i in range(1, len(hits)):
            place = self.document_place.get(hits[i].chunk.doc_id)
            if place is not None and place[1] == top[1] and place[0] in found.asked:
                return moved_first(hits, scores, i)
        return hits, scores

    def series_of(self, doc_id: str) -> set[str]:
        """The documents of ``doc_id``'s series (``index.metadata.link_series``), none when it is in none."""
        newest = self.newest.get(doc_id, doc_id)
        older = {old for old, new in self.newest.items() if new == newest}
        return older | {newest} if older else set()

    def prefer_current(self, found: Candidates, hits: list[Hit], scores: np.ndarray) -> tuple[list[Hit], np.ndarray]:
        """A question that names no year or congress session asks about the current document of a series:
        when the best passage comes from an older one and the newest one's best passage is within
        ``SERIES_CURRENT_MARGIN`` log-odds of it, the newest one's goes first (its reply then needs no
        "最新为…" note). A question that names a year keeps the ranker's order (``doc_named``)."""
        newest = self.newest.get(hits[0].chunk.doc_id) if hits else None
        if newest is None or names_in(found.text) & self.all_document_names:
            return hits, scores
        for i in range(1, len(hits)):
            if scores[0] - scores[i] > SERIES_CURRENT_MARGIN:
                break
            if hits[i].chunk.doc_id == newest:
                return moved_first(hits, scores, i)
        return hits, scores

    def decision_evidence(self, found: Candidates, scores: np.ndarray, hits: list[Hit], semantic: float,
                          lexical: float, named: float, action_found: bool | None) -> dict[str, float]:
        """The features of ``index.rank.DECISION_FEATURES`` for this question's ranking."""
        if not hits:
            nothing = {"top_score": -20.0, "semantic_z": -5.0, "sentence_z": -5.0}
            far = {"everyday_gap": 1.0, "errand_gap": 1.0, "chatter_gap": 1.0, "chatter_gap_z": 10.0}
            return dict.fromkeys(DECISION_FEATURES, 0.0) | nothing | far
        top = hits[0]
        row = found.features[int(np.flatnonzero(found.positions == top.position)[0])]
        column = {name: i for i, name in enumerate(PASSAGE_FEATURES)}
        everyday_gap = float((self.everyday @ found.query_vector).max()) - semantic if len(self.everyday) else 0.0
        errand_gap = float((self.errands @ found.query_vector).max()) - semantic if len(self.errands) else 0.0
        chatter_gap = max(everyday_gap, errand_gap)
        return {
            "top_score": float(scores[0]),
            "margin": float(scores[0] - scores[1]) if len(scores) > 1 else 10.0,
            "top_share": top.score,
            "semantic_z": z_score(semantic, self.calibration),
            "sentence_z": z_score(found.sentence, self.calibration),
            "coverage": lexical,
            "top_coverage": float(row[column["coverage"]]),
            "bigram_coverage": float(row[column["bigram_coverage"]]),
            "named": named,
            "action_missing": 1.0 if action_found is False else 0.0,
            "figure_missing": 1.0 if figure_missing(found.asked or found.text, top.chunk.text) else 0.0,
            "top_rank_agreement": 1.0 if top.dense_rank == 1 or top.bm25_rank == 1 else 0.0,
            "everyday_gap": everyday_gap,
            "errand_gap": errand_gap,
            "chatter_gap": chatter_gap,
            "chatter_gap_z": chatter_gap / float(self.calibration["semantic_std"]) if self.calibration else 0.0,
            "wording": self.wording(found.asked or found.text),
        }

    def wording(self, text: str) -> float:
        """The wording model's log-odds that ``text`` (normalised, before the synonym rewrite) is about the
        documents' subjects (``index.wording``); 0 without one."""
        model = self.models.wording
        return float(model.log_odds([text])[0]) if model is not None else 0.0

    # -------------------------------------------------------------- evidence

    def neighbour_cosine(self, positions: np.ndarray, query_vector: np.ndarray) -> np.ndarray:
        """For each position, the best cosine of the passage just before or after it in the same document."""
        last = len(self.chunks) - 1
        document = self.chunk_document[positions]
        before, after = positions - 1, positions + 1
        has_before = (before >= 0) & (self.chunk_document[np.maximum(before, 0)] == document)
        has_after = (after <= last) & (self.chunk_document[np.minimum(after, last)] == document)
        wanted = np.unique(np.concatenate([before[has_before], after[has_after]]))
        if not len(wanted):
            return np.full(len(positions), -1.0)
        cosine = (self.dense.vectors(wanted) @ query_vector).astype(np.float64)

        def of(neighbours: np.ndarray, has: np.ndarray) -> np.ndarray:
            return np.where(has, cosine[np.minimum(np.searchsorted(wanted, neighbours), len(wanted) - 1)], -1.0)

        return np.maximum(of(before, has_before), of(after, has_after))

    def section_words(self, section: tuple[str, ...]) -> set[str]:
        words = self._section_words.get(section)
        if words is None:
            words = set(self.tokenizer.tokens(" ".join(s for s in section if s != HEADER_SECTION)))
            self._section_words[section] = words
        return words

    def bigram_weights(self, grams: list[str]) -> dict[str, float]:
        n = self.bigram_bm25.size
        return {g: math.log(1 + (n - (df := self.bigram_bm25.document_frequency(g)) + 0.5) / (df + 0.5))
                for g in dict.fromkeys(grams)}

    def bigram_coverage(self, weights: dict[str, float], position: int, total: float) -> float:
        """IDF-weighted share of the question's bigrams found in the passage's text (and headings); ``total``
        is the weights' sum, taken once for all the candidates."""
        if total <= 0:
            return 0.0
        text = self._bigram_text.get(position)
        if text is None:
            # the documents' own characters, width-folded and lower-cased (Traditional text still matches
            # through the bigram BM25 index, which is fully normalised; this is only the coverage check)
            text = nfkc(WHITESPACE.sub("", self.chunks[position].context_text())).lower()
            if len(self._bigram_text) > 100_000:
                self._bigram_text.clear()
            self._bigram_text[position] = text
        return sum(w for g, w in weights.items() if g in text) / total

    def doc_prior(self, tokens: list[str], terms: list[str] | None = None) -> np.ndarray | None:
        """How much each document as a whole is about the query, in [0, 1] (None: one document).

        The larger of two: the document's BM25 over whole documents divided by the best, and its title
        match, the IDF-weighted share of the query's ``terms`` in its title.
        """
        if self.document_bm25 is None:
            return None
        body, title = self.document_scores(tokens, terms or [])
        return np.maximum(body, title) if terms else body

    def document_scores(self, tokens: list[str], terms: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per document: BM25 over whole documents as a share of the best (1 with a single document), and the
        title match of ``terms``."""
        body = share_of_best(self.document_bm25.scores(tokens)) if self.document_bm25 is not None else np.ones(1)
        return body, self.title_match(terms, len(self.document_ids))

    def title_match(self, terms: list[str], documents: int) -> np.ndarray:
        """Each document's IDF-weighted share of ``terms`` in its title."""
        weights = self.term_weights(terms)
        total = sum(weights.values())
        match = np.zeros(documents, dtype=np.float64)
        for term, weight in weights.items():
            having = self.title_documents.get(term)
            if having is not None:
                match[having] += weight
        return match / total if total > 0 else match

    def idf(self, token: str) -> float:
        n = self.bm25.size
        df = self.bm25.document_frequency(token)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def lexical_coverage(self, tokens: list[str], position: int) -> float:
        """IDF-weighted share of the query's terms present in the chunk at ``position``.

        Single characters are too ambiguous to count as evidence; they count only when the query has
        no longer term.
        """
        return self._shares(self.term_weights(tokens), self.chunk_tokens.words(position))[0]

    def evidence(self, terms: list[str], action: str | None, hits: list[Hit]) -> tuple[float, float, bool | None]:
        """Over ``hits``: the best lexical coverage, the best share of coined names, and whether one has the
        action (None without an action). Each passage's words are gathered once."""
        weights = self.term_weights(terms)
        lexical = named = 0.0
        action_found = None if action is None else False
        for hit in hits:
            words = self.chunk_tokens.words(hit.position)
            share, names_share = self._shares(weights, words)
            lexical, named = max(lexical, share), max(named, names_share)
            if action is not None:
                action_found = action_found or action in words
        return lexical, named, action_found

    def coverage(self, weights: dict[str, float], positions: np.ndarray) -> np.ndarray:
        """For each passage position, the weighted share of the terms among its words (``_shares``, from
        the BM25 index's lists of which passages have each word, which the passages' words built)."""
        total = sum(weights.values())
        share = np.zeros(len(positions), dtype=np.float64)
        if total <= 0:
            return share
        for term, weight in weights.items():
            share += np.where(self.bm25.contains(term, positions), weight, 0.0)
        return share / total

    def _shares(self, weights: dict[str, float], words: set[str]) -> tuple[float, float]:
        """The weighted share of the terms among ``words``, and of the coined names among them."""
        total = sum(weights.values())
        if total <= 0:
            return 0.0, 0.0
        present = [t for t in weights if t in words]
        return (sum(weights[t] for t in present) / total,
                sum(weights[t] for t in present if t in self.tokenizer.names) / total)

    def term_weights(self, tokens: list[str]) -> dict[str, float]:
        """Each distinct term's IDF; single characters only when the query has no longer term."""
        unique = list(dict.fromkeys(tokens))
        longer = [tok for tok in unique if len(tok) > 1]
        return {t: self.idf(t) for t in longer or unique}


def top_positions(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best positive scores, best first, ties by position; O(n), not a full sort.
    Only the passages above ``kth_floor`` (or, failing one, with a positive score) are partitioned."""
    floor = kth_floor(scores, k)
    candidates = np.flatnonzero(scores >= floor) if floor > 0 else np.flatnonzero(scores > 0)
    if len(candidates) > k:
        values = scores[candidates]
        cutoff = values[np.argpartition(-values, k - 1)[:k]].min()
        candidates = candidates[values >= cutoff]  # every tie at the cut, so the choice is by position
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k]


def kth_floor(scores: np.ndarray, k: int) -> float:
    """A score the ``k``-th best reaches: the ``k``-th best of the maxima of blocks of ``TOP_BLOCK`` scores
    (k different scores reach it). 0 when there are no more than k blocks. At a million passages a common
    word gives half of them a score, and partitioning all of those cost 4-5 ms a channel; the scores at or
    above this floor are a few hundred."""
    if len(scores) <= k * TOP_BLOCK:
        return 0.0
    maxima = np.maximum.reduceat(scores, np.arange(0, len(scores), TOP_BLOCK))
    return float(np.partition(maxima, len(maxima) - k)[len(maxima) - k])


def rank_of(positions: np.ndarray, values: np.ndarray) -> dict[int, int]:
    """1-based rank of each position by ``values`` (best first, ties by position); positions whose
    value is not positive are left out (that channel did not match them)."""
    order = np.lexsort((positions, -values))
    order = order[values[order] > 0]
    return dict(zip(positions[order].tolist(), range(1, len(order) + 1), strict=True))


def z_scores(cosine: np.ndarray, stats: dict | None) -> np.ndarray:
    """``index.calibration.z_score`` for many cosines at once."""
    if not stats:
        return np.zeros_like(cosine)
    return (cosine - stats["semantic_mean"]) / stats["semantic_std"]


def share_of_best(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    best = float(values.max()) if len(values) else 0.0
    return values / best if best > 0 else np.zeros_like(values)


def moved_first(hits: list[Hit], scores: np.ndarray, i: int) -> tuple[list[Hit], np.ndarray]:
    """The ranking with its ``i``-th hit (and score) put first, the others in their order."""
    order = [i, *(j for j in range(len(hits)) if j != i)]
    return [hits[j] for j in order], scores[order]


def names_in(text: str) -> set[str]:
    """The years (2019) and congress sessions (十九大 -> session:19) a text names."""
    names = {m.group(1) for m in YEAR.finditer(text)} | {f"20{m.group(1)}" for m in SHORT_YEAR.finditer(text)}
    for m in SESSION.finditer(text):
        number = cn_number(m.group(1) or m.group(2))
        if number:
            names.add(f"session:{number}")
    return names


def cn_number(text: str) -> int | None:
    """二十 -> 20, 十九 -> 19, 19 -> 19 (up to 99)."""
    if text.isdigit():
        return int(text)
    if "十" in text:
        tens, _, units = text.partition("十")
        value = (CN_DIGITS.get(tens, 0) if tens else 1) * 10 + (CN_DIGITS.get(units, 0) if units else 0)
        return value if (not tens or tens in CN_DIGITS) and (not units or units in CN_DIGITS) else None
    return CN_DIGITS.get(text) if len(text) == 1 else None
