"""The bot's Chinese reply templates, as named constants with one ``render()``.

Replies are plain text (WeChat shows no Markdown). ``render`` raises on a missing field rather than
leaving a blank in front of a user.
"""

from __future__ import annotations

import string

WECHAT_MAX_BYTES = 2048  # WeChat silently drops a passive reply whose Content is longer (UTF-8 bytes)

GREETING = (
    "您好！我是政策问答助手，可以根据已收录的政策文件回答您的问题，并注明出处。\n"
    "您可以这样问：\n{examples}\n"
    "发送“帮助”可查看使用说明。"
)

HELP = (
    "使用说明：\n"
    "1. 直接发送您的问题，我会从已收录的文件中找出相关原文，并注明文件和章节。\n"
    "2. 文件里没有答案时，我会如实告诉您，不会猜测。\n"
    "3. 发送“更多”可查看同一问题的其他相关段落。\n"
    "例如：\n{examples}\n"
    "目前收录的文件：\n{documents}"
)

ANSWER = "关于“{question}”，{source_intro}：\n\n{quotes}{notice}"
QUOTE = "“{text}”\n——《{title}》{section}"
SOURCE_ONE = "文件中是这样说的"
SOURCE_MANY = "文件中有以下相关内容"

ABSTAIN = (
    "抱歉，关于“{question}”，已收录的文件中没有找到能回答这个问题的内容。\n"
    "您可以换一种说法，或用文件中的关键词再问一次，例如：\n{examples}\n"
    "发送“帮助”可查看我能回答哪些问题。"
)

# After a quote from an older document of a series, a repealed or an amended one: which one, and its date.
SERIES_NOTICE = "\n\n注：出自《{title}》（{date}）；最新为《{latest}》（{latest_date}）。"
REPEALED_NOTICE = "\n\n注：《{title}》（{date}）已废止，请以现行文件为准。"
AMENDED_NOTICE = "\n\n注：《{title}》（{date}）已修订，请以修订后的文件为准。"
UNDATED = "日期不详"

# The last line of an answer: the quoted passage in its document (bot.original); WeChat shows the text, tappable.
ORIGINAL_LINK = '\n\n<a href="{url}">查看原文</a>'

RELATED = (
    "没有找到“{question}”的确切答案，以下内容可能相关：\n{items}{notice}\n\n"
    "发送“更多”可查看这些段落的原文，也可以换个说法再问。"
)
RELATED_ITEM = "{number}. 《{title}》{section}：{line}"

EMPTY = "您好，请直接输入您想了解的问题，例如：\n{examples}"

NOT_TEXT = "抱歉，我目前只能理解文字问题。请用文字描述您想了解的内容，例如：\n{examples}"

MISSING_DOCUMENT_NOTICE = "\n\n注：资料库中没有《{document}》，以上内容出自已收录的文件。"
LONG_QUESTION_NOTICE = "\n\n（您的消息较长，我按前 {limit} 个字进行了查找。）"

MORE_HINT = "\n\n发送“更多”可查看其他相关段落。"

MORE = "关于“{question}”，还有以下相关内容：\n\n{quotes}{notice}"

NO_MORE = "关于“{question}”，没有更多相关内容了。您可以换个说法或问别的问题。"

NO_QUESTION_FOR_MORE = "请先发送您的问题；看完回答后，发送“更多”可查看其他相关段落。"

STILL_WORKING = "我还在查找“{question}”的答案，请稍等几秒后再发送“更多”。"

TIMEOUT = "您的问题“{question}”我正在查找，请稍等几秒后发送“更多”获取答案。"

# A follow-up question ("那义务呢？") answered as the whole question it was understood as.
UNDERSTOOD = "您问的是：{question}\n\n"

FOLLOWUP_NO_CONTEXT = (
    "抱歉，我不确定您是接着哪个问题问的（10分钟内没有收到您的提问）。请把问题说完整，例如：\n{examples}"
)
FOLLOWUP_EXAMPLE = "关于{words}有哪些规定？"

VOICE_HEARD = "（您的语音识别为：“{text}”）\n\n"

VOICE_EMPTY = "抱歉，没能识别出您的语音。请直接输入文字问题，例如：\n{examples}"

UNSUPPORTED = "收到您发来的{what}。目前我只能回答用文字提出的政策问题，请用文字描述您想了解的内容，例如：\n{examples}"

WELCOME = (
    "感谢关注！我是政策问答助手，可以根据已收录的政策文件回答您的问题，并注明出处。\n"
    "您可以这样问：\n{examples}\n"
    "发送“帮助”查看使用说明。"
)

ABOUT = (
    "政策问答助手从已收录的政策文件中查找原文来回答问题，每条回答都注明文件和章节；"
    "文件中没有答案时会如实告诉您。目前收录 {count} 份文件。发送“帮助”查看使用说明。"
)

EXAMPLES = "您可以试着这样问：\n{examples}"

RATE_LIMITED = "您发送得有点快，请稍等一分钟再提问。"

INTERNAL_ERROR = "抱歉，系统暂时出了点问题，请稍后再试。"

TRUNCATED_MARK = "……"


class TemplateError(KeyError):
    """A template was rendered without one of its fields."""


class _Strict(dict):
    def __missing__(self, key: str) -> str:
        raise TemplateError(f"template field {key!r} was not given")


def render(template: str, **fields: object) -> str:
    used = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    unknown = set(fields) - used
    if unknown:
        raise TemplateError(f"fields {sorted(unknown)} are not in the template")
    return template.format_map(_Strict(fields))


def bullet_list(items: list[str]) -> str:
    return "\n".join(f"· {item}" for item in items)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))
