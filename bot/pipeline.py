"""One reply pipeline for every front end: the webhook, ``/api/ask`` and the QA console.

A message goes through the responders in ``ReplyPipeline.responders`` in order; the first that returns
a ``Reply`` answers it. Each responder has the same signature, ``(message, pipeline) -> Reply | None``,
and is a small function or object that can be tested without Flask. The order is the product's rule
for what wins, readable in one place (``init_app``):

1. ``sensitive`` — a question with a blocked word gets a polite fixed reply, unsearched;
2. ``feedback``  — 有用 / 没用 (1 / 2) right after an answer is recorded against it;
3. ``keyword``   — an admin's keyword reply;
4. ``faq``       — an official answer (问答对);
5. ``more``      — 更多 continues the member's last question;
6. ``search``    — retrieval: the answer, related passages or a decline (``Answerer.answer``). A follow-up
   ("那义务呢？", "它的…", "具体怎么做", a bare topic word) is first made whole with the member's previous
   question (``bot.followup``) and answered as that question, saying what was understood; the search
   responder does this itself, so the responders before it see what the member typed.

Then the ``finishers`` transform whatever answered: the feedback footer, remembering the answer that
feedback refers to, and sensitive-word masking (last, so it covers every reply text). Before each
message the ``refreshers`` bring shared state (curation made on any worker) up to date. Events (the
subscribe welcome, menu CLICK keys) go through ``event_responders`` and the same finishers.

``Message.user`` is None for a stateless caller (``/api/ask`` without a ``user``): responders that need
the member's history then do nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace

from flask import Flask, current_app

from bot import followup
from bot import templates as t
from bot.answer import Answer, Answerer
from bot.followup import FOLLOWUP_SECONDS
from bot.store import BotStore
from index.embed import limit_this_thread

log = logging.getLogger(__name__)

MORE_WORDS = frozenset({"更多", "更多内容", "more", "继续", "下一条"})

SOURCE_SEARCH = "search"  # retrieval answered (answer, related, decline, greeting, help)
SOURCE_MORE = "more"  # 更多: the next passages of the last question
SOURCE_FOLLOWUP = "followup"  # a follow-up question, answered as the whole question it was understood as


@dataclass
class Message:
    """A text to answer: what a member typed (or WeChat recognised from a voice message)."""

    text: str
    user: str | None = None  # the member (OpenID, console:<session>); None: no history
    channel: str = "wechat"  # wechat, api, console
    lead: str = ""  # text placed before the reply (e.g. what a voice message was heard as)
    k: int = 5  # passages kept in the Answer (the console and the API show them)
    logged: bool = True  # False: write nothing (a stateless /api/ask call stays read-only)
    key: str | None = None  # the WeChat message's dedupe key: it is logged once, whichever node answers
    # time.monotonic() by which the reply must be ready (the webhook's: its request's arrival plus the reply
    # budget, so work before retrieval counts too); None: the budget counts from when retrieval starts
    deadline: float | None = None


@dataclass
class Reply:
    """What the member gets and how it was made."""

    text: str
    source: str  # search, more, and the curation sources (faq, keyword, blocked, feedback …)
    answer: Answer | None = None  # the retrieval result behind the text, when there was one
    question: str = ""  # the question as answered (a follow-up is answered as the full question)
    extra: dict = field(default_factory=dict)  # what a responder wants the console and API to show
    log_id: int | None = None  # the query-log row of this reply, when it was logged
    user: str | None = None  # who it answers (set by the pipeline)
    logged: bool = False  # whether the pipeline may write for this reply (a member, not a stateless call)

    @property
    def user_known(self) -> bool:
        """A member with history, whose replies may be remembered and counted."""
        return self.user is not None and self.logged

    def to_json(self, details: bool = False) -> dict:
        if self.answer is not None:
            out = self.answer.to_json(details=details)
            out["text"] = self.text
        else:
            out = {"question": self.question, "abstained": False, "text": self.text, "passages": [],
                   "elapsed_ms": 0.0, "tier": "answer", "link": None}
            if details:
                out |= {"kind": self.source, "decision": None, "timings_ms": {}, "index_version": None}
        out["source"] = self.source
        if self.extra:
            out.update(self.extra)
        return out


@dataclass
class Event:
    """A WeChat event a reply may be configured for: ``subscribe`` or a menu ``click`` (with its key)."""

    kind: str
    key: str = ""
    user: str | None = None


Responder = Callable[[Message, "ReplyPipeline"], "Reply | None"]
EventResponder = Callable[[Event, "ReplyPipeline"], "Reply | None"]
Finisher = Callable[[Reply, "ReplyPipeline"], Reply]


@dataclass
class PipelineSettings:
    reply_budget: float = 4.0  # seconds to answer within (WeChat drops the connection at 5 s)
    state_ttl: float = 1800.0  # how long 更多 remembers a member's last question


class ReplyPipeline:
    """Answers a ``Message`` with a ``Reply``; one per app, shared by every request of a worker."""

    def __init__(self, answerer: Answerer, store: BotStore, settings: PipelineSettings | None = None) -> None:
        self.answerer = answerer
        self.store = store
        self.settings = settings or PipelineSettings()
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="answer")
        self.responders: list[tuple[str, Responder]] = [("more", respond_more), ("search", respond_search)]
        self.finishers: list[tuple[str, Finisher]] = []
        self.event_responders: list[tuple[str, EventResponder]] = []
        self.refreshers: list[Callable[[], None]] = []

    def insert_before(self, name: str, new_name: str, responder: Responder) -> None:
        """Put ``responder`` just before the one called ``name`` (used by features that answer first)."""
        at = [n for n, _ in self.responders].index(name)
        self.responders.insert(at, (new_name, responder))

    def reply(self, message: Message) -> Reply:
        for refresh in self.refreshers:
            refresh()
        for _name, responder in self.responders:
            reply = responder(message, self)
            if reply is not None:
                break
        else:  # the search responder always answers; an empty list is a programming error
            raise RuntimeError("no responder answered")
        reply.user, reply.logged = message.user, message.logged
        return self.finish(reply)

    def reply_event(self, event: Event) -> Reply | None:
        """The configured reply to an event, finished; None when no event responder has one."""
        for refresh in self.refreshers:
            refresh()
        for _name, responder in self.event_responders:
            reply = responder(event, self)
            if reply is not None:
                reply.user, reply.logged = event.user, event.user is not None
                return self.finish(reply)
        return None

    def finish(self, reply: Reply) -> Reply:
        """Every finisher applied to ``reply`` (masking covers built-in texts too)."""
        for _name, finish in self.finishers:
            reply = finish(reply, self)
        return reply

    # ------------------------------------------------------------------ retrieval within the budget

    def ask(self, message: Message, question: str | None = None) -> Reply:
        """Retrieval for ``question`` (default: the message's text) within the reply budget; the answer
        is remembered for 更多 and logged. A late answer is kept for the member's 更多."""
        question = message.text if question is None else question
        future: Future[Answer] = self.pool.submit(self._answer, question, message.k, message.lead)
        try:
            answer = future.result(timeout=self.time_left(message))
        except FutureTimeout:
            if message.user is not None:
                self.store.set_state(message.user, {"question": question, "shown": 0, "pending": True,
                                                    "asked": time.time()})
                future.add_done_callback(lambda f: self._keep_late_answer(message, question, f))
            return Reply(t.render(t.TIMEOUT, question=question[:60]), SOURCE_SEARCH, question=question)
        log_id = self.remember(message, question, answer)
        return Reply(answer.text, SOURCE_SEARCH, answer=answer, question=question, log_id=log_id)

    def _answer(self, question: str, k: int, lead: str) -> Answer:
        """The answerer's answer, on a pool thread held to the serving thread limit (``limit_this_thread``)."""
        limit_this_thread()
        return self.answerer.answer(question, k, lead)

    def time_left(self, message: Message) -> float:
        """Seconds retrieval may take for ``message``: what its deadline leaves (none once it has passed),
        or the whole reply budget for a message without one."""
        return self.settings.reply_budget if message.deadline is None else seconds_left(message.deadline)

    def remember(self, message: Message, question: str, answer: Answer) -> int | None:
        """Keep the member's last question (for 更多) and log the question, in one write; the log row's id."""
        if not message.logged:
            return None
        state = None
        if message.user is not None and answer.kind in ("answer", "related", "abstain"):
            state = {"question": question, "shown": answer.quoted, "asked": time.time()}
        return self.store.log_query(
            channel=message.channel, user=message.user or "", question=question, kind=answer.kind,
            abstained=answer.abstained,
            top_doc=answer.passages[0].title if answer.passages else None,
            top_section=answer.passages[0].section if answer.passages else None,
            confidence=answer.decision.confidence if answer.decision else None,
            latency_ms=answer.elapsed_ms, index_version=answer.index_version, tier=answer.tier, msg_key=message.key,
            state=state,
        )

    def _keep_late_answer(self, message: Message, question: str, future: Future[Answer]) -> None:
        user = message.user or ""  # only scheduled for a member with history
        try:
            answer = future.result()
            self.remember(message, question, answer)
            self.store.set_state(user, {"question": question, "shown": answer.quoted, "late": answer.text,
                                        "asked": time.time()})
        except Exception:
            log.exception("late answer failed for a question of %s", self.store.hash_user(user))
            self.store.set_state(user, {"question": question, "shown": 0, "late": t.INTERNAL_ERROR})


def seconds_left(deadline: float) -> float:
    """Seconds until ``deadline`` (time.monotonic()), none once it has passed."""
    return max(0.0, deadline - time.monotonic())


# ----------------------------------------------------------------------------------- responders


def respond_more(message: Message, pipeline: ReplyPipeline) -> Reply | None:
    """更多: the next passages of the member's last question (or its late answer)."""
    if message.text.strip().lower() not in MORE_WORDS:
        return None
    if message.user is None:
        return Reply(t.NO_QUESTION_FOR_MORE, SOURCE_MORE)
    store = pipeline.store
    state = store.get_state(message.user, pipeline.settings.state_ttl)
    if state.get("late"):
        store.set_state(message.user, {"question": state["question"], "shown": state.get("shown", 0),
                                       "asked": state.get("asked", 0)})
        return Reply(state["late"], SOURCE_MORE, question=state["question"])
    if state.get("pending"):
        return Reply(t.render(t.STILL_WORKING, question=state["question"][:60]), SOURCE_MORE,
                     question=state["question"])
    if not state.get("question"):
        return Reply(t.NO_QUESTION_FOR_MORE, SOURCE_MORE)
    answer = pipeline.answerer.more(state["question"], int(state.get("shown", 0)))
    store.set_state(message.user, {"question": state["question"], "shown": answer.quoted,
                                   "asked": state.get("asked", 0)})
    return Reply(answer.text, SOURCE_MORE, answer=answer, question=state["question"])


def respond_search(message: Message, pipeline: ReplyPipeline) -> Reply:
    """Retrieval: always answers (an answer, related passages, a decline, a greeting or help); a
    follow-up is answered as the whole question it stands for."""
    return respond_followup(message, pipeline) or pipeline.ask(message)


def respond_followup(message: Message, pipeline: ReplyPipeline) -> Reply | None:
    """A message leaning on the member's previous question (asked within ``FOLLOWUP_SECONDS``), made whole
    and answered; None for a self-contained message."""
    answerer = pipeline.answerer
    previous = None
    if message.user is not None:
        state = pipeline.store.get_state(message.user, FOLLOWUP_SECONDS)
        if state.get("question") and time.time() - float(state.get("asked") or 0) <= FOLLOWUP_SECONDS:
            previous = str(state["question"])
    found = followup.resolve(message.text, previous, answerer.tokenizer(), answerer.confidence,
                             excluded=lambda text: answerer.is_fixed(text) or text.lower() in MORE_WORDS)
    if found is None:
        return None
    if not found.question:  # it leans on a question we do not have
        examples = t.bullet_list([t.render(t.FOLLOWUP_EXAMPLE, words=found.words)]) if found.words \
            else answerer.examples()
        return Reply(message.lead + t.render(t.FOLLOWUP_NO_CONTEXT, examples=examples), SOURCE_FOLLOWUP)
    if found.kind == followup.KIND_MORE:
        reply = respond_more(replace(message, text="更多"), pipeline)
        if reply is not None:
            reply.extra["understood"] = found.question
        return reply
    understood = t.render(t.UNDERSTOOD, question=found.question)
    reply = pipeline.ask(replace(message, lead=message.lead + understood), question=found.question)
    reply.source = SOURCE_FOLLOWUP
    reply.extra["understood"] = found.question
    return reply


def init_app(app: Flask, answerer: Answerer, store: BotStore) -> ReplyPipeline:
    from bot import curation

    cfg = app.config
    pipeline = ReplyPipeline(answerer, store, PipelineSettings(
        reply_budget=float(cfg["WECHAT_REPLY_BUDGET_SECONDS"]), state_ttl=float(cfg["USER_STATE_TTL_SECONDS"]),
    ))
    c = curation.init_app(app)
    pipeline.refreshers = [c.curation.refresh]
    pipeline.responders = [
        ("sensitive", c.respond_blocked),
        ("feedback", c.respond_feedback),
        ("keyword", c.respond_keyword),
        ("faq", c.respond_faq),
        ("more", respond_more),
        ("search", respond_search),
    ]
    pipeline.finishers = [
        ("feedback_footer", c.add_feedback_footer),
        ("remember_answer", c.remember_answer),
        ("mask", c.mask),  # last: it covers every reply text
    ]
    pipeline.event_responders = [("welcome_and_menu", c.respond_event)]
    app.extensions["pipeline"] = pipeline
    return pipeline


def get_pipeline() -> ReplyPipeline:
    return current_app.extensions["pipeline"]
