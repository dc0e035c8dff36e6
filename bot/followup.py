"""Follow-up questions: a message that leans on the member's previous question, made whole.

Members ask "党员有哪些权利？" and then "那义务呢？". Without an LLM, the follow-up is recognised by its
form and combined with the previous question by rules:

- ``那X呢`` / ``X呢`` / a bare word ``X`` that can only be part of a question (a year or a congress, or
  one short dictionary word such as 义务; a compound topic such as 乡村振兴 or a coined name is a new
  question): X takes the place of the word of the previous question it stands beside — a year or a
  congress replaces the year or congress (or goes in front); X replaces a word it shares characters with
  (正式党员 for 预备党员); otherwise the readings with X in the place of one of the last content
  words, and "<topic>的X" (unless the question asked for a word of X's kind: 哪些权利), are compared and
  the one retrieval is most confident about wins ("党员有哪些义务？"), near-ties (``READING_MARGIN``) going
  to that order;
- ``它/这个/该/此…``: the pronoun is replaced by the previous question's topic;
- ``具体怎么做`` and its kin: "<topic>具体怎么做？";
- ``还有呢``: the next passages of the previous question, as 更多.

Only messages of these forms are touched: a self-contained question is never rewritten. The previous
question is the member's last one in the shared store (every worker sees it) if asked within
``FOLLOWUP_SECONDS``; a follow-up form without one gets a polite request to ask the whole question.
The reply says what was understood ("您问的是：党员有哪些义务？").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from index.tokenize import STOP_WORDS, Tokenizer

FOLLOWUP_SECONDS = 600.0  # a follow-up leans on a question asked at most this long ago
# Readings whose confidence is within this of the best are a tie, and the one listed first (the nearest word
# replaced) wins: P(right) of one wording moves by up to a tenth between two builds of the same library
# (党员有哪些义务？ 0.61 and 0.66, 党员权利的义务是什么？ 0.71 and 0.66), so smaller gaps say nothing.
READING_MARGIN = 0.15
QUESTION_MARK = "？"  # a follow-up made whole ends with it, and its readings are scored with it
# what comes before the word a question asks for (有哪些权利, 的原则是什么), not before its topic
ASKED_BEFORE = re.compile(r"(?:哪些|哪几种|哪几项|哪几个|哪几|哪种|哪类|什么|几项|几种|的)$")

KIND_REWRITE, KIND_MORE = "rewrite", "more"

END_PUNCT = "？?。.!！~～ "
QUESTION_WORDS = re.compile(r"什么|哪|怎么|怎样|如何|多少|多久|多长|是否|为什么|为何|几|吗|谁|啥|有没有|是不是|能否")
MORE_LIKE = re.compile(
    r"^(那|那么)?(还有呢|还有吗|还有没有|还有别的吗|还有其他的吗|还有别的呢|其他的呢|别的呢|其他呢|然后呢|接着说)$"
)
HOW = re.compile(
    r"^(那|那么)?(具体|具体来说|具体地)?(应该|应当|要|该|又该|需要)?"
    r"(怎么做|怎么办|如何做|怎样做|如何落实|怎么落实|如何执行|怎么执行|如何操作|怎么操作|如何实施|怎么实施|怎么弄|如何办理|怎么办理)$"
    r"|^(那|那么)?具体(呢|说说|讲讲|一点|点|些)?$"
)
PRONOUN = re.compile(r"^(那|那么|请问)?(它们|它|这个|这些|这项|这一|该|此|其)(.+)$")
NOT_PRONOUN = {  # 其中, 其他, 该如何, 此外 …: not a pronoun standing for the previous topic
    "其": ("中", "他", "它", "实", "次", "后", "外", "余"), "该": ("如何", "怎么", "怎样", "不该", "是", "当", "有"),
    "此": ("外", "后", "前", "时"),
}
WHAT_ABOUT = re.compile(r"^(那么|那)(.{1,16}?)(呢|怎么样|又如何|又怎样|的呢)?$|^(.{1,12}?)(呢|的呢)$")
BARE = re.compile(r"^[\u4e00-\u9fffA-Za-z0-9]{2,10}$")
YEAR = re.compile(r"(?:19|20)\d{2}年?|(?<!\d)\d{2}年|[一二三四五六七八九十]{1,3}大"
                  r"|第[一二三四五六七八九十]+次全国代表大会")
QUESTION_TAIL = re.compile(
    r"(的)?(是什么|是指什么|指什么|有哪些|有什么|是哪些|是多少|有多少|是多久|多长时间|怎么做|如何|怎么样|是怎样的)$"
)
# Short messages that are not topics: thanks, acknowledgements, goodbyes.
CHAT = frozenset("""
    谢谢 谢谢你 谢谢您 多谢 感谢 好的 好吧 好 嗯 嗯嗯 哦 噢 收到 明白 明白了 知道了 了解 了解了 懂了 可以 行 行吧
    没事 没有了 没了 不用了 再见 拜拜 辛苦了 辛苦 对 对的 是的 不是 不对 错了 没用 有用 厉害 很好 不错 ok OK 好嘞
