"""Candidates, features and the learned ranking; BM25 scoring checked against a reference formula."""

import math

import faiss
import numpy as np
import pytest

from bot.fit import initial_models
from index.bm25 import BM25Index
from index.calibration import everyday_questions
from index.chunk import Chunk
from index.dense import DenseIndex
from index.rank import PASSAGE_FEATURES, LearnedModels, LinearModel
from index.search import HybridSearcher, figure_missing, names_in, top_positions
from index.synonyms import Synonyms
from index.tokenize import Tokenizer
from tests.conftest import HashEmbedder

DOCS = [
    "坚决防止带病提拔，落实凡提四必制度。",
    "实施海燕归巢计划，引进海外人才。",
    "推动干部能上能下，健全考核制度。",
    "基层党建要抓好组织力评价体系。",
]


def reference_bm25(corpus: list[list[str]], query: list[str], k1: float = 1.5, b: float = 0.75) -> list[float]:
    """Lucene BM25 written out plainly (bm25s's default variant)."""
    n = len(corpus)
    avgdl = sum(len(d) for d in corpus) / n
    scores = []
    for doc in corpus:
        s = 0.0
        for term in set(query):
            df = sum(1 for d in corpus if term in d)
            if df == 0:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = doc.count(term)
            s += idf * tf / (tf + k1 * (1 - b + b * len(doc) / avgdl))  # Lucene drops (k1 + 1)
        scores.append(s)
    return scores


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(["凡提四必", "海燕归巢"])


def ranker(**weights: float) -> LearnedModels:
    """The shipped decision models with a hand-set ranker: tests about one feature weigh only that one."""
    base = initial_models()
    return LearnedModels(LinearModel.neutral(PASSAGE_FEATURES, weights), base.answer, base.scope, base.tiers)


def make_searcher(tokenizer, models: LearnedModels | None = None, texts=DOCS, chunks=None,
                  synonyms: Synonyms | None = None) -> HybridSearcher:
    chunks = chunks or [Chunk(f"d#{i}", "d", "测试文件", (), t, 0, len(t)) for i, t in enumerate(texts)]
    tokens = [tokenizer.tokens(c.context_text()) for c in chunks]
    embedder = HashEmbedder()
    dense = DenseIndex.build(embedder.encode_passages([c.context_text() for c in chunks]))
    return HybridSearcher(chunks, tokens, BM25Index.build(tokens), dense, embedder, tokenizer,
                          synonyms=synonyms or Synonyms(), models=models or initial_models())


def test_bm25_matches_reference(tokenizer):
    corpus = [tokenizer.tokens(t) for t in DOCS]
    index = BM25Index.build(corpus)
    for query in ["带病提拔制度", "海燕归巢人才", "组织力评价体系 考核"]:
        q = tokenizer.tokens(query)
        np.testing.assert_allclose(index.scores(q), reference_bm25(corpus, q), rtol=1e-5)


def test_unknown_terms_score_zero(tokenizer):
    index = BM25Index.build([tokenizer.tokens(t) for t in DOCS])
    assert not index.scores(["红烧肉"]).any()


def test_the_ranker_orders_by_the_features_it_weighs(tokenizer):
    query = "考核制度"
    by_bm25 = make_searcher(tokenizer, ranker(bm25=1.0)).search(query, k=4).hits
    assert by_bm25[0].bm25 == max(h.bm25 for h in by_bm25)
    by_dense = make_searcher(tokenizer, ranker(dense_gap=1.0)).search(query, k=4).hits
    assert by_dense[0].dense == max(h.dense for h in by_dense)
    assert [h.dense_rank for h in by_dense] == sorted(h.dense_rank for h in by_dense)


def test_scores_are_probabilities_and_carry_every_channels_rank(tokenizer):
    searcher = make_searcher(tokenizer)
    result = searcher.search("带病提拔", k=4)
    assert all(0.0 <= h.score <= 1.0 for h in result.hits)
    # a hit's score is its share of the ranker's softmax over every candidate of the question
    every, _ = searcher.rank(searcher.candidates("带病提拔", searcher.embedder.encode_queries(["带病提拔"])[0]))
    assert abs(sum(h.score for h in every) - 1.0) < 1e-4
    assert result.evidence["top_share"] == result.hits[0].score
    top = result.hits[0]
    assert "带病提拔" in top.chunk.text
    assert top.dense_rank is not None and top.bm25_rank == 1 and top.bigram_rank == 1


