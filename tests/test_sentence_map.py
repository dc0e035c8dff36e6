"""Sentence vectors pooled from the passage pass (index.sentence_map): where the sentences lie, which tokens
are theirs, that a build (``SENTENCE_VECTORS=pooled``, the default) with the shipped map embeds no sentence
and gets vectors near the embedded ones, that any other model, or ``embedded``, embeds them, and that an index
built the other way is rebuilt by ``index build --if-missing``."""

import shutil

import numpy as np
import pytest

from index.chunk import Chunk
from index.sentence_map import SentenceMap, fit, for_model, pool
from index.sentences import sentence_pieces, sentence_spans, sentence_texts
from index.store import IndexStore, IndexStoreError
from index.token_match import TokenVectors
from server import create_app
from tests.conftest import HashEmbedder


def chunk(text: str, position: int = 0) -> Chunk:
    return Chunk(f"c{position}", "doc", "某某办法", ("第一章 总则",), text, 0, len(text))


@pytest.fixture
def embedded_app(built_instance, tmp_path):
    """The shipped corpus indexed again with ``SENTENCE_VECTORS=embedded`` (passages from the embedding cache)."""
    instance = tmp_path / "embedded"
    shutil.copytree(built_instance, instance, symlinks=True)
    app = create_app({"INSTANCE_PATH": str(instance), "TESTING": True, "SENTENCE_VECTORS": "embedded"})
    with app.app_context():
        app.extensions["engine"].build()
    return app


def embedded_and_pooled(app) -> tuple[list[Chunk], np.ndarray, np.ndarray]:
    """The served index's chunks, its sentence vectors, and the same sentences embedded alone."""
    with app.app_context():
        engine = app.extensions["engine"]
        searcher = engine.current_index().searcher
        embedder = engine.embedder()
    chunks = searcher.chunks
    pooled = searcher.sentences.dense.vectors(list(range(searcher.sentences.size)))
    embedded = embedder.encode_passages([t for c in chunks for t in sentence_texts(c)])
    return chunks, pooled, embedded


def test_each_sentence_piece_is_found_where_it_lies_in_the_passage():
    text = "一是。加强党的全面领导和组织建设。 二是。推进干部队伍年轻化专业化。总之。"
    spans = sentence_spans(chunk(text))
    assert len(spans) == len(sentence_pieces(chunk(text))) == 2
    assert ["".join(text[a:z].split()) for a, z in spans] == sentence_pieces(chunk(text))
    assert sentence_spans(chunk("只有一句话，讲的是干部选拔任用的标准。")) == []


def test_the_onnx_model_names_the_characters_of_each_token_vector(app):
    with app.app_context():
        embedder = app.extensions["engine"].embedder()
    texts = [chunk("海燕归巢计划引进海外人才回乡创业。乡贤回归带来项目和资金。").context_text(),
             chunk("村干部任期三年。").context_text()]
    _, tokens = embedder.encode_passages_with_tokens(texts)
    spans = embedder.token_spans(texts)
    for text, vectors, where in zip(texts, tokens, spans, strict=True):
        assert len(where) == len(vectors.ids)
        assert (where[:, 0] <= where[:, 1]).all() and where[:, 1].max() <= len(text)
        assert (np.diff(where[:, 0]) >= 0).all()  # in the text's order
        covered = {i for a, z in where for i in range(a, z)}
        assert covered >= {i for i, ch in enumerate(text) if not ch.isspace()}


def test_a_sentence_pools_its_own_tokens_and_the_heading_pools_the_title_line():
    c = chunk("甲乙。丙丁戊己庚辛壬癸。子丑寅卯辰巳午未申酉。")
    body = len(c.context_text()) - len(c.text)
    # one token a character: the title line's, then the body's
    where = np.array([[i, i + 1] for i in range(len(c.context_text()))] + [[0, 0]], dtype=np.int64)
    rows = np.zeros((len(where), 3), dtype=np.float32)
    rows[:body, 0] = 1.0  # the title line's tokens point one way
    first, second = sentence_spans(c)
    rows[body + first[0]:body + first[1], 1] = 1.0
    rows[body + second[0]:body + second[1], 2] = 1.0
    rows[-1] = 5.0  # a special token belongs to no sentence
    means, head = pool(c, TokenVectors(np.arange(len(where)), rows), where, [first, second], np.zeros(3))
    assert head.tolist() == [1.0, 0.0, 0.0]
    assert means.tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    with pytest.raises(ValueError, match="token spans"):
        pool(c, TokenVectors(np.arange(3), rows[:3]), where, [first], np.zeros(3))


def test_the_shipped_map_fits_the_bundled_model_and_keeps_its_name(app, tmp_path):
    with app.app_context():
        embedder = app.extensions["engine"].embedder()
    shipped = for_model(embedder.name)
    assert shipped is not None and shipped.weights.shape == (3 * embedder.dimension + 1, embedder.dimension)
    assert for_model(embedder.name + "-another") is None
    shipped.save(tmp_path / "map.npz")
    again = SentenceMap.load(tmp_path / "map.npz")
    assert again is not None and again.model == shipped.model
    assert np.allclose(again.weights, shipped.weights, atol=1e-3)
    assert SentenceMap.load(tmp_path / "none.npz") is None


