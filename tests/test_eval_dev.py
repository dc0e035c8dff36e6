"""The quality bar on ../shared/eval/dev.jsonl, through the real model and index."""

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
