"""Re-indexing with the real documents in ../shared/docs: quality, removal and rollback, and queries that
keep flowing during a re-index and a switch."""

import threading

import pytest

from bot.evaluate import evaluate, load_questions
from index.ingest import load_file
from tests.conftest import ROOT, SHARED, SPEECH, make_app

PARTY_CONSTITUTION = "party_constitution_2017_zh"


@pytest.fixture(scope="module")
def all_docs_app(all_docs_instance, tmp_path_factory):
    """The shipped speech plus all 19 documents (a copy of the session's instance: these tests change it)."""
    return make_app(all_docs_instance, tmp_path_factory.mktemp("all-docs-reindex"))


def test_all_documents_answer_their_questions(all_docs_app):
    answerer = all_docs_app.extensions["engine"].answerer
    docs, _ = evaluate(answerer, load_questions(SHARED / "eval" / "docs-dev.jsonl"))
    assert docs["R@3"] >= 0.9 and docs["declined"] == 0.0 and docs["wrong"] <= 0.1
    dev, rows = evaluate(answerer, load_questions(SHARED / "eval" / "dev.jsonl"))
    assert dev["R@3"] >= 0.9 and dev["declined"] <= 1 / 36 + 1e-4, dev
    # at most one confidently wrong: d14 (年轻干部的培养有什么机制) is a near-tie between the speech's 全链条机制
    # passage and two congress reports' passages on young cadres, at rank 2 or 3 by build (CHANGES.md)
    assert dev["wrong"] <= 1 / 36 + 1e-4, [r for r in rows if r.answerable and r.tier == "answer" and (r.rank or 9) > 2]
    # with twenty documents indexed the everyday questions stay declined; four that touch policy words
    # (个人所得税, 医保报销, 公积金贷款, 高考志愿) get related passages, and one of them may be answered
    # (个人所得税怎么申报 finds 个人所得税 passages; P(right) is near the answer threshold)
    everyday = {"o01", "o02", "o03", "o04", "o07", "o08", "o10", "o12"}
    assert all(r.tier == "decline" for r in rows if r.id in everyday), [r for r in rows if r.id in everyday]
    assert len([r for r in rows if not r.answerable and r.tier == "answer"]) <= 1


def test_held_out_questions_keep_their_level(all_docs_app):
    """The project's held-out set (eval/heldout.jsonl: documents nothing was fitted on). Guards the level
    measured when the learned ranker and decision were fitted; the figures are in CHANGES.md."""
    answerer = all_docs_app.extensions["engine"].answerer
    result, rows = evaluate(answerer, load_questions(ROOT / "eval" / "heldout.jsonl"))
    assert result["answerable"] == 188 and result["out_of_scope"] == 54
    assert result["R@3"] >= 0.55 and result["useful"] >= 0.45
    assert result["wrong"] <= 0.05, [r for r in rows if r.answerable and r.tier == "answer" and (r.rank or 9) > 2]
    assert result["everyday_declined"] >= 0.75 and result["hard_not_answered"] >= 0.65


def test_remove_a_document_then_roll_back(all_docs_app):
    engine = all_docs_app.extensions["engine"]
    question = "党员享有哪些权利？"
    with_it = engine.store.current()
    assert engine.answerer.answer(question).passages[0].doc == PARTY_CONSTITUTION

    removed = engine.library.remove(PARTY_CONSTITUTION)
    without_it = engine.build()
    answer = engine.answerer.answer(question)
    assert not any(p.doc == PARTY_CONSTITUTION for p in answer.passages)
    manifest = engine.store.manifest(without_it)
    assert manifest["counts"]["embedded"] == 0  # every other passage came from the embedding cache

    engine.store.activate(with_it)
    engine.wait_for_version(with_it)
    assert engine.answerer.answer(question).passages[0].doc == PARTY_CONSTITUTION
    engine.library.add(removed.file_name, (SHARED / "docs" / removed.file_name).read_bytes(), uploaded_by="test")


def test_queries_during_reindex_and_switch_never_fail(built_instance, tmp_path):
    app = make_app(built_instance, tmp_path)
    engine = app.extensions["engine"]
    old = engine.store.current()
    questions = ["海燕归巢计划是做什么的？", "怎样防止干部带病提拔？", "红烧肉怎么做？", "帮助"]
    errors: list[BaseException] = []
    seen: list[tuple[str, list[str]]] = []
    stop = threading.Event()

    def ask_forever(offset: int) -> None:
        i = offset
        while not stop.is_set():
            try:
                answer = engine.answerer.answer(questions[i % len(questions)])
                seen.append((answer.index_version, [p.doc for p in answer.passages]))
                assert answer.text
            except BaseException as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)
            i += 1

    threads = [threading.Thread(target=ask_forever, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    try:
        news = SHARED / "docs" / "news_xwlb_2023-08-02_leading_cadres_party_rules_list.txt"
        docs = [load_file(SPEECH), load_file(news)]
        new = engine.build(docs)
        engine.store.activate(old)
        engine.wait_for_version(old)
        engine.store.activate(new)
        engine.wait_for_version(new)
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert errors == []
    versions = {v for v, _ in seen}
    assert versions <= {old, new} and new in versions and len(seen) > 20
    for version, doc_ids in seen:  # every answer came from one complete version
        known = {d["doc_id"] for d in engine.store.manifest(version)["documents"]}
        assert set(doc_ids) <= known
