"""Every passage's search tokens as numbers (index.chunk_tokens), and the BM25 index built from them."""

import numpy as np

from index.bm25 import BM25Index
from index.chunk_tokens import ChunkTokens

LISTS = [["党员", "权利", "党员"], [], ["义务", "党员"], ["村干部", "任期", "五年"], [], ["任期"]]


def test_the_lists_come_back_as_they_went_in(tmp_path):
    tokens = ChunkTokens.from_lists(LISTS)
    assert len(tokens) == len(LISTS)
    assert [tokens[i] for i in range(len(LISTS))] == LISTS
    assert tokens.words(0) == {"党员", "权利"} and tokens.words(1) == set()
    assert tokens.terms == ["党员", "权利", "义务", "村干部", "任期", "五年"]  # each once, by first appearance
    tokens.save(tmp_path / "words")
    again = ChunkTokens.load(tmp_path / "words")
    assert [again[i] for i in range(len(LISTS))] == LISTS


def test_grouped_gathers_each_groups_passages_in_their_order():
    tokens = ChunkTokens.from_lists(LISTS)
    group = np.array([1, 0, 1, 2, 2, 0])
    ids, offsets = tokens.grouped(group, 4)
    gathered = [[tokens.terms[i] for i in ids[offsets[g]:offsets[g + 1]]] for g in range(4)]
    assert gathered == [["任期"], ["党员", "权利", "党员", "义务", "党员"], ["村干部", "任期", "五年"], []]


def test_bm25_from_the_numbers_scores_as_the_lists_do_to_the_bit():
    rng = np.random.default_rng(3)
    words = [f"词{i}" for i in range(60)]
    lists = [[words[j] for j in rng.integers(0, 60, rng.integers(0, 30))] for _ in range(80)]
    lists[5] = lists[6] = []  # empty passages side by side, as build's placeholder handles them
    tokens = ChunkTokens.from_lists(lists)
    plain, numbered = BM25Index.build(lists), BM25Index.from_ids(tokens.ids, tokens.offsets, tokens.terms)
    assert numbered.size == plain.size == 80
    for query in (["词1"], ["词3", "词7", "词3"], words[10:25], ["没有的词"]):
        np.testing.assert_array_equal(numbered.scores(query), plain.scores(query))
        assert numbered.document_frequency(query[0]) == plain.document_frequency(query[0])