def test_ties_break_on_index_position(tokenizer):
    searcher = make_searcher(tokenizer, ranker(), texts=["相同的内容。"] * 3)
    result = searcher.search("相同的内容", k=3)
    assert [h.position for h in result.hits] == [0, 1, 2]
    assert len({h.score for h in result.hits}) == 1


def test_lexical_coverage(tokenizer):
    searcher = make_searcher(tokenizer)
    tokens = tokenizer.tokens("海燕归巢计划")
    assert searcher.lexical_coverage(tokens, 1) == pytest.approx(1.0)
    assert searcher.lexical_coverage(tokens, 0) == 0.0
    assert searcher.lexical_coverage([], 0) == 0.0


def test_coverage_from_the_bm25_lists_equals_the_passages_words(tokenizer):
    searcher = make_searcher(tokenizer)
    positions = np.arange(len(searcher.chunks))
    for question in ("海燕归巢计划是做什么的", "怎样防止干部带病提拔", "不在任何段落里的词语", "计划"):
        weights = searcher.term_weights(tokenizer.terms(question))
        expected = [searcher._shares(weights, set(searcher.chunk_tokens[p]))[0] for p in positions]
        np.testing.assert_allclose(searcher.coverage(weights, positions), expected, rtol=0, atol=1e-12)
        assert searcher.coverage(weights, positions[::-1]).tolist() == searcher.coverage(weights, positions)[::-1].tolist()
    assert searcher.bm25.contains("海燕", np.array([], dtype=np.int64)).shape == (0,)


def test_the_bigram_channel_finds_a_mistyped_name(tokenizer):
    # 海艳归巢 (a homophone typo) is no word jieba knows: the word channel misses, the bigram 归巢 matches
    searcher = make_searcher(tokenizer, ranker(bigram=1.0))
    assert not searcher.bm25.scores(tokenizer.tokens("海艳归巢")).any()
    hit = searcher.search("海艳归巢是什么", k=1).hits[0]
    assert "海燕归巢" in hit.chunk.text and hit.bigram_rank == 1


def test_synonyms_rewrite_the_question_for_every_channel(tokenizer):
    synonyms = Synonyms([("凡提四必", ["提拔前四项必查"])])
    searcher = make_searcher(tokenizer, ranker(bm25=1.0), synonyms=synonyms)
    result = searcher.search("提拔前四项必查是怎么回事", k=1)
    assert result.rewritten.startswith("凡提四必") and result.replaced == (("提拔前四项必查", "凡提四必"),)
    assert "凡提四必" in result.hits[0].chunk.text and result.lexical == pytest.approx(1.0)


def two_documents(tokenizer, models=None):
    shared = "完善干部考核评价机制，强化考核结果运用。"
    texts = [("economy", "2019年经济工作", shared), ("economy", "2019年经济工作", "扩大内需，稳定外贸外资。"),
             ("cadres", "2022年干部工作要点", shared), ("cadres", "2022年干部工作要点", "严把干部选拔任用关。")]
    chunks = [Chunk(f"{doc}#{i}", doc, title, (), text, 0, len(text)) for i, (doc, title, text) in enumerate(texts)]
    return make_searcher(tokenizer, models, chunks=chunks)


def feature(searcher: HybridSearcher, question: str, name: str) -> dict[str, float]:
    """``name`` for each candidate of ``question``, by chunk id."""
    text = searcher.tokenizer.normalize(question)
    found = searcher.candidates(text, searcher.embedder.encode_queries([text])[0])
    column = PASSAGE_FEATURES.index(name)
    return {searcher.chunks[int(p)].chunk_id: float(found.features[i, column]) for i, p in enumerate(found.positions)}