""".split())
FLAT = str.maketrans("", "", " \t\r\n")


@dataclass
class FollowUp:
    kind: str  # rewrite: answer ``question``; more: the next passages of the previous question
    question: str  # the question as understood
    words: str = ""  # the new words the member typed (for a reply when nothing came before)


def compact(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(FLAT).strip(END_PUNCT)


def is_followup_form(text: str, excluded: Callable[[str], bool] = lambda _t: False) -> bool:
    """True when ``text`` reads as leaning on a previous question (whatever came before)."""
    return _form(compact(text), excluded) is not None


def _form(text: str, excluded: Callable[[str], bool]) -> tuple[str, str] | None:
    """(form, the new words) of a follow-up message, or None for a self-contained one."""
    if not text or excluded(text):
        return None
    if MORE_LIKE.match(text):
        return KIND_MORE, ""
    if HOW.match(text):
        return "how", ""
    m = PRONOUN.match(text)
    if m and not m.group(3).startswith(NOT_PRONOUN.get(m.group(2), ())) and not QUESTION_WORDS.fullmatch(m.group(3)):
        return "pronoun", m.group(3)
    m = WHAT_ABOUT.match(text)
    if m:
        words = (m.group(2) or m.group(4) or "").strip("的，, ")
        if words and not QUESTION_WORDS.search(words) and words not in CHAT:
            return "about", words
    if BARE.match(text) and text not in CHAT and not QUESTION_WORDS.search(text):
        return "bare", text
    return None


def resolve(text: str, previous: str | None, tokenizer: Tokenizer, confidence: Callable[[str], float],
            excluded: Callable[[str], bool] = lambda _t: False) -> FollowUp | None:
    """The follow-up ``text`` made whole with ``previous`` (the member's last question, or None).

    None: ``text`` is self-contained (or a bare word with nothing to lean on) and is answered as it is.
    A follow-up form with no ``previous`` comes back with an empty ``question``.
    ``confidence`` scores a candidate reading (retrieval's P(the first passage answers)).
    """
    form = _form(compact(text), excluded)
    if form is None:
        return None
    kind, words = form
    if kind == "bare" and not parallel_word(words, tokenizer):
        return None  # a topic of its own (乡村振兴, 海燕归巢计划): a new question, answered as it is
    if not previous:
        return None if kind == "bare" else FollowUp(kind if kind == KIND_MORE else KIND_REWRITE, "", words)
    previous = previous.strip()
    core = previous.rstrip(END_PUNCT)
    mark = QUESTION_MARK
    if kind == KIND_MORE:
        return FollowUp(KIND_MORE, previous)
    if kind == "how":
        return FollowUp(KIND_REWRITE, f"{topic(core)}具体怎么做{mark}")
    if kind == "pronoun":
        subject = topic(core)
        rest = words.rstrip(END_PUNCT)
        first = next(iter(tokenizer.cut(rest)), "")
        if first and first in subject and len(first) >= 2 and rest.startswith(first):
            rest = rest[len(first):]
        return FollowUp(KIND_REWRITE, f"{subject}{rest}{mark}")
    return FollowUp(KIND_REWRITE, combine(core, words, tokenizer, confidence) + mark)


def parallel_word(word: str, tokenizer: Tokenizer) -> bool:
    """A bare word that can only be part of a question: a year or congress, or one short dictionary word
    (义务, 权利) — not a compound topic or one of the documents' coined names."""
    if YEAR.fullmatch(word):
        return True
    return len(word) <= 3 and len(tokenizer.cut(word)) == 1 and tokenizer.normalize(word) not in tokenizer.names


def topic(question: str) -> str:
    """What a question is about: the question without its question words (党员有哪些权利 -> 党员权利)."""
    text = re.sub(r"^(请问|我想问一下|我想问|想问一下|想问)", "", question)
    text = QUESTION_TAIL.sub("", text)
    text = re.sub(r"有哪些|有什么|是什么|是哪些|哪些|什么|怎么样|怎么|怎样|如何|多少|吗|呢|吧", "", text)
    return text.strip("的，,、 ") or question


def content_words(question: str, tokenizer: Tokenizer) -> list[str]:
    """The question's content words, in order (no question or function words)."""
    return [w for w in tokenizer.cut(question)
            if len(w) >= 2 and w not in STOP_WORDS and re.search(r"[\u4e00-\u9fffA-Za-z0-9]", w)
            and not QUESTION_WORDS.fullmatch(w)]


def combine(previous: str, words: str, tokenizer: Tokenizer, confidence: Callable[[str], float]) -> str:
    """``previous`` with ``words`` in the place of the word they stand beside (see the module docstring)."""
    if YEAR.search(words):
        found = YEAR.search(previous)
        if found:
            return previous[:found.start()] + words + previous[found.end():]
        return words + previous
    candidates = [w for w in content_words(previous, tokenizer) if w != words]
    shared = [w for w in candidates if len(set(w) & set(words)) >= 2]
    if shared and "的" not in words:  # 正式党员 beside 预备党员: in place of the word it shares characters with
        return _replace_last(previous, max(shared, key=lambda w: len(set(w) & set(words))), words)
    readings = [_replace_last(previous, w, words) for w in reversed(candidates[-3:])]
    # "<topic>的X" asks for X of the whole previous topic; when the previous question asked for a word of X's
    # kind (哪些权利, 的原则 before 义务, 程序), X stands in for it, and a reading keeping both is no reading
    if not (candidates and parallel_word(words, tokenizer) and asked_for(previous, candidates[-1])):
        tail = QUESTION_TAIL.search(previous)
        readings.append(f"{topic(previous)}的{words}{tail.group(2) if tail else '是什么'}")
    readings = [r for r in dict.fromkeys(readings) if r != previous]
    if len(readings) == 1:
        return readings[0]
    scored = [(confidence(r + QUESTION_MARK), r) for r in readings]
    best = max(c for c, _ in scored)
    return next(r for c, r in scored if c >= best - READING_MARGIN)


def asked_for(question: str, word: str) -> bool:
    """``word`` is what ``question`` asks for: it follows a question word or 的 (有哪些权利, 的原则是什么),
    rather than being its topic (海燕归巢计划是什么)."""
    at = question.rfind(word)
    return at > 0 and ASKED_BEFORE.search(question[:at]) is not None


def _replace_last(text: str, old: str, new: str) -> str:
    at = text.rfind(old)
    return text if at < 0 else text[:at] + new + text[at + len(old):]
