"""The quality bar on ../shared/eval/dev.jsonl, through the real model and index."""

from pathlib import Path

import pytest

from bot.evaluate import (
    EvalRow,
    QuestionSetError,
    answer_auc,
    compare,
    evaluate,
    load_question_sets,
    load_questions,
    right_at_hard_bar,
    shows_gold,
    sign_test,
    wilson_interval,
)
from tests.conftest import SHARED


def test_dev_set_meets_the_bar(answerer):
    result, rows = evaluate(answerer, load_questions(SHARED / "eval" / "dev.jsonl"))
    assert result["answerable"] == 36 and result["out_of_scope"] == 12
    # R@1 was 35 of 36 before the sentence channel, 34 of 36 with it (干部工作打的是什么组合拳 now finds the
    # passage whose sentence names another 组合拳 first); it gained on the unseen sets (eval/heldout, eval/fresh)
    assert result["R@1"] >= 0.94, [r for r in rows if r.answerable and r.rank != 1]
    assert result["R@3"] == 1.0
    assert result["abstention_rate"] == 1.0, [r for r in rows if not r.answerable and not r.abstained]
    # none of the twelve is answered; two may get related passages: one that touches policy words
    # (个人所得税怎么申报), and 今天衢州天气怎么样, which names the city of this one document and sits at the
    # threshold (P(in scope) 0.65-0.77 against 0.675, by the ONNX export)
    assert result["everyday_declined"] >= round(10 / 12, 4)
    assert not [r for r in rows if not r.answerable and r.tier == "answer"]
    # what members get: when first measured with the learned decision, 25 of 36 answered right, 9 listed as
    # related, 2 declined, none answered wrongly
    assert result["wrong"] == 0.0, [r for r in rows if r.answerable and r.tier == "answer" and r.rank != 1]
    assert result["right"] >= 0.65 and result["useful"] >= 0.9
    assert result["declined"] <= 2 / 36, [r for r in rows if r.answerable and r.tier == "decline"]


def test_eval_command_prints_the_same_metrics(runner, answerer):
    path = SHARED / "eval" / "dev.jsonl"
    result = runner.invoke(args=["eval", str(path)])
    assert result.exit_code == 0, result.output
    metrics, _ = evaluate(answerer, load_questions(path))
    assert f"R@1                {metrics['R@1']}" in result.output
    assert f"right              {metrics['right']}" in result.output


def test_questions_written_here_stay_answered(answerer):
    # 34 answerable and 13 out-of-scope questions written for the first document without looking at the
    # bot's answers (tests/fixtures/written-first-doc.jsonl); 10 of the 13 are hard (policy questions the
    # speech does not answer: 入党需要什么条件). With the learned decision: R@1 0.91, R@3 1.0, one declined,
    # 9 of the 13 out-of-scope not answered outright (4 hard ones are quoted from the speech).
    result, rows = evaluate(answerer, load_questions(Path(__file__).parent / "fixtures" / "written-first-doc.jsonl"))
    assert result["answerable"] == 34 and result["out_of_scope"] == 13 and sum(r.hard for r in rows) == 10
    assert result["R@3"] >= 0.97, [r for r in rows if r.answerable and (r.rank or 9) > 3]
    assert result["declined"] <= 2 / 34, [r for r in rows if r.answerable and r.tier == "decline"]
    assert result["abstention_rate"] >= 0.69, [r for r in rows if not r.answerable and not r.abstained]


def test_answer_auc_ranks_right_answers_above_the_rest_without_a_threshold():
    def row(confidence, rank, answerable=True):
        return EvalRow("q", "问", answerable, rank, False, confidence)

    # right ones at 0.9 and 0.8; a wrong one at 0.85, an out-of-scope one at 0.7, one with no decision
    rows = [row(0.9, 1), row(0.8, 1), row(0.85, 3), row(0.7, None, answerable=False), row(None, None)]
    assert answer_auc(rows) == 0.75  # 3 of the 4 (right, other) pairs in order
    assert answer_auc([row(0.5, 1), row(0.5, 2)]) == 0.5  # a tie counts half
    assert answer_auc([row(0.9, 1)]) is None  # nothing to compare with


def test_right_at_hard_bar_is_the_best_single_threshold_that_keeps_hard_questions_unanswered():
    def row(confidence, rank, hard=False, by_scope=True):
        return EvalRow("q", "问", rank is not None or not (hard or confidence is None), rank, False, confidence,
                       hard=hard, answerable_by_scope=by_scope)

    right = [row(0.9, 1), row(0.6, 1), row(0.3, 1), row(0.95, 1, by_scope=False)]  # the last: scope says no
    others = [row(0.8, 2), row(0.7, 3)]  # answerable, another passage first
    hard = [row(0.65, None, hard=True)] + [row(0.1, None, hard=True)] * 4  # five hard out-of-scope questions
    # below 0.65 a fifth of the hard ones is answered: 80 % still are not, so 0.3 is allowed: 3 of 6 right
    assert right_at_hard_bar(right + others + hard) == 0.5
    # with four hard ones, answering the one at 0.65 leaves 75 %: the threshold must stay above it
    assert right_at_hard_bar(right + others + hard[:4]) == round(1 / 6, 4)
    assert right_at_hard_bar(right + others) == 0.5  # no hard questions: every threshold is allowed
    assert right_at_hard_bar(hard) is None


