"""The sibling-regulations set (bench.siblings): its documents are drawn the same way every time, and each
question's gold quote is in the document it names."""

from __future__ import annotations

from bench.siblings import place_of, right_rank, select_documents
from bot.answer import Answer, Passage
from bot.evaluate import WHITESPACE, load_questions
from tests.conftest import ROOT, SHARED


def test_the_draw_is_fixed_and_every_gold_quote_is_in_its_document(tmp_path):
    paths = select_documents(SHARED, tmp_path / "a")
    assert [p.name for p in paths] == [p.name for p in select_documents(SHARED, tmp_path / "b")]
    assert len(paths) == 242 and len({p.stem.split("-")[0] for p in paths}) == 90
    texts = {p.stem: WHITESPACE.sub("", p.read_text(encoding="utf-8")) for p in paths}
    questions = load_questions(ROOT / "eval" / "siblings.jsonl")
    assert len(questions) >= 200
    for q in questions:
        assert any(WHITESPACE.sub("", g) in texts[q["doc"]] for g in q["gold"]), q["id"]
    # every group is one regulation as several places enacted it
    places = {p.stem: place_of(p) for p in paths}
    assert places["g00-0"] and places["g00-0"] != places["g00-1"]


def passage(doc: str, text: str) -> Passage:
    return Passage(doc=doc, title="", section="", text=text, score=0.0, dense=0.0, bm25=0.0, dense_rank=None,
                   bm25_rank=None, doc_prior=0.0)


def test_a_siblings_copy_of_the_gold_sentence_is_not_a_right_passage():
    gold = ["由县级以上人民政府责令改正"]
    answer = Answer(question="", abstained=False, text="", elapsed_ms=0.0, kind="search",
                    passages=[passage("g01-0", "……由县级以上人民政府责令改正。"), passage("g01-1", "由县级以上 人民政府责令改正")])
    assert right_rank(answer, "g01-1", gold) == 2
    assert right_rank(answer, "g01-2", gold) is None
