"""Routing, templates, abstention and the byte limit, with the real model and index."""

import pytest

from bot import templates as t
from bot.answer import KIND_EMPTY, KIND_GREETING, KIND_HELP, KIND_NOT_TEXT, MAX_QUESTION_CHARS, cut_to_bytes


def test_answer_quotes_and_cites(answerer):
    answer = answerer.answer("海燕归巢计划是做什么的？")
    assert not answer.abstained
    assert "海燕归巢" in answer.passages[0].text
    assert "《在全市组织部长会议上的讲话摘要》" in answer.text
    assert "第四，着力优化人才生态" in answer.text  # the section is cited
    assert answer.passages[0].text in answer.text
    assert answer.elapsed_ms > 0 and answer.index_version
    assert t.utf8_len(answer.text) <= t.WECHAT_MAX_BYTES


@pytest.mark.parametrize("question", ["今天衢州天气怎么样？", "红烧肉怎么做？", "股票明天会涨吗？"])
def test_out_of_scope_questions_are_declined_politely(answerer, question):
    answer = answerer.answer(question)
    assert answer.abstained
    assert question in answer.text and "没有找到" in answer.text
    assert "《" not in answer.text  # cites nothing
    d = answer.decision
    assert d.confidence < d.threshold or d.lexical < d.min_lexical


def test_no_answer_on_semantic_closeness_alone(answerer):
    # the speech is about 衢州, so the weather question comes semantically close; but it shares none of
    # the words that matter, and the minimum lexical evidence declines it whatever the model says
    result = answerer._index().searcher.search("今天衢州天气怎么样？")
    decision = answerer.decide(result)
    assert decision.abstained and decision.lexical < decision.min_lexical


def test_a_how_to_question_needs_its_action_in_a_passage(answerer):
    # same words found, but no passage has the action: the lexical share earns nothing
    searcher = answerer._index().searcher
    result = searcher.search("海燕归巢计划怎么申报？")
    assert result.action == "申报" and result.action_found is False
    decision = answerer.decide(result)
    assert decision.lexical > 0.5 and decision.confidence == pytest.approx(decision.semantic_z, abs=1e-4)
    found = answerer.decide(searcher.search("怎样防止干部带病提拔？"))
    assert found.action == "防止" and found.action_found is True
    credit = found.lexical + found.named
    assert found.confidence == pytest.approx(found.semantic_z + found.lexical_weight * credit, abs=1e-4)
    # a paraphrased action still gets an answer when the meaning is close enough
    assert not answerer.answer("怎么关心关爱干部？").abstained


def test_a_coined_name_counts_twice(answerer):
    # the model has never seen 村情通: the semantic score is low, the passage that has the name is not
    result = answerer._index().searcher.search("村情通是什么？")
    assert result.named == result.lexical == 1.0
    decision = answerer.decide(result)
    assert decision.confidence == pytest.approx(decision.semantic_z + 2 * decision.lexical_weight, abs=1e-4)
    assert not decision.abstained
    # common words in quotation marks are not names: 干部 and 带病提拔 share the credit
    plain = answerer.decide(answerer._index().searcher.search("怎样防止干部带病提拔？"))
    assert 0 < plain.named < plain.lexical


@pytest.mark.parametrize("message,kind", [
    ("你好", KIND_GREETING), ("您好！", KIND_GREETING), ("在吗", KIND_GREETING),
    ("帮助", KIND_HELP), ("help", KIND_HELP), ("？", KIND_HELP),
    ("", KIND_EMPTY), ("   \n ", KIND_EMPTY),
    ("😀😀👍", KIND_NOT_TEXT), ("。。。！", KIND_NOT_TEXT),
])
def test_messages_that_are_not_questions(answerer, message, kind):
    answer = answerer.answer(message)
    assert answer.kind == kind
    assert not answer.abstained and not answer.passages
    assert answer.text and t.utf8_len(answer.text) <= t.WECHAT_MAX_BYTES


def test_help_lists_documents_and_examples(answerer):
    text = answerer.answer("帮助").text
    assert "在全市组织部长会议上的讲话摘要" in text
    assert "“" in text and "是指什么？" in text


def test_very_long_input_is_searched_by_its_beginning(answerer):
    question = "海燕归巢计划是做什么的？" + "请详细说明。" * 900
    answer = answerer.answer(question)
    assert len(question) > 5000
    assert not answer.abstained
    assert f"前 {MAX_QUESTION_CHARS} 个字" in answer.text
    assert t.utf8_len(answer.text) <= t.WECHAT_MAX_BYTES


def test_reply_is_cut_at_a_sentence_to_fit_the_byte_limit(answerer):
    answerer.settings.max_bytes = 600
    answer = answerer.answer("基层党建的“一二三四”组合拳指什么？")
    assert t.utf8_len(answer.text) <= 600
    assert t.TRUNCATED_MARK in answer.text
    quoted = answer.text.split("：\n\n“", 1)[1]
    assert quoted.split(t.TRUNCATED_MARK)[0][-1] in "。！？；”"


def test_cut_to_bytes_keeps_whole_sentences():
    text = "第一句话。第二句话比较长一些。第三句。"
    assert cut_to_bytes(text, 40) == "第一句话。" + t.TRUNCATED_MARK
    assert t.utf8_len(cut_to_bytes("无标点的很长一句" * 50, 60)) <= 60
    clause = cut_to_bytes("第三，着力夯实基层执政根基，以提升组织力为主线。", 50)
    assert clause == "第三，着力夯实基层执政根基，" + t.TRUNCATED_MARK


def test_template_with_a_missing_or_unknown_field_raises():
    with pytest.raises(t.TemplateError):
        t.render(t.ABSTAIN, question="问题")
    with pytest.raises(t.TemplateError):
        t.render(t.EMPTY, examples="· 例子", extra="x")


def test_traditional_chinese_question_is_answered(answerer):
    answer = answerer.answer("怎樣防止幹部帶病提拔？")
    assert not answer.abstained
    assert "带病提拔" in answer.passages[0].text
