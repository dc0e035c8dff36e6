"""Sentence vectors (index.sentences): which texts are embedded, how passages own them, and that the real
model finds a passage by one of its sentences."""

import numpy as np

from index.chunk import Chunk
from index.sentences import SentenceIndex, sentence_pieces, sentence_texts
from tests.conftest import HashEmbedder


def chunk(text: str, position: int = 0, section: tuple[str, ...] = ("一、总则",)) -> Chunk:
    return Chunk(f"c{position}", "doc", "某某办法", section, text, 0, len(text))


def test_each_sentence_is_embedded_with_the_title_and_innermost_heading():
    texts = sentence_texts(chunk("第一句讲的是干部选拔任用的标准。第二句讲的是考核评价的办法。",
                                 section=("第一章", "第二节 选拔")))
    assert texts == ["某某办法 第二节 选拔\n第一句讲的是干部选拔任用的标准。",
                     "某某办法 第二节 选拔\n第二句讲的是考核评价的办法。"]


def test_a_single_sentence_passage_has_no_sentence_vectors():
    assert sentence_texts(chunk("只有一句话，讲的是干部选拔任用的标准。")) == []


def test_short_pieces_join_the_next_sentence():
    texts = sentence_texts(chunk("一是。加强党的全面领导和组织建设。二是。推进干部队伍年轻化专业化。"))
    assert [t.split("\n")[1] for t in texts] == ["一是。加强党的全面领导和组织建设。", "二是。推进干部队伍年轻化专业化。"]


def three_passages() -> tuple[SentenceIndex, HashEmbedder]:
    """A passage of one sentence, one of two and one of three, indexed with the hash embedder."""
    chunks = [chunk("只有一句话，讲的是干部选拔任用的标准。", 0),
              chunk("第一句讲的是干部选拔任用的标准。第二句讲的是考核评价的办法。", 1),
              chunk("海燕归巢计划引进海外人才回乡创业。乡贤回归带来项目和资金。还有第三句话在这里。", 2)]
    embedder = HashEmbedder()
    return SentenceIndex.build(chunks, embedder.encode_passages, embedder.dimension), embedder


def test_passages_own_their_sentences_in_order():
    index, embedder = three_passages()
    assert index.size == 5 and index.offsets.tolist() == [0, 0, 2, 5]
    assert index.owner.tolist() == [1, 1, 2, 2, 2]
    query = embedder.encode_queries(["海燕归巢计划引进海外人才回乡创业。"])[0]
    found = index.search(query, 5)
    assert sorted(found.tolist()) == [1, 2] and found[0] == 2  # each passage once, nearest first
    passage = np.array([0.1, 0.2, 0.3])
    best = index.best_cosine(np.array([0, 1, 2]), query, passage)
    assert best[0] == 0.1  # no sentences: the passage's own cosine
    assert (best >= passage).all() and best[2] > best[1]
    assert index.nearest(2, query) == 0 and index.nearest(0, query) is None
    assert index.nearest(2, embedder.encode_queries(["还有第三句话在这里。"])[0]) == 2


def test_a_subset_keeps_the_chosen_passages_sentence_vectors_in_their_new_order():
    index, _ = three_passages()
    part = index.subset([2, 0])
    assert part.offsets.tolist() == [0, 3, 3] and part.owner.tolist() == [0, 0, 0]
    assert np.allclose(part.dense.vectors([0, 1, 2]), index.dense.vectors([2, 3, 4]))
    assert index.subset([0]).size == 0  # a single sentence passage alone: no sentence vectors


def test_a_document_searched_alone_keeps_the_librarys_sentence_vectors(app):
    """The fit's library of one document (``bot.fit.alone``) reads the sentence vectors the library was built
    with (pooled by default) rather than embedding its sentences again."""
    from bot.fit import alone

    with app.app_context():
        searcher = app.extensions["engine"].current_index().searcher
    doc_id = searcher.chunks[0].doc_id
    positions = [i for i, c in enumerate(searcher.chunks) if c.doc_id == doc_id]
    single = alone(searcher, doc_id)
    assert single.sentences.offsets.tolist() == searcher.sentences.subset(positions).offsets.tolist()
    assert np.allclose(single.sentences.dense.vectors(list(range(single.sentences.size))),
                       searcher.sentences.subset(positions).dense.vectors(list(range(single.sentences.size))))


def test_the_searcher_names_a_passage_by_its_sentence_nearest_the_question(app):
    with app.app_context():
        engine = app.extensions["engine"]
        searcher = engine.current_index().searcher
        embedder = engine.embedder()
    position = int(np.flatnonzero(np.diff(searcher.sentences.offsets) >= 3)[0])
    pieces = sentence_pieces(searcher.chunks[position])
    assert [f"{searcher.chunks[position].title} {searcher.chunks[position].section[-1]}\n{p}" for p in pieces] \
        == sentence_texts(searcher.chunks[position])
    vector = embedder.encode_queries([pieces[2]])[0]
    assert searcher.nearest_sentence(position, vector) == (pieces[2], False)
    assert searcher.nearest_sentence(position, embedder.encode_queries([pieces[0]])[0]) == (pieces[0], True)
    single = int(np.flatnonzero(np.diff(searcher.sentences.offsets) == 0)[0])  # one sentence: the passage itself
    assert searcher.nearest_sentence(single, vector) == (searcher.chunks[single].text.strip(), True)


def test_the_real_model_finds_a_passage_by_one_of_its_sentences(app):
    with app.app_context():
        engine = app.extensions["engine"]
        searcher = engine.current_index().searcher
        embedder = engine.embedder()
    owners = np.flatnonzero(np.diff(searcher.sentences.offsets) >= 3)[:6]
    assert len(owners) >= 4
    found_first = 0
    for position in owners:
        middle = sentence_texts(searcher.chunks[position])[1].split("\n", 1)[1]
        vector = embedder.encode_queries([middle])[0]
        found_first += int(searcher.sentences.search(vector, 5)[0] == position)
        passage_cosine = searcher.dense.vectors([int(position)]) @ vector
        sentence_cosine = searcher.sentences.best_cosine(np.array([position]), vector, passage_cosine)
        assert sentence_cosine[0] > passage_cosine[0]  # the sentence alone is closer than the whole passage
    assert found_first >= len(owners) - 1


def test_the_decision_sees_the_best_sentence_as_well_as_the_best_passage(app):
    """``sentence_z`` (an answer and scope feature) is the closeness of the nearest single sentence: for a question
    made of one sentence of a long passage it exceeds the passage's own ``semantic_z``."""
    with app.app_context():
        searcher = app.extensions["engine"].current_index().searcher
    position = int(np.flatnonzero(np.diff(searcher.sentences.offsets) >= 3)[0])
    middle = sentence_texts(searcher.chunks[position])[1].split("\n", 1)[1]
    evidence = searcher.search(middle).evidence
    assert evidence["sentence_z"] > evidence["semantic_z"]
    chatter = searcher.search("周末去哪里吃火锅比较好").evidence
    assert chatter["sentence_z"] >= chatter["semantic_z"] and chatter["sentence_z"] < evidence["sentence_z"] - 2
