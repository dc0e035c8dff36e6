"""Routing, templates, abstention and the byte limit, with the real model and index."""

import pytest

from bot import templates as t
from bot.answer import (
    KIND_EMPTY,
    KIND_GREETING,
    KIND_HELP,
    KIND_NOT_TEXT,
    MAX_QUESTION_CHARS,
    MORE_LIMIT,
    MORE_MIN_RATIO,
    RELATED_LINE_CHARS,
    cut_to_bytes,
    more_pool,
    search_text,
)
from index.chunk import Chunk
from index.search import Hit


def test_answer_quotes_and_cites(answerer):
    answer = answerer.answer("海燕归巢计划是做什么的？")
    assert not answer.abstained
    assert "海燕归巢" in answer.passages[0].text
    assert "《在全市组织部长会议上的讲话摘要》" in answer.text
    assert "第四，着力优化人才生态" in answer.text  # the section is cited
    assert answer.passages[0].text in answer.text
    assert answer.elapsed_ms > 0 and answer.index_version
    assert t.utf8_len(answer.text) <= t.WECHAT_MAX_BYTES


@pytest.mark.parametrize("question", ["推荐一部好看的电影", "红烧肉怎么做？", "股票明天会涨吗？"])
def test_everyday_questions_are_declined_politely(answerer, question):
    answer = answerer.answer(question)
    assert answer.abstained and answer.tier == "decline" and answer.kind == "abstain"
    assert question in answer.text and "没有找到" in answer.text
    assert "《" not in answer.text  # cites nothing
    d = answer.decision
    assert d.tier == "decline" and d.scope < d.related_threshold


def test_the_tiers_follow_the_two_probabilities(answerer):
    searcher = answerer._index().searcher
    result = searcher.search("海燕归巢计划是做什么的？")
    answered = answerer.decide(result)
    assert answered.tier == "answer" and answered.confidence >= answered.threshold
    assert answered.scope >= answered.related_threshold
    # the same evidence under other thresholds: quoted only when both hold, declined only when neither does
    answerer.settings.answer_threshold = 1.0
    assert answerer.decide(result).tier == "related"
    answerer.settings.related_threshold = 1.0
    assert answerer.decide(result).tier == "decline"
    answerer.settings.answer_threshold = None  # sure of the passage, doubting the subject: listed, not declined
    assert answerer.decide(result).tier == "related"


def test_a_related_reply_lists_passages_without_quoting_them(answerer):
    answerer.settings.answer_threshold = 1.0  # nothing is sure enough to quote
    answer = answerer.answer("海燕归巢计划是做什么的？")
    assert answer.tier == "related" and answer.abstained and answer.kind == "related"
    assert answer.text.startswith("没有找到“海燕归巢计划是做什么的？”的确切答案，以下内容可能相关：")
    lines = [line for line in answer.text.splitlines() if line[:2] in ("1.", "2.", "3.")]
    assert len(lines) == 3 and all("《在全市组织部长会议上的讲话摘要》" in line for line in lines)
    assert answer.passages[0].text not in answer.text  # a sentence of each only
    assert "更多" in answer.text and t.utf8_len(answer.text) <= t.WECHAT_MAX_BYTES


def test_a_related_reply_shows_each_passage_by_its_sentence_nearest_the_question(answerer):
    answerer.settings.answer_threshold = 1.0
    answer = answerer.answer("怎样防止干部带病提拔？")
    assert answer.tier == "related"
    # the passage opens with its part's theme; the sentence that answers is further on, after "…"
    assert answer.passages[0].text.startswith("第一，着力树好实干担当导向")
    first = next(line for line in answer.text.splitlines() if line.startswith("1."))
    shown = first.split("）：", 1)[1]
    assert shown.startswith("…") and "坚决防止“带病提拔”" in shown
    lines = [line.split("）：", 1)[1] for line in answer.text.splitlines() if line[:2] in ("1.", "2.", "3.")]
    assert all(len(line) <= 1 + RELATED_LINE_CHARS for line in lines)


def test_the_decision_explains_itself(answerer):
    decision = answerer.answer("村情通是什么？").decision
    assert decision is not None and decision.tier == "answer"
    assert set(decision.evidence) >= {"top_score", "margin", "semantic_z", "everyday_gap", "coverage"}
    assert decision.named == decision.lexical == 1.0  # the coined name is the whole question


def test_members_words_are_read_as_the_documents_words(answerer):
    decision = answerer.answer("村官是怎么选出来的").decision
    assert ("村官", "村民委员会成员") in decision.replaced
    assert decision.rewritten.startswith("村民委员会成员")


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
    assert answer.tier in ("answer", "related")
    assert f"前 {MAX_QUESTION_CHARS} 个字" in answer.text
    assert t.utf8_len(answer.text) <= t.WECHAT_MAX_BYTES