def test_a_build_pools_unless_asked_to_embed_and_comes_near_the_embedded_vectors(embedded_app, app):
    for built, kind in ((app, "pooled"), (embedded_app, "embedded")):
        with built.app_context():
            store = built.extensions["engine"].store
            assert store.manifest(store.current())["sentence_vectors"] == kind
            assert store.manifest(store.current())["counts"]["sentences"] > 50
    chunks, pooled, embedded = embedded_and_pooled(app)
    assert len(pooled) == len(embedded) > 50
    cosine = np.sum(pooled * embedded, axis=1)
    assert np.allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-3)
    assert cosine.mean() > 0.93 and np.percentile(cosine, 5) > 0.85
    # each pooled sentence is nearer its own embedded vector than its neighbours' in the same passage
    owners = np.repeat(np.arange(len(chunks)), [len(sentence_spans(c)) for c in chunks])
    nearest = [int(np.argmax(embedded[owners == owners[i]] @ pooled[i])) for i in range(len(pooled))]
    own = [i - int(np.flatnonzero(owners == owners[i])[0]) for i in range(len(pooled))]
    assert np.mean(np.array(nearest) == np.array(own)) > 0.9


def test_a_model_the_map_was_not_fitted_for_embeds_its_sentences(tmp_path):
    texts = ["第一条 为了规范村民委员会选举工作，制定本办法。第二条 村民委员会每届任期五年。",
             "第三条 选举工作由村民选举委员会主持。选举委员会由主任和委员组成。"]
    from index.ingest import clean

    doc = clean("\n".join(texts), doc_id="rules")
    store = IndexStore(tmp_path / "indexes")
    from tests.conftest import lexical_models

    version = store.build([doc], HashEmbedder(), models=lexical_models(), pooled_sentences=True)
    manifest = store.manifest(version)
    assert manifest["sentence_vectors"] == "embedded" and manifest["counts"]["sentences"] >= 2


def test_an_unknown_sentence_vectors_setting_stops_the_build_with_its_name(built_instance, tmp_path):
    instance = tmp_path / "odd"
    shutil.copytree(built_instance, instance, symlinks=True)
    app = create_app({"INSTANCE_PATH": str(instance), "TESTING": True, "SENTENCE_VECTORS": "pool"})
    serving = app.extensions["engine"].store.current()
    with app.app_context(), pytest.raises(IndexStoreError, match="SENTENCE_VECTORS"):
        app.extensions["engine"].build()
    assert app.extensions["engine"].store.current() == serving


def test_fitting_a_map_brings_pooled_vectors_nearer_the_embedded_ones(app):
    chunks, _, _ = embedded_and_pooled(app)
    with app.app_context():
        embedder = app.extensions["engine"].embedder()
    sample = [c for c in chunks if len(sentence_spans(c)) >= 2][:30]
    fitted, figures = fit(sample, embedder, ridge=1.0)
    assert fitted.model == embedder.name
    assert figures["sentences"] >= 60
    assert figures["cosine_after"] > figures["cosine_before"] + 0.01
    # least squares pulls its outputs together; the map spreads them as far apart as embedded sentences
    assert figures["closeness_mapped"] == pytest.approx(figures["closeness_embedded"], abs=0.002)


def test_build_if_missing_rebuilds_an_index_whose_sentence_vectors_a_build_no_longer_makes(embedded_app):
    """An index built with embedded sentences (before pooling became the default) keeps serving, and
    ``index build --if-missing`` (``make run``) rebuilds it as a build now would; then there is nothing to do."""
    app = create_app({"INSTANCE_PATH": embedded_app.instance_path, "TESTING": True})  # the default: pooled
    engine = app.extensions["engine"]
    with app.app_context():
        assert engine.current_index().manifest["sentence_vectors"] == "embedded"  # still served as it is
        assert engine.outdated_sentences() == "its sentence vectors are embedded; a build now makes them pooled"
    runner = app.test_cli_runner()
    result = runner.invoke(args=["index", "build", "--if-missing"])
    assert result.exit_code == 0, result.output
    assert "rebuilding: its sentence vectors are embedded" in result.output
    assert engine.store.manifest(engine.store.current())["sentence_vectors"] == "pooled"
    with app.app_context():
        assert engine.outdated_sentences() is None
    again = runner.invoke(args=["index", "build", "--if-missing"])
    assert again.exit_code == 0 and "nothing to do" in again.output, again.output
    # asked to embed, the pooled index is the outdated one
    embedding = create_app({"INSTANCE_PATH": embedded_app.instance_path, "TESTING": True,
                            "SENTENCE_VECTORS": "embedded"})
    with embedding.app_context():
        assert embedding.extensions["engine"].outdated_sentences() == (
            "its sentence vectors are pooled; a build now makes them embedded")
