"""Token matching (index.token_match): the stored token vectors, the two passage features, their cache
across re-indexes, and the real model's token vectors."""

import numpy as np
import pytest

import index.embed_cache as embed_cache
import index.token_match as token_match
from index.embed import gives_tokens
from index.embed_cache import CachedTokens, EmbeddingCache
from index.ingest import clean
from index.store import TOKENS_DIR, IndexStore, _embed
from index.token_match import (
    ListedTokens,
    TokenIndex,
    TokenVectors,
    passage_counts,
    principal_components,
    quantize,
    reduce,
)
from tests.conftest import HashEmbedder, lexical_models


def unit(*rows: list[float]) -> np.ndarray:
    m = np.array(rows, dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


# four "words" as orthogonal directions, a fifth between two of them
A, B, C, D = np.eye(4, dtype=np.float32)


def passages() -> list[TokenVectors]:
    return [
        TokenVectors(np.array([1, 2, 3]), np.vstack([A, B, C])),  # has every word of the question
        TokenVectors(np.array([1, 4]), np.vstack([A, D])),  # has only the common word
        TokenVectors(np.array([], dtype=np.int64), np.zeros((0, 4), dtype=np.float32)),  # no tokens at all
        TokenVectors(np.array([1, 2]), np.vstack([A, B])),  # lacks the rare word 3
    ]


def test_a_passage_that_has_every_word_of_the_question_matches_best():
    index = TokenIndex.build(passages())
    question = TokenVectors(np.array([1, 2, 3]), np.vstack([A, B, C]))
    mean, low = index.match(np.array([0, 1, 2, 3]), question)
    assert mean[0] == pytest.approx(1.0, abs=0.01) and low[0] == pytest.approx(1.0, abs=0.01)
    assert mean[0] > mean[3] > mean[1] and mean[2] == 0.0 and low[2] == 0.0
    assert low[3] <= 0.5 < low[0]  # the missing word is met by nothing: the lower quartile says so


def test_a_rare_word_weighs_more_than_a_common_one():
    """Word 1 is in every passage, word 3 in one: missing the rare word costs more than missing the common."""
    index = TokenIndex.build(passages())
    assert index.idf(np.array([3]))[0] > index.idf(np.array([1]))[0]
    assert index.idf(np.array([99]))[0] >= index.idf(np.array([3]))[0]  # a word no passage has: the rarest
    lacks_common = TokenIndex.build([TokenVectors(np.array([2, 3]), np.vstack([B, C]))] + passages()[1:])
    question = TokenVectors(np.array([1, 2, 3]), np.vstack([A, B, C]))
    lacks_rare = index.match(np.array([3]), question)[0][0]
    assert lacks_common.match(np.array([0]), question)[0][0] > lacks_rare


def test_int8_vectors_keep_the_cosines():
    rng = np.random.default_rng(3)
    vectors = unit(*rng.normal(size=(50, 384)).tolist())
    q, scales = quantize(vectors)
    back = q.astype(np.float32) * scales[:, None]
    assert q.dtype == np.int8 and np.abs((back * vectors).sum(axis=1) - 1.0).max() < 0.001


def test_a_saved_index_matches_as_the_built_one(tmp_path):
    index = TokenIndex.build(passages())
    index.save(tmp_path / "tokens")
    loaded = TokenIndex.load(tmp_path / "tokens")
    question = TokenVectors(np.array([2, 4]), unit([0, 1, 0, 1], [0, 0, 0, 1]))
    for got, want in zip(loaded.match(np.arange(4), question), index.match(np.arange(4), question), strict=True):
        assert np.allclose(got, want)
    assert loaded.passages == 4 and loaded.offsets.tolist() == [0, 3, 5, 5, 7]


def test_a_question_without_tokens_matches_nothing():
    index = TokenIndex.build(passages())
    empty = TokenVectors(np.array([], dtype=np.int64), np.zeros((0, 4), dtype=np.float32))
    mean, low = index.match(np.array([0, 1]), empty)
    assert mean.tolist() == [0.0, 0.0] and low.tolist() == [0.0, 0.0]


class CharTokens(HashEmbedder):
    """A stand-in that gives a token per character (storage tests: what is cached, what is re-embedded)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded: list[str] = []

    def encode_passages_with_tokens(self, texts, batch_size=32):  # type: ignore[no-untyped-def]
        self.embedded += texts
        return self.encode_passages(texts), [self._tokens(t) for t in texts]

    def encode_queries_with_tokens(self, texts):  # type: ignore[no-untyped-def]
        return self.encode_queries(texts), [self._tokens(t) for t in texts]

    def _tokens(self, text: str) -> TokenVectors:
        return TokenVectors(np.array([ord(c) for c in text], dtype=np.int64),
                            np.vstack([self._vec(c) for c in text]) if text else np.zeros((0, 16), np.float32))


def test_token_vectors_are_cached_with_the_passage_vectors(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    embedder = CharTokens()
    texts = ["干部选拔任用。", "短句。", "干部选拔任用。"]
    _, _, without_cache = _embed(texts, embedder, None, None, with_tokens=True)
    embedder.embedded.clear()
    _, _, first = _embed(texts, embedder, cache, None, with_tokens=True)
    assert embedder.embedded == ["短句。", "干部选拔任用。"]
    monkeypatch.setattr(embed_cache, "PASSAGE_BLOCK", 2)  # the cache read back a block of passages at a time
    vectors, embedded, again = _embed(texts + ["新的一句话。"], embedder, cache, None, with_tokens=True)
    assert embedded == 1 and embedder.embedded[-1] == "新的一句话。"  # only the new text goes to the model
    assert isinstance(again, CachedTokens) and isinstance(without_cache, ListedTokens)
    assert again.lengths().tolist() == [len(t) for t in texts + ["新的一句话。"]]
    held = without_cache.passages
    read = [t for block in again.blocks() for t in block]
    assert [len(block) for block in again.blocks()] == [2, 2]
    # every source holds the passages compact (int8 and a scale a token, a quarter of float32's memory), with
    # the same values: a build from the cache makes the same token index as the build that embedded them
    for text, cached, fresh in zip(texts, read[:3], held, strict=True):
        assert cached.vectors.dtype == fresh.vectors.dtype == np.int8
        np.testing.assert_array_equal(cached.ids, fresh.ids)
        np.testing.assert_array_equal(cached.vectors, fresh.vectors)
        np.testing.assert_array_equal(cached.scales, fresh.scales)
        np.testing.assert_allclose(fresh.floats(), embedder._tokens(text).vectors, atol=0.01)
    built, rebuilt = TokenIndex.build(held), TokenIndex.build(CachedTokens(cache, again.keys[:3], 16))
    np.testing.assert_array_equal(built.vectors, rebuilt.vectors)
    np.testing.assert_array_equal(built.scales, rebuilt.scales)
    np.testing.assert_array_equal(built.ids, rebuilt.ids)


def test_a_build_read_a_block_at_a_time_into_a_file_equals_one_held_at_once(tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    per_passage, keys = [], []
    for i, n in enumerate([0, *rng.integers(0, 90, 40).tolist(), 0]):
        vectors = rng.normal(size=(n, 384)).astype(np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
        per_passage.append(TokenVectors(rng.integers(0, 500, n).astype(np.int64), vectors).compact())
        keys.append(f"passage-{i}")
    keys[7] = keys[3]  # a text that repeats in the library
    per_passage[7] = per_passage[3]
    cache.put_tokens_many(dict(zip(keys, per_passage, strict=True)))
    monkeypatch.setattr(token_match, "BASIS_SAMPLE", 300)
    monkeypatch.setattr(token_match, "PROJECT_BLOCK", 400)
    monkeypatch.setattr(embed_cache, "PASSAGE_BLOCK", 6)
    held = TokenIndex.build(per_passage)
    streamed = TokenIndex.build(CachedTokens(cache, keys, 384), directory=tmp_path / "tokens")
    assert isinstance(streamed.vectors, np.memmap)
    for name in ("vectors", "scales", "ids", "offsets", "mean", "basis"):
        np.testing.assert_array_equal(getattr(streamed, name), getattr(held, name))
    streamed.save(tmp_path / "tokens")
    loaded = TokenIndex.load(tmp_path / "tokens")
    np.testing.assert_array_equal(np.asarray(loaded.vectors), held.vectors)
    np.testing.assert_array_equal(loaded.ids, held.ids)


def test_a_build_keeps_every_passages_token_vectors(tmp_path):
    store = IndexStore(tmp_path / "indexes")
    text = "干部条例\n\n第一章 总则\n\n第一条 为了加强干部队伍建设，制定本条例。\n\n第二条 选拔任用干部必须坚持党管干部原则。"
    embedder = CharTokens()
    version = store.build([clean(text, "rules")], embedder, models=lexical_models())
    assert (store.root / version / TOKENS_DIR).is_dir()
    loaded = store.load(embedder, version, models=lexical_models())
    searcher = loaded.searcher
    assert searcher.token_index is not None and searcher.token_index.passages == len(searcher.chunks)
    assert loaded.manifest["counts"]["tokens"] == sum(len(c.context_text()) for c in searcher.chunks)
    # an embedder without token vectors builds and serves without them: the features stay 0
    plain = HashEmbedder()
    other = IndexStore(tmp_path / "plain").build([clean(text, "rules")], plain, models=lexical_models())
    assert not (tmp_path / "plain" / other / TOKENS_DIR).exists()


def test_the_real_model_gives_the_question_words_tokens_from_the_same_pass(app):
    with app.app_context():
        engine = app.extensions["engine"]
        embedder = engine.embedder()
        searcher = engine.current_index().searcher
    assert gives_tokens(embedder) and searcher.token_index is not None
    text = "怎样防止干部带病提拔"
    vectors, tokens = embedder.encode_queries_with_tokens([text])
    assert float(vectors[0] @ embedder.encode_queries([text])[0]) > 0.9999
    # the question's own tokens only: no <s>, no "query:" prefix, no </s>
    ids = embedder.tokenizer.encode(embedder.query_prefix + text).ids
    assert tokens[0].ids.tolist() == ids[1 + len(embedder.tokenizer.encode(embedder.query_prefix,
                                                                          add_special_tokens=False).ids):-1]
    assert np.allclose(np.linalg.norm(tokens[0].vectors, axis=1), 1.0, atol=1e-4)


def test_the_passage_a_question_is_taken_from_matches_its_tokens_best(app):
    """A question made of one passage's clause finds its tokens there better than in the other candidates."""
    with app.app_context():
        searcher = app.extensions["engine"].current_index().searcher
    from index.rank import PASSAGE_FEATURES

    column = PASSAGE_FEATURES.index("token_match")
    rng = np.random.default_rng(5)
    best = 0
    picked = rng.choice([i for i, c in enumerate(searcher.chunks) if len(c.text) > 80], 8, replace=False)
    for position in picked:
        clause = searcher.chunks[position].text[20:50]
        rewrite = searcher.rewrite(clause)
        found = searcher.candidates(rewrite.text, searcher.query_vector(rewrite.text))
        here = found.features[np.flatnonzero(found.positions == position), column]
        assert (found.features[:, PASSAGE_FEATURES.index("token_match_gap")] <= 0).all()
        best += int(len(here) > 0 and here[0] == found.features[:, column].max())
    assert best >= 6


def test_a_subset_is_the_passages_alone():
    """fit.alone asks one document's questions of its passages alone: their tokens, their own IDF."""
    index = TokenIndex.build(passages())
    part = index.subset([0, 3])
    question = TokenVectors(np.array([1, 2, 3]), np.vstack([A, B, C]))
    assert part.passages == 2 and part.offsets.tolist() == [0, 3, 5]
    assert np.allclose(part.match(np.array([0, 1]), question)[0], index.match(np.array([0, 3]), question)[0],
                       atol=0.05)
    assert part.idf(np.array([1]))[0] < index.idf(np.array([4]))[0]


def test_a_build_in_blocks_matches_stacking_every_token(monkeypatch):
    rng = np.random.default_rng(5)
    per_passage = []
    for n in [0, *rng.integers(0, 90, 60).tolist(), 0]:
        vectors = rng.normal(size=(n, 384)).astype(np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
        per_passage.append(TokenVectors(rng.integers(0, 500, n).astype(np.int64), vectors))
    monkeypatch.setattr(token_match, "BASIS_SAMPLE", 700)  # a sample of every k-th token, k > 1
    monkeypatch.setattr(token_match, "PROJECT_BLOCK", 500)  # several blocks
    stacked = np.vstack([t.vectors for t in per_passage])
    mean, basis = principal_components(stacked[:: len(stacked) // 700], 192)
    vectors, scales = quantize(reduce(stacked, mean, basis))
    built = TokenIndex.build(per_passage)
    assert len(stacked) // 700 > 1 and len(stacked) > 3 * 500
    np.testing.assert_array_equal(built.mean, mean)
    np.testing.assert_array_equal(built.basis, basis)
    # a block's product may take another BLAS kernel than the whole stack's: equal to float32 rounding, so a
    # scale may differ in its last bit and a quantized value by one step at a rounding boundary
    np.testing.assert_allclose(built.scales, scales, rtol=1e-5)
    assert np.abs(built.vectors.astype(np.int16) - vectors.astype(np.int16)).max() <= 1
    assert np.mean(built.vectors == vectors) > 0.999
    assert built.offsets[-1] == len(stacked) and built.passages == len(per_passage)


def test_the_principal_directions_are_the_svds():
    rng = np.random.default_rng(6)
    sample = rng.normal(size=(3000, 64)) @ rng.normal(size=(64, 64))
    mean, basis = principal_components(sample.astype(np.float32), 16)
    _, _, directions = np.linalg.svd(sample.astype(np.float32).astype(np.float64) - mean.astype(np.float64),
                                     full_matrices=False)
    np.testing.assert_allclose(np.abs((basis * directions[:16].T).sum(axis=0)), 1.0, atol=1e-5)  # same up to sign
    np.testing.assert_allclose(basis.T @ basis, np.eye(16), atol=1e-5)
    assert (basis[np.abs(basis).argmax(axis=0), np.arange(16)] > 0).all()  # a fixed sign


def test_passage_counts_count_each_passage_once():
    rng = np.random.default_rng(7)
    lengths = [0, *rng.integers(0, 40, 50).tolist(), 0]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = rng.integers(0, 60, int(offsets[-1])).astype(np.int64)  # repeats within a passage, too
    known, counts = passage_counts(ids, offsets)
    expected: dict[int, int] = {}
    for i in range(len(lengths)):
        for token in set(ids[offsets[i]:offsets[i + 1]].tolist()):
            expected[token] = expected.get(token, 0) + 1
    assert known.tolist() == sorted(expected)
    assert counts.tolist() == [expected[t] for t in sorted(expected)]
    assert [a.tolist() for a in passage_counts(np.zeros(0, np.int64), np.array([0, 0]))] == [[], []]