def test_several_sets_load_as_one_and_each_question_keeps_its_own_id(tmp_path):
    first, second = tmp_path / "tune.jsonl", tmp_path / "tune-more.jsonl"
    first.write_text('{"id": "1", "q": "村情通是什么？", "gold": ["村情通"]}\n', encoding="utf-8")
    second.write_text('{"id": "1", "q": "今天天气怎么样", "gold": []}\n{"id": "2", "q": "凡提四必是什么？", "gold": ["凡提四必"]}\n',
                      encoding="utf-8")
    questions = load_question_sets([first, second])
    assert [q["q"] for q in questions] == ["村情通是什么？", "今天天气怎么样", "凡提四必是什么？"]
    assert [q["id"] for q in questions] == ["1", "tune-more:1", "2"]


def test_wilson_interval_brackets_the_share_and_narrows_with_more_questions():
    low, high = wilson_interval(118, 188)  # held-out R@1 0.628
    assert low < 118 / 188 < high
    assert (round(low, 2), round(high, 2)) == (0.56, 0.69)
    wide, narrow = wilson_interval(10, 20), wilson_interval(500, 1000)
    assert wide[1] - wide[0] > 3 * (narrow[1] - narrow[0])
    assert wilson_interval(0, 40)[0] == 0.0 and wilson_interval(0, 40)[1] > 0  # none seen is not "never"
    assert wilson_interval(40, 40)[1] == 1.0 and wilson_interval(40, 40)[0] < 1
    assert wilson_interval(0, 0) is None


def test_sign_test_is_exact_and_two_sided():
    assert sign_test(0, 0) == 1.0 and sign_test(5, 5) == 1.0
    assert sign_test(30, 9) == sign_test(9, 30)
    assert 0.0009 < sign_test(30, 9) < 0.0013  # the ranker penalty's paired gain on the unseen sets
    assert sign_test(4, 0) == 0.125  # four of four one way: 2 × 1/16
    assert sign_test(12, 2) < 0.05 < sign_test(9, 4)


def test_compare_counts_each_outcome_gained_and_lost_question_by_question():
    def row(i: str, rank: int | None, tier: str, answerable: bool = True, hard: bool = False) -> EvalRow:
        return EvalRow(id=i, question=i, answerable=answerable, rank=rank, abstained=tier != "answer",
                       confidence=0.5, tier=tier, hard=hard)

    before = [row("a", 2, "related"), row("b", 1, "answer"), row("c", 4, "decline"),
              row("d", None, "related", answerable=False), row("e", None, "answer", answerable=False, hard=True)]
    after = [row("a", 1, "answer"), row("b", 5, "answer"), row("c", 3, "related"),
             row("d", None, "decline", answerable=False), row("e", None, "related", answerable=False, hard=True)]
    change = compare(before, list(reversed(after)))  # matched by id, not by order
    assert (change["R@1"].gained, change["R@1"].lost) == (1, 1)
    assert (change["R@3"].gained, change["R@3"].lost) == (1, 1)
    assert (change["right"].gained, change["right"].lost) == (1, 1)
    assert (change["useful"].gained, change["useful"].lost) == (1, 1)  # c now related in three, b answered wrong
    assert (change["wrong"].gained, change["wrong"].lost) == (1, 0)  # b answered with no right passage in two
    assert (change["declined"].gained, change["declined"].lost) == (0, 1)
    assert (change["everyday_declined"].gained, change["hard_not_answered"].gained) == (1, 1)
    assert str(compare(before, before)["R@1"]) == "="
    with pytest.raises(QuestionSetError):
        compare(before, after[:4])


def test_a_set_run_with_other_models_compares_question_by_question_and_restores_the_serving_models(app):
    from bench.quality import run
    from tests.conftest import lexical_models

    path = SHARED / "eval" / "dev.jsonl"
    with app.app_context():
        serving = app.extensions["engine"].current_index().searcher.models
    metrics, rows = run(app, path)
    other_metrics, other_rows = run(app, path, lexical_models())  # BM25 alone ranks, untuned decision
    with app.app_context():
        assert app.extensions["engine"].current_index().searcher.models is serving
    assert all(str(c) == "=" for c in compare(rows, run(app, path)[1]).values())  # the same models: no change
    change = compare(other_rows, rows)
    # the learned ranker and decision against BM25 alone: R@1 and right answers net gains, each counted
    assert change["R@1"].gained - change["R@1"].lost == round((metrics["R@1"] - other_metrics["R@1"]) * 36)
    assert change["right"].gained - change["right"].lost == round((metrics["right"] - other_metrics["right"]) * 36)
    assert change["right"].gained > change["right"].lost


def test_a_reply_shows_the_answer_when_its_text_holds_a_gold_quote_or_ten_characters_of_one():
    gold = ["村民委员会每届任期五年，其成员可以连选连任"]
    assert shows_gold("…村民委员会每届任期五年，其成员可以连选连任。", gold)
    assert shows_gold("2. 《浙江省村民委员会选举办法》（第三条）：…村民委员会每届任期五…", gold)  # a cut line
    assert shows_gold("村民委员会 每届任期\n五年", gold)  # white space ignored
    assert not shows_gold("村民委员会每届任期", gold)  # nine characters are not enough
    assert shows_gold("党费按月交纳", ["按月交纳"])  # a quote shorter than ten must appear whole
    assert not shows_gold("", gold) and not shows_gold("任何文字", [""])