def test_a_question_that_names_a_year_pins_its_document(tokenizer):
    searcher = two_documents(tokenizer, ranker(bm25=1.0, doc_named=1.0, doc_named_other=-1.0))
    named = feature(searcher, "2022年干部考核评价", "doc_named")
    assert named["cadres#2"] == 1.0 and named["economy#0"] == 0.0
    assert feature(searcher, "2022年干部考核评价", "doc_named_other")["economy#0"] == 1.0
    assert feature(searcher, "干部考核评价", "doc_named") == dict.fromkeys(named, 0.0)
    # the same sentence in both documents: the named year decides, either way round
    assert searcher.search("2022年干部考核评价", k=1).hits[0].chunk.chunk_id == "cadres#2"
    assert searcher.search("2019年干部考核评价", k=1).hits[0].chunk.chunk_id == "economy#0"


def test_a_series_answers_from_its_newest_document_unless_a_year_is_named(tokenizer):
    """economy (2019) is an older report of the series whose newest is cadres (2022): a question naming no
    year gets the newest one's passage first when it is within the margin of the older one's."""
    searcher = two_documents(tokenizer, ranker(bm25=4.0, doc_named=1.0, doc_named_other=-1.0))
    searcher.newest = {"economy": "cadres"}
    assert searcher.search("干部考核评价", k=1).hits[0].chunk.chunk_id == "cadres#2"
    searcher.newest = {"cadres": "economy"}  # either way round: the same sentence, the newest goes first
    assert searcher.search("干部考核评价", k=1).hits[0].chunk.chunk_id == "economy#0"
    assert searcher.search("2022年干部考核评价", k=1).hits[0].chunk.chunk_id == "cadres#2"
    searcher.newest = {"economy": "cadres"}
    assert searcher.search("2019年干部考核评价", k=1).hits[0].chunk.chunk_id == "economy#0"
    assert searcher.search("19年干部考核评价", k=1).hits[0].chunk.chunk_id == "economy#0"
    assert searcher.search("扩大内需稳定外贸", k=1).hits[0].chunk.chunk_id == "economy#1"  # not near: kept


def test_a_year_naming_one_document_of_a_series_puts_it_first(tokenizer):
    """The ranker here prefers the document a question does not name; within a series the named one
    still goes first, and outside one the ranker keeps its order."""
    searcher = two_documents(tokenizer, ranker(bm25=4.0, doc_named=-1.0, doc_named_other=1.0))
    assert searcher.search("2022年干部考核评价", k=1).hits[0].chunk.chunk_id == "economy#0"  # no series
    searcher.newest = {"economy": "cadres"}
    assert searcher.series_of("economy") == searcher.series_of("cadres") == {"economy", "cadres"}
    assert searcher.search("2022年干部考核评价", k=1).hits[0].chunk.chunk_id == "cadres#2"
    assert searcher.search("19年干部考核评价", k=1).hits[0].chunk.chunk_id == "economy#0"
    assert searcher.search("2035年干部考核评价", k=2).hits[0].chunk.chunk_id == "cadres#2"  # names no document


def test_a_question_naming_a_place_gets_that_places_enactment_first(tokenizer):
    """Two cities' enactments of one regulation; 济南's says more of the question's words, so the ranker puts
    it first even for a question naming 青岛. Naming 青岛 gets 青岛's passage first; naming neither city, or
    a place only an unrelated regulation's title has, keeps the ranker's order."""
    shared = "物业服务收费实行政府指导价和市场调节价。"
    texts = [("jinan", "济南市物业管理条例", shared + "物业服务收费定价应当公开，物业服务收费标准定价合理。"),
             ("qingdao", "青岛市物业管理条例", shared),
             ("dogs", "上海市养犬管理条例", "养犬人应当为犬只办理养犬登记。")]
    chunks = [Chunk(f"{doc}#{i}", doc, title, (), text, 0, len(text)) for i, (doc, title, text) in enumerate(texts)]
    searcher = make_searcher(tokenizer, ranker(bm25=1.0), chunks=chunks)
    first = lambda question: searcher.search(question, k=2).hits[0].chunk.doc_id  # noqa: E731
    assert first("物业服务收费怎么定价") == "jinan"
    assert first("青岛物业服务收费怎么定价") == "qingdao"
    assert first("在济南，物业服务收费怎么定价") == "jinan"
    assert first("上海物业服务收费怎么定价") == "jinan"  # 上海's regulation is another one
    assert set(searcher.document_place) == {"jinan", "qingdao"}  # a title no other place enacted: no place