def test_a_sentence_repeated_in_a_row_is_searched_once():
    assert search_text("海燕归巢计划是做什么的？" + "请详细说明。" * 3) == "海燕归巢计划是做什么的？请详细说明。"
    assert search_text("党员有哪些权利？\n\n党员有哪些权利？") == "党员有哪些权利？"  # white space made one space first
    assert search_text("一是加强。二是加强。") == "一是加强。二是加强。"
    assert len(search_text("问" * 500)) == MAX_QUESTION_CHARS


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


def test_traditional_chinese_question_finds_its_passage(answerer):
    answer = answerer.answer("怎樣防止幹部帶病提拔？")
    assert answer.tier != "decline"
    assert "带病提拔" in answer.passages[0].text


def test_passages_carry_their_documents_date_and_status(answerer):
    answer = answerer.answer("海燕归巢计划是做什么的？")
    passage = answer.to_json()["passages"][0]
    assert passage["date"] == "2018-02-06" and passage["status"] == "现行有效" and passage["latest"] is None
    assert "注：" not in answer.text  # the only document of its kind: no note
    manifest = answerer._index().manifest["documents"][0]  # what ranking may use later
    assert manifest["status"] == "现行有效" and manifest["issuer"] == "中共衢州市委组织部办公室"


def _with_document_meta(answerer, monkeypatch, **meta):
    index = answerer._index()
    documents = [d | meta for d in index.manifest["documents"]]
    monkeypatch.setitem(index.manifest, "documents", documents)


def test_a_quote_from_an_older_document_of_a_series_says_which_is_newest(answerer, monkeypatch):
    _with_document_meta(answerer, monkeypatch, series="讲话", latest="speech-2022", latest_title="2022年全市组织部长会议讲话",
                        latest_date="2022-02-10")
    answer = answerer.answer("海燕归巢计划是做什么的？")
    assert answer.tier == "answer"
    assert "注：出自《在全市组织部长会议上的讲话摘要》（2018年2月6日）；最新为《2022年全市组织部长会议讲话》（2022年2月10日）。" \
        in answer.text
    assert answer.passages[0].latest == "speech-2022"
    answerer.settings.max_bytes = 700  # the note fits within the limit: the quote is cut instead
    short = answerer.answer("海燕归巢计划是做什么的？")
    assert t.utf8_len(short.text) <= 700 and "最新为《2022年全市组织部长会议讲话》" in short.text


def test_a_quote_from_a_repealed_document_says_so(answerer, monkeypatch):
    _with_document_meta(answerer, monkeypatch, status="已废止")
    answer = answerer.answer("海燕归巢计划是做什么的？")
    assert "注：《在全市组织部长会议上的讲话摘要》（2018年2月6日）已废止，请以现行文件为准。" in answer.text
    assert answer.to_json()["passages"][0]["status"] == "已废止"


def test_a_related_item_brackets_its_section_once(answerer):
    def hit(section: tuple[str, ...], n: int) -> Hit:
        return Hit(Chunk(f"c{n}", "d", "2022年政府工作报告", section, "正文。", 0, 3), 0.5, 0.5, 1.0, n + 1, n + 1, n)

    text = answerer.related_text("问题", [hit(("三、任务", "（二）着力稳市场主体保就业，加大宏观政策实施力度"), 0),
                                         hit(("第一章总则", "第三条"), 1), hit((), 2)], "", ["甲", "乙", "丙"])
    items = [line for line in text.splitlines() if line[:2] in ("1.", "2.", "3.")]
    assert items == ["1. 《2022年政府工作报告》（二）着力稳市场主体保就业，加…：甲",
                     "2. 《2022年政府工作报告》（第三条）：乙", "3. 《2022年政府工作报告》：丙"]


def test_more_offers_the_passages_not_far_below_the_best():
    def hit(score: float, n: int) -> Hit:
        chunk = Chunk(f"c{n}", "d", "文件", (), f"第{n}段。", 0, 1)
        return Hit(chunk, score, 0.5, 1.0, n + 1, n + 1, n)

    hits = [hit(s, n) for n, s in enumerate([0.6, 0.4, MORE_MIN_RATIO * 0.6, 0.1, 0.05])]
    assert [h.position for h in more_pool(hits)] == [0, 1, 2]  # down to the ratio of the best, not below
    assert len(more_pool([hit(0.5, n) for n in range(MORE_LIMIT + 3)])) == MORE_LIMIT
    assert more_pool([]) == []
