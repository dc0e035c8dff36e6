import json


def test_ask_prints_the_reply_and_passages(runner):
    result = runner.invoke(args=["ask", "村情通是什么？"])
    assert result.exit_code == 0, result.output
    assert "村情通" in result.output and "confidence" in result.output


def test_ask_json(runner):
    result = runner.invoke(args=["ask", "村情通是什么？", "--json", "-k", "2"])
    body = json.loads(result.output)
    assert body["question"] == "村情通是什么？" and len(body["passages"]) == 2
    assert body["source"] == "search" and body["tier"] == "answer"


def test_ask_batch(runner, tmp_path):
    batch = tmp_path / "qs.jsonl"
    batch.write_text('{"id": "a", "q": "村情通是什么？"}\n{"id": "b", "q": "红烧肉怎么做？"}\n', encoding="utf-8")
    result = runner.invoke(args=["ask", "--batch", str(batch), "--json"])
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["id"] for line in lines] == ["a", "b"]
    assert lines[0]["abstained"] is False and lines[1]["abstained"] is True
    assert set(lines[0]) == {"id", "question", "abstained", "tier", "text", "passages", "elapsed_ms", "source", "link"}


def test_ask_batch_with_a_broken_line_names_it(runner, tmp_path):
    batch = tmp_path / "qs.jsonl"
    batch.write_text('{"id": "a", "q": "村情通是什么？"}\n{broken\n', encoding="utf-8")
    result = runner.invoke(args=["ask", "--batch", str(batch)])
    assert result.exit_code != 0 and ":2:" in result.output


def test_index_versions_and_activate(runner, app):
    current = app.extensions["engine"].store.current()
    result = runner.invoke(args=["index", "versions"])
    assert f"* {current}" in result.output
    assert runner.invoke(args=["index", "activate", "v-nope"]).exit_code != 0
    assert runner.invoke(args=["index", "activate", current]).exit_code == 0


def test_index_build_if_missing_does_nothing_when_present(runner):
    result = runner.invoke(args=["index", "build", "--if-missing"])
    assert result.exit_code == 0 and "nothing to do" in result.output


def test_eval_with_an_unreadable_line_names_it(runner, tmp_path):
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"id": "a", "q": "村情通是什么？", "gold": []}\n' + "[" * 100_000 + "\n", encoding="utf-8")
    result = runner.invoke(args=["eval", str(deep)])
    assert result.exit_code != 0 and "deep.jsonl:2:" in result.output


def test_fit_reads_several_sets_and_names_a_broken_line(runner, tmp_path):
    good = tmp_path / "tune.jsonl"
    good.write_text('{"id": "1", "q": "村情通是什么？", "gold": ["村情通"]}\n', encoding="utf-8")
    broken = tmp_path / "tune-more.jsonl"
    broken.write_text('{"id": "1", "q": "凡提四必是什么？", "gold": ["凡提四必"]}\n{"q": \n', encoding="utf-8")
    out = tmp_path / "learned.json"
    result = runner.invoke(args=["fit", str(good), str(broken), "--out", str(out)])
    assert result.exit_code != 0 and "tune-more.jsonl:2:" in result.output and not out.exists()


def test_index_adapt_refuses_an_unknown_hard_negative_kind_before_any_work(runner):
    result = runner.invoke(args=["index", "adapt", "--hard-negatives", "question, sentense"])
    assert result.exit_code != 0 and "sentense" in result.output and "question, sentence" in result.output
