"""The quality bar on ../shared/eval/dev.jsonl, through the real model and index."""

from pathlib import Path

from bot.evaluate import evaluate, load_questions
from tests.conftest import SHARED


def test_dev_set_meets_the_bar(answerer):
    result, rows = evaluate(answerer, load_questions(SHARED / "eval" / "dev.jsonl"))
    assert result["answerable"] == 36 and result["out_of_scope"] == 12
    assert result["R@1"] >= 0.95, [r for r in rows if r.answerable and r.rank != 1]
    assert result["R@3"] == 1.0
    assert result["abstention_rate"] == 1.0, [r for r in rows if not r.answerable and not r.abstained]
    assert result["false_abstentions"] == 0, [r for r in rows if r.answerable and r.abstained]


def test_eval_command_prints_the_same_metrics(runner, answerer):
    path = SHARED / "eval" / "dev.jsonl"
    result = runner.invoke(args=["eval", str(path)])
    assert result.exit_code == 0, result.output
    metrics, _ = evaluate(answerer, load_questions(path))
    assert f"R@1                {metrics['R@1']}" in result.output
    assert "abstention_rate    1.0" in result.output


def test_questions_written_here_stay_answered(answerer):
    # 34 answerable and 13 out-of-scope questions written for the first document without looking at
    # the bot's answers (tests/fixtures/written-first-doc.jsonl). When first measured: R@1 0.941, R@3
    # 0.971, two false abstentions (哪天召开, 考察干部有什么机制), 9/13 declined. This guards that level;
    # the misses are listed in CHANGES.md.
    result, rows = evaluate(answerer, load_questions(Path(__file__).parent / "fixtures" / "written-first-doc.jsonl"))
    assert result["answerable"] == 34 and result["out_of_scope"] == 13
    assert result["R@3"] >= 0.97, [r for r in rows if r.answerable and (r.rank or 9) > 3]
    assert result["false_abstentions"] <= 2, [r for r in rows if r.answerable and r.abstained]
    assert result["abstention_rate"] >= 0.69, [r for r in rows if not r.answerable and not r.abstained]