def test_a_report_the_library_lacks_is_found_missing(tokenizer):
    texts = [("r2019", "2019年政府工作报告", "今年经济社会发展的主要预期目标是：国内生产总值增长6%－6.5%。"),
             ("r2022", "2022年政府工作报告", "今年发展主要预期目标是：国内生产总值增长5.5%左右。"),
             ("news", "2023年全国组织工作会议召开", "会议强调，不断提高组织工作质量。")]
    chunks = [Chunk(f"{doc}#{i}", doc, title, (), text, 0, len(text)) for i, (doc, title, text) in enumerate(texts)]
    searcher = make_searcher(tokenizer, chunks=chunks)
    assert searcher.missing_document("2023年政府工作报告定的增长目标") == "2023年政府工作报告"  # 2023: only news
    assert searcher.missing_document("十八大报告提出了什么") == "十八大报告"
    assert searcher.missing_document("19年政府工作报告的增长目标") is None
    assert searcher.missing_document("2022年的政府工作报告怎么说") is None
    assert searcher.missing_document("2023年经济增长目标") is None  # a year, not a report: the ranking decides
    assert searcher.search("2023年政府工作报告定的增长目标").missing == "2023年政府工作报告"


def test_a_document_named_by_its_title_earns_the_title_feature(tokenizer):
    searcher = two_documents(tokenizer)
    title = feature(searcher, "干部工作要点里怎么说考核", "doc_title")
    assert title["cadres#2"] > 0.5 > title["economy#0"]


@pytest.mark.parametrize("text,names", [
    ("党的十九大提出了什么", {"session:19"}), ("二十大报告", {"session:20"}), ("19大", {"session:19"}),
    ("中国共产党第二十次全国代表大会", {"session:20"}), ("2019年政府工作报告", {"2019"}),
    ("第十三届全国人民代表大会", set()), ("党员的义务", set()), ("12345热线", set()),
    ("18年起电费降多少", {"2018"}), ("2017年3月", {"2017"}), ("80年代", set()), ("工作满5年", set()),
])
def test_names_in(text, names):
    assert names_in(text) == names


def test_one_document_is_the_best_document_for_every_question(tokenizer):
    searcher = make_searcher(tokenizer)
    assert searcher.doc_prior(tokenizer.tokens("带病提拔")) is None
    assert set(feature(searcher, "带病提拔", "doc_bm25").values()) == {1.0}
    assert set(feature(searcher, "带病提拔", "doc_dense_gap").values()) == {0.0}
    assert all(h.doc_prior == 0.0 for h in searcher.search("带病提拔").hits)


def test_everyday_chatter_is_closer_to_the_everyday_questions(tokenizer):
    searcher = make_searcher(tokenizer)
    chatter = searcher.search(everyday_questions()[0]).evidence["everyday_gap"]
    assert chatter >= 0  # the question is one of them
    assert searcher.search("凡提四必 带病提拔").evidence["everyday_gap"] < chatter


def test_personal_errands_are_closer_to_the_errand_questions(tokenizer):
    searcher = make_searcher(tokenizer)
    errand = searcher.search("我社保断缴了几个月 还能补交吗 在哪办").evidence["errand_gap"]
    policy = searcher.search("怎样防止干部带病提拔").evidence["errand_gap"]
    assert errand > 0 > policy


