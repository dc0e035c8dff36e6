"""The members' words dictionary: its file format, the rewrite, and the shipped dictionary."""

import re

import pytest

from index.synonyms import DEFAULT_SYNONYMS, SynonymError, Synonyms, parse
from tests.conftest import ROOT, SHARED


def test_parse_reads_entries_and_skips_comments():
    entries = parse("# 组织\n村民委员会成员 = 村官 村干部\n\n主要负责人 = 一把手，第一责任人\n")
    assert entries == [("村民委员会成员", ["村官", "村干部"]), ("主要负责人", ["一把手", "第一责任人"])]


@pytest.mark.parametrize("line", ["村官 村干部", "主要负责人 =", "= 一把手"])
def test_a_malformed_line_names_itself(line):
    with pytest.raises(SynonymError, match=r"synonyms:2"):
        parse(f"# ok\n{line}\n")


def test_rewrite_replaces_members_words_longest_first():
    synonyms = Synonyms([("村民委员会成员", ["村官"]), ("纪律检查委员会", ["纪委"]), ("中央纪律检查委员会", ["中纪委"])])
    rewrite = synonyms.rewrite("村官和中纪委是什么关系")
    assert rewrite.text == "村民委员会成员和中央纪律检查委员会是什么关系"
    assert rewrite.replaced == (("村官", "村民委员会成员"), ("中纪委", "中央纪律检查委员会"))
    assert synonyms.rewrite("党员的义务").replaced == ()


def test_only_an_admins_own_words_are_replaced_in_the_question_as_asked():
    # the first entry is an admin's group: its word is the documents' subject; the shipped entry's is not
    synonyms = Synonyms([("海燕归巢", ["小燕回家"]), ("医疗保障", ["医保卡"])], curated=1)
    rewrite = synonyms.rewrite("小燕回家和医保卡")
    assert rewrite.text == "海燕归巢和医疗保障"
    assert rewrite.asked == "海燕归巢和医保卡"  # what the wording model reads
    assert synonyms.normalized(str.lower).rewrite("小燕回家和医保卡").asked == "海燕归巢和医保卡"
    assert Synonyms([("医疗保障", ["医保卡"])]).rewrite("医保卡").asked == "医保卡"


def test_a_word_the_documents_use_is_left_alone():
    synonyms = Synonyms([("主要负责人", ["一把手"])])
    assert synonyms.rewrite("一把手负什么责", known=lambda w: w == "一把手").text == "一把手负什么责"
    assert synonyms.rewrite("一把手负什么责").text == "主要负责人负什么责"


def test_a_variant_inside_its_own_documents_word_is_ignored():
    # 负责人 is part of 主要负责人: rewriting it would double the words the member typed
    synonyms = Synonyms([("主要负责人", ["负责人", "一把手"])])
    assert synonyms.rewrite("主要负责人是谁").text == "主要负责人是谁"


def test_entries_match_on_normalised_text():
    synonyms = Synonyms([("国内生产总值", ["GDP"])], normalize=str.lower)
    assert synonyms.rewrite("gdp增长多少").text == "国内生产总值增长多少"


def test_the_shipped_dictionary_loads():
    synonyms = Synonyms.from_file(DEFAULT_SYNONYMS)
    assert len(synonyms) >= 300
    assert synonyms.canonical["一把手"] == "主要负责人"


def test_every_documents_word_of_the_shipped_dictionary_is_in_a_document():
    """The left side is how the documents say it: each occurs in the speech or in ../shared/docs (white
    space aside, since some texts break lines inside words)."""
    texts = [*(ROOT / "corpus").glob("*.txt"), *(SHARED / "docs").glob("*.txt")]
    text = re.sub(r"\s+", "", "".join(p.read_text(encoding="utf-8") for p in texts))
    entries = parse(DEFAULT_SYNONYMS.read_text(encoding="utf-8"), "synonyms.txt")
    assert len(entries) >= 1000
    assert [canonical for canonical, _ in entries if re.sub(r"\s+", "", canonical) not in text] == []


def test_the_shipped_dictionary_leaves_question_frames_alone():
    """Members' words are words, not question frames: 怎么申报 stays, so the decision still sees the action."""
    synonyms = Synonyms.from_file(DEFAULT_SYNONYMS)
    assert "怎么申报" in synonyms.rewrite("海燕归巢计划怎么申报？").text
    assert synonyms.rewrite("老板欠工资咋整").text != "老板欠工资咋整"  # a situation word is one

