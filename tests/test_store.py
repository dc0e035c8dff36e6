"""Versioned index directories: manifest, atomic switch, rollback, crash safety, model mismatch."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from index.calibration import errand_questions, everyday_questions
from index.embed_cache import EmbeddingCache
from index.ingest import clean, load_file
from index.store import BUILDING_PREFIX, IndexMismatchError, IndexStore, IndexStoreError, NoIndexError
from index.tokenize import Tokenizer
from tests.conftest import ROOT, SPEECH, HashEmbedder, lexical_models


@pytest.fixture
def speech():
    return load_file(SPEECH)


@pytest.fixture
def store(tmp_path):
    return IndexStore(tmp_path / "indexes", keep=2)


def test_build_writes_a_complete_version_with_manifest(store, speech):
    version = store.build([speech], HashEmbedder())
    assert store.current() == version
    manifest = store.manifest(version)
    assert manifest["model"] == "test-hash" and manifest["dimension"] == 16
    assert manifest["chunker"]["target_chars"] > 0
    assert manifest["counts"]["documents"] == 1 and manifest["counts"]["chunks"] > 10
    assert manifest["documents"][0]["title"] == "在全市组织部长会议上的讲话摘要"
    assert len(manifest["corpus_sha256"]) == 64
    for name in ("chunks.jsonl", "words/ids.npy", "userdict.txt", "dense.faiss", "bm25"):
        assert (store.root / version / name).exists()
    assert "海燕归巢" in (store.root / version / "userdict.txt").read_text(encoding="utf-8")


def test_the_everyday_and_errand_references_are_embedded_once_for_every_build(store, speech, tmp_path):
    class Counting(HashEmbedder):
        def __init__(self) -> None:
            super().__init__()
            self.queries: list[str] = []

        def encode_queries(self, texts):  # type: ignore[no-untyped-def]
            self.queries += texts
            return super().encode_queries(texts)

    references = everyday_questions() + errand_questions()
    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    embedder = Counting()
    first = store.build([speech], embedder, cache=cache)
    assert set(references) <= set(embedder.queries)
    embedder.queries.clear()
    second = store.build([speech], embedder, cache=cache)
    assert not set(references) & set(embedder.queries)  # read from the cache, not embedded again
    for name in ("everyday.npy", "errands.npy"):
        assert np.array_equal(np.load(store.root / first / name), np.load(store.root / second / name))
    assert np.array_equal(np.load(store.root / second / "everyday.npy"),
                          HashEmbedder().encode_queries(everyday_questions()))
    assert cache.get_many([EmbeddingCache.key("test-hash", references[0])], 16) == {}  # apart from passages
    cache.close()


def test_a_rebuild_cuts_only_passages_it_has_not_cut_with_the_same_tokenizer(store, speech, tmp_path, monkeypatch):
    cut: list[str] = []  # the texts a build cut into bigrams (only passages: a build searches nothing)
    bigrams = Tokenizer.bigrams
    monkeypatch.setattr(Tokenizer, "bigrams", lambda self, text, normalized=False:
                        cut.append(text) or bigrams(self, text, normalized))
    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    plain = store.build([speech], HashEmbedder())  # no cache: every passage cut
    lexical = ("words/ids.npy", "words/terms.json", "bm25/data.csc.index.npy", "bm25-bigram/data.csc.index.npy")
    expected = [(store.root / plain / name).read_bytes() for name in lexical]
    cut.clear()
    first = store.build([speech], HashEmbedder(), cache=cache)
    passages = store.manifest(first)["counts"]["chunks"]
    assert len(cut) == passages
    cut.clear()
    second = store.build([speech], HashEmbedder(), cache=cache)
    assert cut == []  # every passage's words and bigrams from the cache
    assert [(store.root / second / name).read_bytes() for name in lexical] == expected
    changed = clean(speech.text + "\n新增一段关于村情通平台的说明。\n", doc_id=speech.doc_id)
    changed.title = speech.title
    cut.clear()
    store.build([changed], HashEmbedder(), cache=cache)
    assert any("新增一段" in text for text in cut) and len(cut) <= 2  # the changed passages (and header) only
    assert Tokenizer(["村情通"]).fingerprint != Tokenizer(["村情通", "凡提四必"]).fingerprint  # other words
    assert Tokenizer(["村情通"]).fingerprint == Tokenizer(["村情通"]).fingerprint
    cache.close()


def test_loaded_index_answers_searches(store, speech):
    store.build([speech], HashEmbedder())
    index = store.load(HashEmbedder(), models=lexical_models())
    result = index.searcher.search("海燕归巢计划", k=3)
    assert "海燕归巢" in result.hits[0].chunk.text
    assert len(index.chunks) == index.manifest["counts"]["chunks"]


def test_activate_rolls_back_and_prune_keeps_the_newest(store, speech):
    first = store.build([speech], HashEmbedder())
    second = store.build([speech], HashEmbedder())
    assert store.current() == second
    store.activate(first)
    assert store.current() == first
    third = store.build([speech], HashEmbedder())
    assert store.current() == third
    assert store.versions() == sorted([second, third]) or store.versions() == sorted([first, third])
    assert len(store.versions()) == 2
    with pytest.raises(NoIndexError):
        store.activate("v-does-not-exist")


def test_loading_with_another_model_fails_clearly(store, speech):
    store.build([speech], HashEmbedder())
    with pytest.raises(IndexMismatchError, match="rebuild"):
        store.load(HashEmbedder(name="other-model"))
    with pytest.raises(IndexMismatchError, match="dimension"):
        store.load(HashEmbedder(dimension=32))


def test_no_index_says_how_to_build_one(store):
    with pytest.raises(NoIndexError, match="index build"):
        store.load(HashEmbedder())


class FailingEmbedder(HashEmbedder):
    def encode_passages(self, texts, batch_size=32):
        raise RuntimeError("out of memory halfway")


def test_a_failed_build_leaves_the_previous_version_serving(store, speech):
    good = store.build([speech], HashEmbedder())
    with pytest.raises(RuntimeError):
        store.build([speech], FailingEmbedder())
    assert store.current() == good
    assert not [p for p in store.root.iterdir() if p.name.startswith(BUILDING_PREFIX)]
    assert store.load(HashEmbedder()).version == good


def test_empty_corpus_is_refused(store):
    with pytest.raises(IndexStoreError, match="empty"):
        store.build([], HashEmbedder())


KILLED_BUILD = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from index.ingest import clean, load_file
    from index.store import IndexStore
    from tests.conftest import HashEmbedder

    class KillMidway(HashEmbedder):
        def encode_passages(self, texts, batch_size=32):
            os.kill(os.getpid(), signal.SIGKILL)

    IndexStore({root_dir!r}).build([load_file(__import__("pathlib").Path({speech!r}))], KillMidway())
""")