def test_the_question_s_wording_is_read_as_the_member_wrote_it(tokenizer):
    assert make_searcher(tokenizer).search("党员有哪些权利").evidence["wording"] == 0.0  # no wording model
    searcher = make_searcher(tokenizer, models=LearnedModels.load(), synonyms=Synonyms([("主要负责人", ["一把手"])]))
    wording = searcher.models.wording
    assert wording is not None
    chatter = searcher.search("周末带孩子去哪儿玩比较好").evidence["wording"]
    policy = searcher.search("党员干部一把手有什么要求")
    assert "主要负责人" in policy.rewritten  # searched in the documents' word, worded as the member wrote it
    assert chatter < 0 < policy.evidence["wording"]
    assert policy.evidence["wording"] == wording.log_odds([tokenizer.normalize("党员干部一把手有什么要求")])[0]


def test_top_positions_equals_a_stable_full_sort():
    rng = np.random.default_rng(1)
    for size, k in [(1000, 50), (30, 50), (500, 1)]:
        scores = np.round(rng.random(size) * 5, 1).astype(np.float32) - 1.0  # many ties, some <= 0
        expected = np.argsort(-scores, kind="stable")[:k]
        expected = expected[scores[expected] > 0]
        np.testing.assert_array_equal(top_positions(scores, k), expected)


def test_top_positions_of_a_large_library_equals_a_stable_full_sort():
    """Above 50 blocks of scores the partition starts from the k-th best block maximum: still every tie at
    the cut (copies of one passage score alike), still no passage with a zero score."""
    rng = np.random.default_rng(2)
    base = np.round(rng.random(20_000) * 8, 2).astype(np.float32) * (rng.random(20_000) < 0.4)
    for scores in (np.tile(base, 10), np.concatenate([np.zeros(150_000, np.float32), base[:100]]),
                   np.zeros(200_000, np.float32)):
        for k in (1, 10, 50, 500):
            expected = np.argsort(-scores, kind="stable")[:k]
            expected = expected[scores[expected] > 0]
            np.testing.assert_array_equal(top_positions(scores, k), expected)


def test_large_corpora_get_an_inverted_file_index_close_to_exact():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(50, 32))
    vectors = (centres[rng.integers(0, 50, 6000)] + rng.normal(scale=0.3, size=(6000, 32))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact, ann = DenseIndex.build(vectors), DenseIndex.build(vectors, exact_limit=1000)
    assert exact.kind == "exact" and ann.kind.startswith("IVF")
    found = []
    for query in vectors[:50]:
        truth = set(exact.search(query, 10)[0].tolist())
        found.append(len(truth & set(ann.search(query, 10)[0].tolist())) / 10)
    assert np.mean(found) >= 0.95
    np.testing.assert_allclose(ann.vectors([5, 7]), vectors[[5, 7]], atol=5e-4)  # reconstruct works (fp16)


def test_an_inverted_file_index_returns_exact_cosines_and_survives_a_reload(tmp_path):
    """The scan's candidates are re-scored with the stored fp16 vectors: what it returns is ordered by the
    true cosine; an index saved and mapped back searches the same, and one of the earlier kind (an fp16
    inverted file without the fast scan) still loads and searches."""
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(40, 64))
    vectors = (centres[rng.integers(0, 40, 5000)] + rng.normal(scale=0.4, size=(5000, 64))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ann = DenseIndex.build(vectors, exact_limit=1000)
    assert "refine" in ann.kind
    ann.save(tmp_path)
    loaded = DenseIndex.load(tmp_path)
    assert loaded.kind == ann.kind
    for query in vectors[100:120] + rng.normal(scale=0.05, size=(20, 64)).astype(np.float32):
        ids, scores = ann.search(query, 10)
        np.testing.assert_allclose(scores, vectors[ids] @ query, atol=1e-3)
        assert np.all(np.diff(scores) <= 0)
        again_ids, again_scores = loaded.search(query, 10)
        np.testing.assert_array_equal(again_ids, ids)
        np.testing.assert_allclose(again_scores, scores, atol=1e-6)
    old = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(64), 64, 64, faiss.ScalarQuantizer.QT_fp16,
                                        faiss.METRIC_INNER_PRODUCT)
    old.train(vectors)
    old.add(vectors)
    faiss.write_index(old, str(tmp_path / "dense.faiss"))
    earlier = DenseIndex.load(tmp_path)
    assert earlier.kind.startswith("IVF 64 lists") and "refine" not in earlier.kind
    assert earlier.search(vectors[3], 1)[0][0] == 3
    np.testing.assert_allclose(earlier.vectors([3]), vectors[[3]], atol=5e-4)


