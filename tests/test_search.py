"""Fusion and BM25 scoring, checked against reference formulas."""

import math

import numpy as np
import pytest

from index.bm25 import BM25Index
from index.chunk import Chunk
from index.dense import DenseIndex
from index.search import HybridSearcher, top_positions
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


def make_searcher(tokenizer, weight: float, texts=DOCS) -> HybridSearcher:
    chunks = [Chunk(f"d#{i}", "d", "测试文件", (), t, 0, len(t)) for i, t in enumerate(texts)]
    tokens = [tokenizer.tokens(t) for t in texts]
    embedder = HashEmbedder()
    dense = DenseIndex.build(embedder.encode_passages(texts))
    return HybridSearcher(chunks, tokens, BM25Index.build(tokens), dense, embedder, tokenizer, dense_weight=weight)


def test_bm25_matches_reference(tokenizer):
    corpus = [tokenizer.tokens(t) for t in DOCS]
    index = BM25Index.build(corpus)
    for query in ["带病提拔制度", "海燕归巢人才", "组织力评价体系 考核"]:
        q = tokenizer.tokens(query)
        np.testing.assert_allclose(index.scores(q), reference_bm25(corpus, q), rtol=1e-5)


def test_unknown_terms_score_zero(tokenizer):
    index = BM25Index.build([tokenizer.tokens(t) for t in DOCS])
    assert not index.scores(["红烧肉"]).any()
    assert index.document_frequency("制度") == 2


def test_weight_zero_ranks_by_bm25_and_one_by_dense(tokenizer):
    query = "海燕归巢"
    lexical = make_searcher(tokenizer, 0.0).search(query, k=4)
    assert lexical.hits[0].chunk.chunk_id == "d#1"
    semantic = make_searcher(tokenizer, 1.0).search(query, k=4)
    cosines = [h.dense for h in semantic.hits]
    assert cosines == sorted(cosines, reverse=True)


def test_fused_scores_are_bounded_and_carry_both_ranks(tokenizer):
    result = make_searcher(tokenizer, 0.3).search("干部考核制度", k=4)
    assert all(0.0 <= h.score <= 1.0 for h in result.hits)
    top = result.hits[0]
    assert top.chunk.chunk_id == "d#2" and top.bm25_rank == 1 and top.dense_rank is not None


def test_ties_break_on_index_position(tokenizer):
    searcher = make_searcher(tokenizer, 0.3, texts=["相同的内容。"] * 5)
    result = searcher.search("相同的内容", k=5)
    assert [h.position for h in result.hits] == [0, 1, 2, 3, 4]
    assert len({h.score for h in result.hits}) == 1


def test_lexical_coverage(tokenizer):
    searcher = make_searcher(tokenizer, 0.3)
    tokens = tokenizer.tokens("海燕归巢计划")
    assert searcher.lexical_coverage(tokens, 1) == pytest.approx(1.0)
    assert searcher.lexical_coverage(tokens, 0) == 0.0
    assert searcher.lexical_coverage([], 0) == 0.0


def test_document_prior_prefers_the_document_about_the_question(tokenizer):
    shared = "完善干部考核评价机制，强化考核结果运用。"
    texts = [("economy", shared), ("economy", "扩大内需，稳定外贸外资。"), ("economy", "推进财政税收改革。"),
             ("cadres", shared), ("cadres", "干部考核要注重平时考核。"), ("cadres", "严把干部选拔任用关。")]
    chunks = [Chunk(f"{doc}#{i}", doc, "工作要点", (), text, 0, len(text)) for i, (doc, text) in enumerate(texts)]
    tokens = [tokenizer.tokens(c.context_text()) for c in chunks]
    embedder = HashEmbedder()
    dense = DenseIndex.build(embedder.encode_passages([c.context_text() for c in chunks]))

    def top(prior_weight: float):
        searcher = HybridSearcher(chunks, tokens, BM25Index.build(tokens), dense, embedder, tokenizer,
                                  doc_prior_weight=prior_weight)
        return searcher.search("干部考核评价", k=3).hits

    # without the prior the two copies tie and the earlier one wins; with it, the document about cadres
    assert top(0.0)[0].chunk.chunk_id == "economy#0"
    hits = top(0.1)
    assert hits[0].chunk.chunk_id == "cadres#3"
    assert hits[0].doc_prior == 1.0 and 0 <= hits[1].doc_prior < 1.0


def test_document_prior_follows_a_document_named_by_its_title(tokenizer):
    # the speech never says 讲话 in its body; the other document says it often but is not a speech
    texts = [("rules", "规章制度", "领导干部要带头讲政治，发表讲话要严谨，讲话稿要审核。"),
             ("rules", "规章制度", "重要讲话精神要及时传达学习。"),
             ("speech", "在全市组织部长会议上的讲话", "陈玲玲，2018年2月6日，讲于全市组织部长会议。"),
             ("speech", "在全市组织部长会议上的讲话", "抓紧研究专业化干部队伍建设办法。")]
    chunks = [Chunk(f"{doc}#{i}", doc, title, (), text, 0, len(text)) for i, (doc, title, text) in enumerate(texts)]
    tokens = [tokenizer.tokens(t) for _, _, t in texts]  # bodies only: the title counts through the prior
    embedder = HashEmbedder()
    dense = DenseIndex.build(embedder.encode_passages([t for _, _, t in texts]))
    searcher = HybridSearcher(chunks, tokens, BM25Index.build(tokens), dense, embedder, tokenizer)

    body_only = searcher.doc_prior(tokenizer.tokens("这篇讲话是谁讲的？"))
    assert body_only is not None and body_only[0] > body_only[1]  # by their bodies, the rules talk of 讲话
    prior = searcher.doc_prior(tokenizer.tokens("这篇讲话是谁讲的？"), tokenizer.terms("这篇讲话是谁讲的？"))
    assert prior is not None and prior[1] == 1.0
    hits = searcher.search("这篇讲话是谁讲的？", k=4).hits
    assert {h.chunk.doc_id: h.doc_prior for h in hits}["speech"] == 1.0
    # a question that names no title keeps the body's prior
    question = "专业化干部队伍"
    plain = searcher.doc_prior(tokenizer.tokens(question), tokenizer.terms(question))
    np.testing.assert_array_equal(plain, searcher.doc_prior(tokenizer.tokens(question)))


def test_one_document_has_no_prior(tokenizer):
    searcher = make_searcher(tokenizer, 0.3)
    assert searcher.doc_prior(tokenizer.tokens("带病提拔")) is None
    assert all(h.doc_prior == 0.0 for h in searcher.search("带病提拔").hits)


def test_top_positions_equals_a_stable_full_sort():
    rng = np.random.default_rng(1)
    for size, k in [(1000, 50), (30, 50), (500, 1)]:
        scores = np.round(rng.random(size) * 5, 1).astype(np.float32) - 1.0  # many ties, some <= 0
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
    np.testing.assert_allclose(ann.vectors([5, 7]), vectors[[5, 7]], atol=1e-6)  # reconstruct works
