import unicodedata

import jieba
import pytest

from index.tokenize import STOP_WORDS, WORD, Tokenizer, find_coined_terms, nfkc


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(["海燕归巢", "凡提四必"])


def test_normalise_nfkc_traditional_and_space(tokenizer):
    assert tokenizer.normalize("怎樣防止幹部帶病提拔？ ＡＢＣ１２３") == "怎样防止干部带病提拔? abc123"


def test_traditional_and_simplified_queries_tokenize_alike(tokenizer):
    assert tokenizer.tokens("怎樣防止幹部帶病提拔") == tokenizer.tokens("怎样防止干部带病提拔")


def test_coined_terms_stay_whole_and_keep_their_parts(tokenizer):
    tokens = tokenizer.tokens("实施“海燕归巢”计划")
    assert "海燕归巢" in tokens
    assert "计划" in tokens
    assert "凡提四必" in tokenizer.tokens("落实好“凡提四必”")


def test_stop_words_and_punctuation_are_dropped(tokenizer):
    tokens = tokenizer.tokens("请问，这篇讲话是谁讲的？")
    assert "请问" not in tokens and "的" not in tokens and "？" not in tokens and "?" not in tokens
    assert "讲话" in tokens


def test_find_coined_terms():
    text = "落实好“凡提四必”、党委书记“双签字”等制度，打好“一二三四”组合拳，说了“好的，我们走”。"
    assert find_coined_terms([text]) == ["一二三四", "凡提四必", "双签字"]


def test_private_tokenizers_do_not_share_words():
    a = Tokenizer(["上下管育爱"])
    b = Tokenizer()
    assert "上下管育爱" in a.tokens("上下管育爱")
    assert "上下管育爱" not in b.tokens("上下管育爱")


@pytest.mark.parametrize("question,kept,dropped", [
    ("预备党员的预备期是多长时间？", ["预备期"], ["多长时间", "时间", "长时间"]),
    ("对党员的纪律处分有哪几种？", ["纪律处分"], ["哪几种", "几种", "种"]),
    ("识别干部的“五法”是哪五法？", ["五法"], ["哪五法"]),
    ("党的纪律主要包括哪些方面？", ["党的纪律"], ["哪些方面", "方面"]),
    ("怎样才能成为预备党员？", ["预备党员"], ["怎样才能", "才能"]),
    ("党费怎么办？", ["党费"], ["怎么办"]),
    ("两个确立是什么意思？", ["确立"], ["意思"]),
    ("啥时候召开党代会？", ["党代会"], ["啥时候", "时候"]),
    ("党代会是什么时候召开的？", ["党代会"], ["时候"]),
])
def test_question_phrases_leave_only_what_they_name(question, kept, dropped):
    tokenizer = Tokenizer(["五法"])
    for tokens in (tokenizer.tokens(question), tokenizer.terms(question)):
        assert all(word in tokens for word in kept), tokens
        assert not any(word in tokens for word in dropped), tokens


def test_search_mode_matches_jieba_outside_question_phrases(tokenizer):
    text = "中华人民共和国监察法规定，监察机关依法独立行使监察权。"
    assert sorted(tokenizer.tokens(text)) == sorted(
        w for w in tokenizer._jieba.cut_for_search(tokenizer.normalize(text)) if WORD.search(w) and w not in STOP_WORDS)


@pytest.mark.parametrize("question,action", [
    ("个人所得税怎么申报？", "申报"),
    ("怎样防止干部带病提拔？", "防止"),
    ("专业化干部队伍怎么建设？", "建设"),
    ("怎么才能当选村委会主任？", "当选"),  # past the modal
    ("红烧肉怎么做？", None),  # one character names no action
    ("今天衢州天气怎么样？", None),  # how it is, not how to
    ("怎样的干部才是好干部？", None),  # what kind
    ("党费怎么办？", None),
    ("如何理解“两个确立”？", None),  # what it means, not how to do it
    ("海燕归巢计划是做什么的？", None),
])
def test_asked_action_of_how_to_questions(question, action):
    assert Tokenizer().asked_action(question) == action


def test_names_are_the_coined_terms_jieba_does_not_know():
    tokenizer = Tokenizer(["村情通", "凡提四必", "一刀切", "牛鼻子"])
    assert tokenizer.names == {"村情通", "凡提四必"}
    assert set(tokenizer.user_words) == {"村情通", "凡提四必", "一刀切", "牛鼻子"}


@pytest.mark.parametrize("text", ["海燕归巢计划，２０２２年（一）", "㈠党员①ＡＢＣ", "⼀把手", "﨑", "plain ascii", ""])
def test_nfkc_is_unicodedatas(text):
    assert nfkc(text) == unicodedata.normalize("NFKC", text)
    assert all(nfkc(chr(c)) == unicodedata.normalize("NFKC", chr(c)) for c in range(0xFF00, 0xFFF0))


def test_normalize_skips_opencc_only_where_opencc_would_change_nothing(tokenizer):
    """``converted_chars`` lets a text with no character OpenCC's tables convert skip the conversion; every
    line of the documents, the members' words dictionary and Traditional questions normalise as a full
    conversion does, the phrases that hold no Traditional character (沈默) included."""
    from opencc import OpenCC

    from index.synonyms import DEFAULT_SYNONYMS
    from tests.conftest import ROOT, SHARED

    cc = OpenCC("t2s")
    lines = [line for path in sorted((SHARED / "docs").glob("*.txt")) for line in path.read_text("utf-8").splitlines()]
    lines += next((ROOT / "corpus").glob("*.txt")).read_text("utf-8").splitlines()
    lines += DEFAULT_SYNONYMS.read_text("utf-8").splitlines()
    lines += ["怎樣防止幹部帶病提拔？", "黨員連續多久不參加組織生活", "他沈默了很久", "打撈沈船", "發展ＡＩ產業２０１９"]
    skipped = 0
    for line in lines:
        expected = " ".join(cc.convert(nfkc(line)).lower().split())
        assert tokenizer.normalize(line) == expected, line
        skipped += tokenizer._converted.isdisjoint(nfkc(line))
    assert skipped > len(lines) / 2  # most of the documents' text needs no conversion
    assert tokenizer.normalize("他沈默了") == "他沉默了"


def test_tokenizers_share_jiebas_dictionary_read_once_but_not_their_coined_terms():
    from index.tokenize import base_dictionary

    coined = Tokenizer(["凡提四必"])
    plain = Tokenizer()
    assert "凡提四必" in coined.cut("落实凡提四必制度") and "凡提四必" not in plain.cut("落实凡提四必制度")
    assert "凡提四必" not in base_dictionary()[0]
    assert plain.cut("怎样防止干部带病提拔") == list(jieba.Tokenizer().cut("怎样防止干部带病提拔"))  # as jieba reads it itself