def test_sigkill_during_a_build_leaves_the_previous_version(store, speech):
    good = store.build([speech], HashEmbedder())
    code = KILLED_BUILD.format(root=str(ROOT), root_dir=str(store.root), speech=str(SPEECH))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert [p for p in store.root.iterdir() if p.name.startswith(BUILDING_PREFIX)]  # the half-built leftover
    assert store.current() == good
    removed = store.clean_leftovers()
    assert removed and all(name.startswith(BUILDING_PREFIX) for name in removed)
    assert store.versions() == [good]
    assert store.load(HashEmbedder()).version == good


def test_current_pointer_is_replaced_atomically(store, speech):
    version = store.build([speech], HashEmbedder())
    pointer = store.root / "CURRENT"
    assert pointer.read_text(encoding="utf-8").strip() == version
    assert not [p for p in os.listdir(store.root) if p.endswith(".tmp")]
    json.loads((store.root / version / "manifest.json").read_text(encoding="utf-8"))


def test_manifest_documents_carry_metadata_and_series_newest_last(store):
    from tests.conftest import SHARED

    reports = [load_file(SHARED / "docs" / f"state_council_gov_work_report_{year}.txt") for year in (2022, 2017)]
    law = load_file(SHARED / "docs" / "law_supervision_law_2018.txt")
    manifest = store.manifest(store.build([*reports, law], HashEmbedder()))
    docs = {d["title"]: d for d in manifest["documents"]}
    old, new = docs["2017年政府工作报告"], docs["2022年政府工作报告"]
    assert (old["date"], old["status"], old["issuer"], old["series"]) == ("2017-03-16", "现行有效", "国务院", "政府工作报告")
    assert old["series_order"] == 0 and new["series_order"] == 1
    assert old["latest"] == new["latest"] == new["doc_id"] and old["latest_date"] == "2022-03-13"
    assert docs["中华人民共和国监察法"]["replaces"] == "《中华人民共和国行政监察法》"
    assert "series" not in docs["中华人民共和国监察法"]