def test_copies_of_passages_do_not_crowd_out_the_best_one():
    """A library may hold many copies of one passage (a notice reposted): they tie in the scan, and a small
    k's share of the scan's candidates could be copies of a wrong one. The refinement re-scores at least
    ``REFINE_MIN`` candidates, so the best cosine is found for one question as for many."""
    rng = np.random.default_rng(6)
    distinct = rng.normal(size=(300, 64)).astype(np.float32)
    distinct /= np.linalg.norm(distinct, axis=1, keepdims=True)
    ann = DenseIndex.build(np.tile(distinct, (40, 1)), exact_limit=1000)
    queries = distinct[:60] + rng.normal(scale=0.6, size=(60, 64)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    best = (queries @ distinct.T).max(axis=1)
    np.testing.assert_allclose(ann.best_scores(queries), best, atol=2e-3)
    for query, score in zip(queries, best, strict=True):
        np.testing.assert_allclose(ann.search(query, 5)[1], [score] * 5, atol=2e-3)  # five copies of the best

def test_vectors_are_kept_in_half_precision(tmp_path):
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(2000, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:20] + rng.normal(scale=0.05, size=(20, 384)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index = DenseIndex.build(vectors)
    index.save(tmp_path)
    assert (tmp_path / "dense.faiss").stat().st_size < vectors.nbytes * 0.55  # half the bytes of float32
    loaded = DenseIndex.load(tmp_path)
    for query in queries:
        ids, scores = loaded.search(query, 10)
        np.testing.assert_array_equal(ids, np.argsort(-(vectors @ query), kind="stable")[:10])
        np.testing.assert_allclose(scores, vectors[ids] @ query, atol=1e-4)
        np.testing.assert_allclose(loaded.vectors(ids.tolist()) @ query, vectors[ids] @ query, atol=1e-4)


@pytest.mark.parametrize("question, missing", [
    ("海燕归巢计划每年引进多少人", 1.0),  # a figure asked; the passage states none
    ("海燕归巢计划引进几名海外人才", 1.0),
    ("海燕归巢计划是做什么的", 0.0),  # no figure asked
    ("海燕归巢计划要做哪几件事", 0.0),  # 哪几 asks for a list, not a figure
])
def test_a_question_asking_for_a_figure_notes_a_first_passage_without_one(tokenizer, question, missing):
    searcher = make_searcher(tokenizer)
    result = searcher.search(question)
    assert "海燕归巢" in result.hits[0].chunk.text
    assert result.evidence["figure_missing"] == missing


def test_a_figure_in_the_first_passage_answers_a_figure_question(tokenizer):
    searcher = make_searcher(tokenizer, texts=["实施海燕归巢计划，每年引进海外人才200名。", "推动干部能上能下。"])
    assert searcher.search("海燕归巢计划每年引进多少人").evidence["figure_missing"] == 0.0
    searcher = make_searcher(tokenizer, texts=["海燕归巢计划实施三年，引进人才。", "推动干部能上能下。"])
    assert searcher.search("海燕归巢计划实施了几年").evidence["figure_missing"] == 0.0


def test_a_figure_asked_in_members_words_is_still_asked_after_the_rewrite(tokenizer):
    # the synonym rewrite turns the member's 多大岁数 into the documents' 年满: still a figure asked
    searcher = make_searcher(tokenizer, texts=["村民委员会由村民直接选举产生。", "推动干部能上能下。"],
                             synonyms=Synonyms([("年满", ["多大岁数"])]))
    result = searcher.search("多大岁数才能选村民委员会")
    assert result.rewritten == "年满才能选村民委员会" and result.evidence["figure_missing"] == 1.0

@pytest.mark.parametrize("question, passage, missing", [
    ("公务员一年能休几天年假", "第八十二条公务员按照国家规定享受休假。", True),  # an article number is no figure
    ("干部每年培训要多少学时", "（2023年10月15日）中共中央印发条例。", True),  # nor a date
    ("村干部补贴每月多少钱", "一是提高补贴标准，二是惠及3700多万人。", True),  # a figure, but not of money
    ("村干部补贴每月多少钱", "村干部基本报酬每月不低于3000元。", False),
    ("公务员多少岁退休", "男年满六十周岁退休。", False),
    ("多大岁数才能投票", "村民直接选举产生村民委员会。", True),
    ("受理比例要到多少", "综合窗口受理比例达到90%。", False),
    ("助学贷款利率是多少", "助学贷款惠及500万学生。", True),  # a figure, but not a share
    ("预备期要多久", "预备党员的预备期为一年。", False),
    ("二十大有多少名代表", "大会代表2296名。", False),
    ("选举要多少票才能当选", "获得过半数选票，始得当选。", False),  # a share of the votes is a figure
    ("GDP增长目标是多少", "国内生产总值增长5.5%左右。", False),  # a figure of no fixed kind: any figure
    ("海燕归巢计划是做什么的", "第一条为了引进人才。", False),  # no figure asked
])
def test_a_figure_of_the_kind_asked_is_looked_for_beyond_numbering_and_dates(question, passage, missing):
    assert figure_missing(question, passage) is missing


def test_neighbour_cosine_is_the_closer_neighbour_in_the_same_document(tokenizer):
    searcher = two_documents(tokenizer)
    query = searcher.query_vector("干部选拔任用")
    positions = np.arange(len(searcher.chunks))
    cosine = searcher.dense.vectors(positions) @ query
    expected = []
    for p in positions.tolist():
        near = [float(cosine[q]) for q in (p - 1, p + 1)
                if 0 <= q < len(positions) and searcher.chunks[q].doc_id == searcher.chunks[p].doc_id]
        expected.append(max(near, default=-1.0))
    np.testing.assert_allclose(searcher.neighbour_cosine(positions, query), expected, rtol=0, atol=1e-7)
    np.testing.assert_allclose(searcher.neighbour_cosine(positions[::-1], query), expected[::-1], rtol=0, atol=1e-7)


def test_best_scores_are_each_querys_first_search_score():
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for index in (DenseIndex.build(vectors), DenseIndex.build(vectors, exact_limit=1000)):
        queries = vectors[:40] + rng.normal(scale=0.1, size=(40, 32)).astype(np.float32)
        expected = [index.search(q, 1)[1][0] for q in queries]
        np.testing.assert_allclose(index.best_scores(queries), expected, rtol=0, atol=1e-6)
    assert DenseIndex.build(np.zeros((0, 32), dtype=np.float32)).best_scores(queries).tolist() == [0.0] * 40


def test_bm25_builds_the_scores_bm25s_builds_to_the_bit(tmp_path):
    """``score_matrix`` replaces bm25s's own build loops: every query scores every passage to the same bits,
    with repeated terms, empty passages and a term in every passage, and again after a save and a load."""
    import bm25s

    rng = np.random.default_rng(3)
    vocabulary = [f"词{i}" for i in range(300)]
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)
    corpus = [["的", *rng.choice(vocabulary, size=int(rng.integers(0, 30)), p=weights / weights.sum())]
              if i % 17 else [] for i in range(800)]
    ours = BM25Index.build(corpus)
    reference = bm25s.BM25()
    reference.index([tokens or ["\u0000"] for tokens in corpus], show_progress=False)
    ours.save(tmp_path)
    loaded = BM25Index.load(tmp_path, len(corpus))
    for _ in range(100):
        query = list(rng.choice(vocabulary, size=int(rng.integers(1, 12)))) + ["的", "红烧肉"]
        expected = np.asarray(reference.get_scores([t for t in query if t in reference.vocab_dict]), np.float32)
        assert ours.scores(query).tobytes() == expected.tobytes()
        assert loaded.scores(query).tobytes() == expected.tobytes()
    assert ours.document_frequency("的") == sum(1 for tokens in corpus if tokens)
    assert not BM25Index.build([]).scores(["的"]).any()
