"""One tokenizer for documents and queries alike: normalisation, a private jieba, stop words.

Normalisation (both sides, the same way): NFKC, Traditional -> Simplified (OpenCC t2s), lower case,
white space folded. Terms that documents coin in quotation marks (“凡提四必”, “海燕归巢”) are found
automatically and become dictionary words, so jieba keeps them whole; search-mode cutting also emits
their known sub-words, so a query that names only part of a term still matches.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path

import jieba
from opencc import OpenCC

COINED_TERM = re.compile(r"[“「『\"]([^“”「」『』\"\s，。、；：？！,.;:?!]{2,10})[”」』\"]")
HAS_CJK = re.compile(r"[\u4e00-\u9fff]")
WORD = re.compile(r"[\w\u4e00-\u9fff]")
CJK_RUN = re.compile(r"[\u4e00-\u9fff]+|[a-z0-9]+(?:\.[0-9]+)?")

# Function words and question words: they say how a question is asked, not what it is about.
STOP_WORDS = frozenset(
    """
    的 了 是 在 和 与 及 或 也 都 就 而 又 把 被 对 从 向 以 为 于 之 其 这 那 该 此 个 些 等 着 过 地 得
    吗 呢 吧 啊 呀 么 嘛 哦 哪 哪个 哪些 哪里 哪儿 哪几 几 几个 多少 什么 啥 怎么 怎样 怎么样 如何 为什么 为何
    是否 有没有 是不是 能否 可以 能 会 要 应 应该 需要 请问 请 问 一下 我 我们 你 你们 他 她 它 他们 谁
    有 有些 有哪些 哪几个 吗？ 的话 一个 这个 那个 这些 那些 这样 那样 主要 具体 指 是什么 做 干 干什么
    该怎么 还 呢？ 关于 方面 情况 内容 问题 规定 这篇 这份 这次 这项 这里 本 给 讲的 说的 提到 提出
    哪次 哪年 哪天 哪位 哪家 哪种 哪类 哪项 何时 什么时候 多久 多长
    怎么办 怎样才能 怎么才能 如何才能 才能 啥时候 啥时 时候 意思 什么意思 怎么回事 回事 咋 咋办
    """.split()
)
# jieba keeps some question phrases whole (哪几种, 多长时间, 哪五法). The question word goes; what follows
# stays when it names something (五法) and goes when it only counts or measures (种, 时间).
QUESTION_PREFIX = re.compile(r"^(哪些|哪几|哪|几|多少|多长|多久|多大|多高|什么样|什么|啥)(.+)$")
MEASURE_WORDS = frozenset("时间 时候 方面 些 样".split())
# Words that make a how-to question; the content word after one is the action asked about, unless it is
# the asker's own understanding (如何理解…, 怎么看待…): that asks what something means, which documents
# explain without naming the act.
HOW_WORDS = frozenset("怎么 怎样 怎么样 如何 怎样才能 怎么才能 如何才能".split())
UNDERSTANDING = frozenset("理解 看待 认识 领会 解读 把握 看".split())


FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}  # ！ … ～ -> ! … ~, NFKC's own mapping


def nfkc(text: str) -> str:
    """``unicodedata.normalize("NFKC", text)``, in half the time for the documents' text: what NFKC changes
    in it is nearly always full-width punctuation, digits and letters (，２０１９), which map one to one to
    ASCII; only a text that still needs more (㈠, ①, compatibility ideographs) goes through NFKC."""
    text = text.translate(FULL_WIDTH)
    return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)


@functools.cache
def base_dictionary() -> tuple[dict[str, int], int]:
    """jieba's own prefix dictionary (word -> frequency) and its total, read once a process (half a second:
    it is unmarshalled from jieba's cache file). Each ``Tokenizer`` gets a copy, to which it adds the coined
    terms, so an index load or a re-index no longer reads it again."""
    reader = jieba.Tokenizer()
    reader.initialize()
    return reader.FREQ, reader.total


def converted_chars(cc: OpenCC) -> frozenset[str]:
    """Characters one of which is in every text ``cc`` changes: a text with none of them converts to
    itself, so ``Tokenizer.normalize`` skips OpenCC's conversion (pure Python, most of a normalisation) for
    it. Every entry of its dictionaries that changes something either is a Traditional character or holds
    one; the few that hold none (沈默 -> 沉默) give their first character."""
    changing = [k for group in cc._dict_chain_data for entry in group for k, v in entry[2].items() if v != k]
    single = {k for k in changing if len(k) == 1}
    return frozenset(single | {k[0] for k in changing if len(k) > 1 and single.isdisjoint(k)})


# What a text's tokens depend on besides the text and the coined terms: this module's rules (its source),
# jieba's dictionary and OpenCC's tables (their versions). Part of ``Tokenizer.fingerprint``.
RULES = hashlib.sha256(Path(__file__).read_bytes() + f"jieba {jieba.__version__}; opencc "
                       f"{version('opencc-python-reimplemented')}".encode()).hexdigest()


class Tokenizer:
    """A private jieba tokenizer with the corpus's coined terms as dictionary words.

    ``names`` are the coined terms jieba's own dictionary does not know (村情通, 凡提四必): names the
    documents made for their own policies, as opposed to quoted common words (一刀切, 牛鼻子).
    """

    def __init__(self, user_words: Iterable[str] = ()) -> None:
        self._jieba = jieba.Tokenizer()
        frequencies, total = base_dictionary()
        self._jieba.FREQ, self._jieba.total, self._jieba.initialized = dict(frequencies), total, True
        self._cc = OpenCC("t2s")
        self._converted = converted_chars(self._cc)
        self.user_words: list[str] = []
        self.names: set[str] = set()
        for word in sorted(set(user_words)):
            self.add_word(word)

    def add_word(self, word: str) -> None:
        word = self.normalize(word)
        if word and word not in self.user_words:
            if not self._jieba.FREQ.get(word):
                self.names.add(word)
            self._jieba.add_word(word, freq=max(self._jieba.suggest_freq(word, tune=False), 5))
            self.user_words.append(word)

    @property
    def fingerprint(self) -> str:
        """Names everything a text's tokens and bigrams depend on besides the text (``RULES`` and the
        dictionary words added): two tokenizers with one fingerprint cut every text alike, so a build may
        take a passage's tokens from the cache (``index.store._lexical``)."""
        return hashlib.sha256("\n".join([RULES, *self.user_words]).encode()).hexdigest()

    def normalize(self, text: str) -> str:
        text = nfkc(text)
        if not self._converted.isdisjoint(text):
            text = self._cc.convert(text)
        return " ".join(text.lower().split())

    def cut(self, text: str) -> list[str]:
        """Precise-mode jieba words of the normalised text, every piece kept (they join back to it)."""
        return list(self._jieba.cut(self.normalize(text)))

    def terms(self, text: str, normalized: bool = False) -> list[str]:
        """The query's concepts, each once: precise-mode jieba (no sub-words), minus stop words."""
        return _content(self._jieba.cut(text if normalized else self.normalize(text)))

    def tokens(self, text: str, normalized: bool = False) -> list[str]:
        """Index/query terms: search-mode jieba over normalised text, minus stop words and punctuation.

        Search mode is precise mode plus each long word's known 2- and 3-character sub-words (as
        jieba's ``cut_for_search``), except inside a question phrase: 多长时间 yields no 时间.
        """
        pieces: list[str] = []
        for word in self._jieba.cut(text if normalized else self.normalize(text)):
            if len(word) > 2 and not QUESTION_PREFIX.match(word):
                pieces += [word[i:i + n] for n in (2, 3) if len(word) > n
                           for i in range(len(word) - n + 1) if self._jieba.FREQ.get(word[i:i + n])]
            pieces.append(word)
        return _content(pieces)

    def bigrams(self, text: str, normalized: bool = False) -> list[str]:
        """Character bigrams of the normalised text's Chinese runs, and its Latin/number words whole.

        The second lexical channel: it needs no dictionary, so it still matches where jieba cuts a typo,
        a rare name or a member's phrasing differently in the question than in the passage. Bigrams that
        are only question words (什么, 怎么) are dropped; a one-character run stays a unigram.
        ``normalized``: the text has been through ``normalize`` already (an index build does it once).
        """
        grams: list[str] = []
        for run in CJK_RUN.findall(text if normalized else self.normalize(text)):
            if not HAS_CJK.match(run):
                grams.append(run)
            elif len(run) == 1:
                grams.append(run)
            else:
                grams += [g for g in (run[i:i + 2] for i in range(len(run) - 1)) if g not in STOP_WORDS]
        return grams

    def asked_action(self, text: str) -> str | None:
        """The action a how-to question asks about (个人所得税怎么申报 -> 申报); None for other questions.

        The action may follow a modal (怎么才能当选 -> 当选). A single character (怎么做, 怎么考) is too
        vague to name an action, 怎样的 asks what kind, not how, and 如何理解 asks what something means:
        all give None.
        """
        words = [w for w in self._jieba.cut(self.normalize(text)) if w.strip()]
        for i, word in enumerate(words):
            if word in HOW_WORDS:
                following = words[i + 1:i + 3]
                if following[:1] == ["的"]:
                    return None
                action = _content(following)[:1]
                if not action or len(action[0]) < 2 or action[0] in UNDERSTANDING:
                    return None
                return action[0]
        return None


def _content(pieces: Iterable[str]) -> list[str]:
    """Drop white space, punctuation, stop words and question words."""
    words = []
    for piece in pieces:
        piece = piece.strip()
        if piece in STOP_WORDS or not WORD.search(piece):
            continue
        question = QUESTION_PREFIX.match(piece)
        if question:
            piece = question.group(2)
            if len(piece) < 2 or piece in STOP_WORDS or piece in MEASURE_WORDS:
                continue
        words.append(piece)
    return words


def find_coined_terms(texts: Iterable[str]) -> list[str]:
    """Terms a document puts in quotation marks: the names it coins for its own policies."""
    terms = set()
    for text in texts:
        for m in COINED_TERM.finditer(text):
            term = m.group(1)
            if HAS_CJK.search(term):
                terms.add(term)
    return sorted(terms)
