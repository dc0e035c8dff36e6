"""The curation responders and finishers of the reply pipeline (``bot.pipeline`` lists them in order).

Responders, each ``(message, pipeline) -> Reply | None``:
- ``respond_blocked``  — a question with a ``block`` word gets a polite fixed reply and is not searched;
- ``respond_feedback`` — 有用 / 没用 (1 / 2) right after an answer is recorded against that answer;
- ``respond_keyword``  — an admin's keyword reply;
- ``respond_faq``      — an official answer (问答对), before any retrieval.
Finishers, applied to every reply: ``add_feedback_footer`` (answers invite 有用 / 没用),
``remember_answer`` (the member's last answer, which feedback refers to) and ``mask`` (sensitive words
shown as ＊, whatever made the reply). ``respond_event`` answers the welcome and menu CLICK keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot import templates as t
from bot.curation.keywords import keyword_key
from bot.curation.service import Curation

if TYPE_CHECKING:
    from bot.pipeline import Event, Message, Reply, ReplyPipeline

SOURCE_BLOCKED, SOURCE_FEEDBACK, SOURCE_KEYWORD, SOURCE_FAQ = "blocked", "feedback", "keyword", "faq"
SOURCE_EVENT = "event"
FEEDBACK_WORDS = {"有用": "useful", "1": "useful", "有帮助": "useful", "没用": "useless", "2": "useless",
                  "没有用": "useless", "无用": "useless", "没帮助": "useless", "没有帮助": "useless"}

BLOCKED = "抱歉，您的消息中含有不宜讨论的内容，我无法回答。请换一种说法提出与政策文件相关的问题。"
FEEDBACK_FOOTER = "\n\n这条回答对您有帮助吗？回复“1”（有用）或“2”（没用）。"
FEEDBACK_THANKS = {"useful": "感谢您的反馈！很高兴这条回答对您有帮助。",
                   "useless": "感谢您的反馈！我们会据此改进回答。您也可以换个说法再问一次。"}
FAQ_REPLY = "关于“{question}”，官方答复如下：\n\n{answer}{source}"
FAQ_SOURCE = "\n——{source}"


class Responders:
    """The curation responders, bound to one worker's ``Curation``."""

    def __init__(self, curation: Curation) -> None:
        self.curation = curation

    # ------------------------------------------------------------- responders

    def respond_blocked(self, message: Message, pipeline: ReplyPipeline) -> Reply | None:
        from bot.pipeline import Reply

        found = self.curation.words.blocking(message.text)
        if not found:
            return None
        if message.logged:
            self.curation.store.count_hits(f.word_id for f in found)
        return Reply(message.lead + BLOCKED, SOURCE_BLOCKED, extra={"blocked": True})

    def respond_feedback(self, message: Message, pipeline: ReplyPipeline) -> Reply | None:
        from bot.pipeline import Reply

        verdict = FEEDBACK_WORDS.get(keyword_key(message.text))
        if verdict is None or message.user is None or not message.logged:
            return None
        user_hash = pipeline.store.hash_user(message.user)
        answer = self.curation.store.pending(user_hash, self.curation.feedback_ttl)
        if answer is None:
            return None  # not right after an answer: 1 / 有用 is an ordinary message
        feedback_id = self.curation.store.record_feedback(user_hash, verdict, answer)
        return Reply(FEEDBACK_THANKS[verdict], SOURCE_FEEDBACK,
                     extra={"feedback": {"id": feedback_id, "verdict": verdict, "log_id": answer.get("log_id"),
                                         "question": answer.get("question")}})

    def respond_keyword(self, message: Message, pipeline: ReplyPipeline) -> Reply | None:
        from bot.pipeline import Reply

        hit = self.curation.keywords.match(message.text)
        if hit is None:
            return None
        if message.logged:
            self.curation.store.count_keyword(hit.id)
        return Reply(message.lead + hit.reply, SOURCE_KEYWORD, question=message.text,
                     extra={"keyword": {"id": hit.id, "keyword": hit.keyword, "match": hit.match}})

    def respond_faq(self, message: Message, pipeline: ReplyPipeline) -> Reply | None:
        from bot.pipeline import Reply

        text = " ".join(message.text.split())[:200]
        found = self.curation.faqs.match(text, lambda: self.curation.question_vector(text))
        if found is None:
            return None
        faq = found.faq
        question = text if len(text) <= 60 else text[:59] + "…"
        reply_text = message.lead + t.render(FAQ_REPLY, question=question, answer=faq.answer,
                                             source=t.render(FAQ_SOURCE, source=faq.source) if faq.source else "")
        log_id = None
        if message.logged:
            log_id = pipeline.store.log_query(
                channel=message.channel, user=message.user or "", question=message.text, kind="faq",
                abstained=False, top_doc=faq.source or f"问答对 {faq.id}", top_section=None, confidence=None,
                latency_ms=0.0, index_version=None, tier="answer", msg_key=message.key)
        return Reply(reply_text, SOURCE_FAQ, question=message.text, log_id=log_id,
                     extra={"official": True, "faq": found.to_json()})

    def respond_event(self, event: Event, pipeline: ReplyPipeline) -> Reply | None:
        """The admin's welcome for ``subscribe`` and reply for a menu CLICK key (None: the built-in one)."""
        from bot.pipeline import Reply

        if event.kind in ("subscribe", "subscribe_scan"):
            welcome = self.curation.settings.get("welcome")
            return Reply(welcome, SOURCE_EVENT) if welcome else None
        if event.kind == "click":
            reply = self.curation.menu.get(event.key.upper())
            return Reply(reply, SOURCE_EVENT) if reply else None
        return None

    # -------------------------------------------------------------- finishers

    def add_feedback_footer(self, reply: Reply, pipeline: ReplyPipeline) -> Reply:
        """An answer to a member who can reply (not a stateless API call) invites 1 / 2, if it fits."""
        if not reply.user_known or not is_answer(reply):
            return reply
        text = reply.text + FEEDBACK_FOOTER
        if t.utf8_len(text) <= t.WECHAT_MAX_BYTES:
            reply.text = text
        return reply

    def remember_answer(self, reply: Reply, pipeline: ReplyPipeline) -> Reply:
        """Keep the member's last answer for 有用 / 没用; any other reply (but feedback's thanks) ends it."""
        if not reply.user_known or reply.source == SOURCE_FEEDBACK or reply.user is None:
            return reply
        user_hash = pipeline.store.hash_user(reply.user)
        if not is_answer(reply):
            self.curation.store.set_pending(user_hash, None)
            return reply
        if reply.source == SOURCE_FAQ:
            faq = reply.extra["faq"]
            data = {"log_id": reply.log_id, "source": SOURCE_FAQ, "tier": "answer", "faq_id": faq["id"],
                    "doc": None, "question": reply.question}
        else:
            answer = reply.answer
            if answer is None:  # is_answer checked it
                return reply
            data = {"log_id": reply.log_id, "source": "search", "tier": answer.tier, "faq_id": None,
                    "doc": answer.passages[0].title if answer.passages else None, "question": reply.question}
        self.curation.store.set_pending(user_hash, data)
        return reply

    def mask(self, reply: Reply, pipeline: ReplyPipeline) -> Reply:
        masked, found = self.curation.words.mask(reply.text)
        if found:
            reply.text = masked
            reply.extra["masked"] = len(found)
            if reply.user_known:
                self.curation.store.count_hits(f.word_id for f in found)
        return reply


def is_answer(reply: Reply) -> bool:
    """An official answer, or retrieval that quoted a passage (the answer tier)."""
    if reply.source == SOURCE_FAQ:
        return True
    return reply.source == "search" and reply.answer is not None and reply.answer.kind == "answer"