def test_prune_keeps_the_version_that_served_just_before(tmp_path, speech):
    store = IndexStore(tmp_path / "indexes", keep=1)
    built = [store.build([speech], HashEmbedder()) for _ in range(3)]
    assert store.versions() == built[1:] and store.previous() == built[1]


def test_each_new_text_is_embedded_once_shortest_first():
    """A text that repeats is embedded once; texts go to the model shortest first (a batch of like lengths
    pads little); every position still gets its own text's vector."""
    from index.store import _embed

    class Recording(HashEmbedder):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        def encode_passages(self, texts, batch_size=32):  # type: ignore[no-untyped-def]
            self.seen += texts
            return super().encode_passages(texts, batch_size)

    texts = ["第三条 党员必须履行下列义务。", "短句。", "第三条 党员必须履行下列义务。", "中等长度的一句话。"]
    embedder = Recording()
    vectors, embedded, tokens = _embed(texts, embedder, None, None)
    assert tokens is None
    assert embedded == 3 and embedder.seen == ["短句。", "中等长度的一句话。", "第三条 党员必须履行下列义务。"]
    for text, vector in zip(texts, vectors, strict=True):
        assert (vector == HashEmbedder().encode_passages([text])[0]).all()


def test_a_version_that_kept_its_words_as_lists_still_loads(store, speech, tmp_path):
    """Versions built before index.chunk_tokens have tokens.jsonl (a list of words a passage), not words/."""
    import shutil

    other = clean("第一条 党员必须履行义务，党员享有权利。\n第二条 村民委员会每届任期五年。", doc_id="rules")
    other.title = "规则"
    version = store.build([speech, other], HashEmbedder())
    fresh = store.load(HashEmbedder(), models=lexical_models())
    lists = [fresh.searcher.chunk_tokens[i] for i in range(len(fresh.chunks))]
    folder = store.root / version
    shutil.rmtree(folder / "words")
    (folder / "tokens.jsonl").write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in lists),
                                         encoding="utf-8")
    older = store.load(HashEmbedder(), models=lexical_models())
    assert [older.searcher.chunk_tokens[i] for i in range(len(older.chunks))] == lists
    for question in ("海燕归巢计划", "村委会任期几年", "党员有什么权利"):
        a, b = fresh.searcher.search(question, k=3), older.searcher.search(question, k=3)
        assert [h.position for h in a.hits] == [h.position for h in b.hits]
        assert [h.score for h in a.hits] == [h.score for h in b.hits]
    tokens = fresh.searcher.tokenizer.tokens("村民委员会任期")
    np.testing.assert_array_equal(fresh.searcher.doc_prior(tokens), older.searcher.doc_prior(tokens))


def test_a_version_keeps_its_documents_title_words_and_loads_them(store, speech):
    """The title words are read from words/title_words.json at load, not tokenised again; a version without
    the file (built before it) tokenises them, to the same title index."""
    other = clean("第一条 党员必须履行义务，党员享有权利。\n第二条 村民委员会每届任期五年。", doc_id="rules")
    other.title = "村民委员会选举规则"
    version = store.build([speech, other], HashEmbedder())
    path = store.root / version / "words" / "title_words.json"
    kept = json.loads(path.read_text(encoding="utf-8"))
    fresh = store.load(HashEmbedder(), models=lexical_models())
    tokenizer = fresh.searcher.tokenizer
    assert kept == {"rules": sorted(set(tokenizer.tokens(other.title))),
                    speech.doc_id: sorted(set(tokenizer.tokens(speech.title)))}
    assert "rules" in {fresh.searcher.document_ids[i] for i in fresh.searcher.title_documents["选举"]}

    path.write_text(json.dumps({**kept, "rules": ["选举", "名册"]}, ensure_ascii=False), encoding="utf-8")
    read = store.load(HashEmbedder(), models=lexical_models()).searcher
    assert [read.document_ids[i] for i in read.title_documents["名册"]] == ["rules"]

    path.unlink()
    older = store.load(HashEmbedder(), models=lexical_models()).searcher
    assert older.title_words == kept
    assert {w: d.tolist() for w, d in older.title_documents.items()} == \
        {w: d.tolist() for w, d in fresh.searcher.title_documents.items()}
