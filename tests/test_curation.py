"""Curation without Flask: sensitive-word matching, keyword matching, official-answer files and matching,
grouping of the unanswered queue."""

import io

import numpy as np
import pytest

from bot.curation import faq as faq_files
from bot.curation.faq import FaqMatcher, faq_key
from bot.curation.keywords import KeywordReplies
from bot.curation.sensitive import MASK_CHAR, SensitiveWords
from bot.curation.store import Faq
from bot.curation.unanswered import collect, group


def test_sensitive_words_find_every_occurrence_and_mask_keeps_length():
    words = SensitiveWords([(1, "赌博", "block"), (2, "ABC", "mask"), (3, "博彩", "mask")])
    text = "关于赌博和abc，还有博彩。"
    masked, found = words.mask(text)
    assert masked == f"关于{MASK_CHAR * 2}和{MASK_CHAR * 3}，还有{MASK_CHAR * 2}。"
    assert len(masked) == len(text)
    assert sorted(f.word_id for f in found) == [1, 2, 3]
    assert [f.word for f in words.blocking(text)] == ["赌博"]
    assert words.blocking("党员的义务") == [] and words.mask("党员的义务") == ("党员的义务", [])


def test_overlapping_sensitive_words_mask_the_union():
    words = SensitiveWords([(1, "甲乙", "mask"), (2, "乙丙丁", "mask")])
    assert words.mask("一甲乙丙丁二")[0] == "一" + MASK_CHAR * 4 + "二"


def test_keyword_replies_exact_then_longest_contained():
    replies = KeywordReplies([
        {"id": 1, "keyword": "值班电话", "match": "exact", "reply": "A"},
        {"id": 2, "keyword": "电话", "match": "contains", "reply": "B"},
        {"id": 3, "keyword": "组织部电话", "match": "contains", "reply": "C"},
    ])
    assert replies.match("值班电话！").reply == "A"  # end punctuation and width ignored
    assert replies.match("  值班电话 ").reply == "A"
    assert replies.match("请问组织部电话是多少").reply == "C"
    assert replies.match("你们的电话").reply == "B"
    assert replies.match("怎样防止干部带病提拔") is None


def test_faq_key_ignores_width_case_punctuation_and_question_particles():
    assert faq_key("党员每月交多少党费？") == faq_key(" 党员每月交多少党费吗 ") == faq_key("党员每月交多少党费?")
    assert faq_key("ＧＤＰ是什么") == faq_key("gdp是什么")


def test_faq_matcher_exact_and_close_bars():
    v = np.zeros(4, dtype=np.float32)
    v[0] = 1
    faq = Faq(id=7, question="党员每个月要交多少党费？", alternatives=["党费交多少"], answer="按月交纳。",
              vectors=np.vstack([v, v]))
    matcher = FaqMatcher([faq], dimension=4)
    exact = matcher.match("党员每个月要交多少党费", lambda: pytest.fail("an exact match embeds nothing"))
    assert exact is not None and exact.how == "exact" and exact.faq.id == 7
    near = np.array([0.99, 0.141, 0, 0], dtype=np.float32)
    close = matcher.match("党员每个月交多少党费呀？", lambda: near)
    assert close is not None and close.how == "close" and close.cosine >= 0.96 and close.overlap >= 0.4
    far = np.array([0.9, 0.436, 0, 0], dtype=np.float32)  # cosine 0.9: below the bar
    assert matcher.match("党员每个月交多少党费呀？", lambda: far) is None
    # no shared bigrams: not even embedded
    assert matcher.match("红烧肉怎么做", lambda: pytest.fail("no overlap, no embedding")) is None


def test_faq_file_round_trip_csv_and_xlsx():
    faqs = [Faq(id=1, question="党费怎么交？", alternatives=["交党费的方式", "党费如何缴纳"], answer="每月交纳，可线上。",
                source="《党章》第八条"),
            Faq(id=2, question="值班电话", alternatives=[], answer="0570-1234567\n工作日 9:00-17:00")]
    for name, data in (("a.csv", faq_files.to_csv(faqs)), ("a.xlsx", faq_files.to_xlsx(faqs))):
        back = faq_files.read_file(name, data)
        assert [(f.question, f.alternatives, f.answer, f.source) for f in back] == \
               [(f.question, f.alternatives, f.answer, f.source) for f in faqs]


def test_faq_file_errors_name_the_row():
    with pytest.raises(faq_files.FaqFileError, match="表头"):
        faq_files.read_file("a.csv", b"a,b\n1,2\n")
    with pytest.raises(faq_files.FaqFileError, match="第 3 行"):
        faq_files.read_file("a.csv", "问题,答案\n问一,答一\n问二,\n".encode())
    with pytest.raises(faq_files.FaqFileError, match="xlsx"):
        faq_files.read_file("a.xlsx", b"not a zip")
    gbk = "问题,答案\n党费怎么交,每月交纳\n".encode("gb18030")
    assert faq_files.read_file("a.csv", gbk)[0].answer == "每月交纳"
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(faq_files.to_xlsx([])))
    assert [c.value for c in book.active[1]] == faq_files.EXPORT_HEADER


def test_unanswered_entries_count_and_group_by_closeness():
    rows = [("红烧肉怎么做？", "declined", 1.0), ("红烧肉怎么做", "declined", 5.0), ("红烧肉咋做", "related", 3.0),
            ("明天天气如何", "declined", 2.0), ("已处理的问题", "declined", 9.0)]
    entries = collect(rows, skip=lambda key: key == faq_key("已处理的问题"))
    assert [(e.question, e.count, e.last_asked) for e in entries][0] == ("红烧肉怎么做", 2, 5.0)
    vectors = {"红烧肉怎么做": [1, 0], "红烧肉咋做": [0.98, 0.199], "明天天气如何": [0, 1]}
    groups = group(entries, lambda q: np.array(vectors[q], dtype=np.float32))
    assert [(g.question, g.count, g.last_asked, len(g.entries)) for g in groups] == [
        ("红烧肉怎么做", 3, 5.0, 2), ("明天天气如何", 1, 2.0, 1)]
    lines = groups[0].eval_lines().splitlines()
    assert len(lines) == 2 and '"gold": []' in lines[0] and '"q": "红烧肉咋做"' in lines[1]


def test_curation_reads_do_not_wait_for_a_writer(tmp_path):
    """Every message checks the curation version: on SQLite that read must not queue behind a write
    transaction held elsewhere (a re-index, an admin's edit, another worker's log write)."""
    import sqlite3
    import threading

    from bot.curation.store import CurationStore
    from bot.store import BotStore

    path = tmp_path / "bot.sqlite3"
    store = BotStore.open(f"sqlite:///{path}")
    curation = CurationStore(store.engine)
    before = curation.version()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    done: list[object] = []
    reader = threading.Thread(target=lambda: done.extend([curation.version(), curation.words(),
                                                          curation.settings(), store.get_state("u", 60)]))
    reader.start()
    reader.join(5)  # a read that takes the write lock would wait out the 30 s busy timeout
    finished_while_locked = not reader.is_alive()
    writer.execute("ROLLBACK")
    writer.close()
    reader.join()
    assert finished_while_locked and done[0] == before
