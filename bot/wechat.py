"""The WeChat official-account webhook: verify, parse, dedupe, answer within the deadline, reply.

Protocol facts: ../shared/FACTS.md §1. The view is thin: ``handle_message`` routes a parsed message to
the answerer and the templates; this module only deals with the transport around it.

Guarantees:
- every request is signed (constant-time check) and fresh (timestamp window) or it gets 403;
- a re-delivered message (same MsgId, or FromUserName + CreateTime for events) is answered once: a
  duplicate waits for the first delivery's reply and returns it, across worker processes (SQLite);
- a question that cannot be answered within the reply budget gets a "send 更多 shortly" reply and the
  answer is kept for 更多;
- any internal error still produces a polite, valid reply; the caller never sees a stack trace.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, current_app, request
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.messages import BaseMessage

from bot import templates as t
from bot.answer import Answer, Answerer
from bot.store import BotStore

log = logging.getLogger(__name__)
bp = Blueprint("wechat", __name__)

MORE_WORDS = frozenset({"更多", "更多内容", "more", "继续", "下一条"})
UNSUPPORTED_NAMES = {
    "image": "图片", "video": "视频", "shortvideo": "小视频", "location": "位置",
    "link": "链接", "file": "文件", "voice": "语音",
}
CLICK_KEYS = {"HELP": "help", "ABOUT": "about", "EXAMPLES": "examples"}
INVALID_XML_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


# ------------------------------------------------------------------------------- transport


def signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def signature_ok(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected, given.lower())


def cdata(value: str) -> str:
    """A CDATA section that stays valid when ``value`` itself contains ``]]>``."""
    value = INVALID_XML_CHARS.sub("", value)
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply_xml(to_user: str, from_user: str, content: str, create_time: int | None = None) -> str:
    return (
        f"<xml><ToUserName>{cdata(to_user)}</ToUserName><FromUserName>{cdata(from_user)}</FromUserName>"
        f"<CreateTime>{int(create_time or time.time())}</CreateTime><MsgType>{cdata('text')}</MsgType>"
        f"<Content>{cdata(content)}</Content></xml>"
    )


def dedupe_key(message: BaseMessage) -> str:
    if message.type == "event" or not getattr(message, "id", None):
        return f"{message.source}:{message.time}"
    return f"msg:{message.id}"


def _plain(status: int, text: str) -> Response:
    return Response(text, status=status, mimetype="text/plain")


@bp.route("/wechat", methods=["GET", "POST"])
def webhook() -> Response:
    cfg = current_app.config
    token = cfg.get("WECHAT_TOKEN")
    if not token:
        log.error("the /wechat endpoint is off: set FLASK_WECHAT_TOKEN (and FLASK_WECHAT_AES_KEY, "
                  "FLASK_WECHAT_APP_ID for safe mode) to the values in the WeChat admin console")
        return _plain(503, "wechat endpoint is not configured")
    args = request.args
    timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
    if not signature_ok(signature(token, timestamp, nonce), args.get("signature")):
        return _plain(403, "invalid signature")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > float(cfg["WECHAT_FRESHNESS_SECONDS"]):
        return _plain(403, "stale or invalid timestamp")
    if request.method == "GET":
        return _plain(200, args.get("echostr", ""))

    limit = int(cfg["WECHAT_MAX_BODY_BYTES"])
    if request.content_length is not None and request.content_length > limit:
        return _plain(413, "body too large")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        return _plain(413, "body too large")
    if not body.strip():
        return _plain(400, "empty body")

    crypto = None
    if args.get("encrypt_type") == "aes":
        crypto = _crypto()
        if crypto is None:
            log.error("received a safe-mode message but FLASK_WECHAT_AES_KEY is not set")
            return _plain(400, "safe mode is not configured")
        try:
            xml = _decrypt(crypto, token, body, args)
        except (InvalidSignatureException, InvalidAppIdException) as exc:
            log.warning("rejected safe-mode message: %s", exc.__class__.__name__)
            return _plain(403, "invalid message signature or app id")
        except Exception:  # malformed envelope or ciphertext
            return _plain(400, "malformed encrypted message")
    else:
        xml = body.decode("utf-8", "replace")

    try:
        message = parse_message(xml)
    except Exception:  # xmltodict raises several kinds for malformed XML
        return _plain(400, "malformed XML")
    if not message or not message.source or not message.target or not message._data.get("MsgType"):
        return _plain(400, "missing ToUserName, FromUserName or MsgType")

    reply = get_webhook().reply_for(message)
    if crypto is not None and reply != "success":
        reply = crypto.encrypt_message(reply, nonce, timestamp)
    return Response(reply, status=200, mimetype="application/xml" if reply != "success" else "text/plain")


def _crypto() -> WeChatCrypto | None:
    cfg = current_app.config
    if not cfg.get("WECHAT_AES_KEY"):
        return None
    return WeChatCrypto(cfg["WECHAT_TOKEN"], cfg["WECHAT_AES_KEY"], cfg.get("WECHAT_APP_ID") or "")


def _decrypt(crypto: WeChatCrypto, token: str, body: bytes, args) -> str:
    from xml.etree import ElementTree

    from wechatpy.utils import to_text

    encrypt = ElementTree.fromstring(body).findtext("Encrypt") or ""
    expected = signature(token, args.get("timestamp", ""), args.get("nonce", ""), encrypt)
    if not signature_ok(expected, args.get("msg_signature")):
        raise InvalidSignatureException()
    return to_text(crypto.decrypt_message(body, args.get("msg_signature"), args.get("timestamp"), args.get("nonce")))


# ------------------------------------------------------------------------------------ core


@dataclass
class WebhookSettings:
    reply_budget: float = 4.0  # seconds to produce an answer before replying "send 更多 shortly"
    rate_limit: int = 20  # messages per user per minute
    state_ttl: float = 1800.0  # how long 更多 remembers a user's last question
    dedupe_keep: float = 3600.0  # how long reply keys are kept (WeChat retries within ~15 s)


class Webhook:
    """Routes parsed messages to replies; shared by every request of one app (one per worker)."""

    def __init__(self, answerer: Answerer, store: BotStore, settings: WebhookSettings) -> None:
        self.answerer = answerer
        self.store = store
        self.settings = settings
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="answer")
        self._last_purge = 0.0
        self._purge_lock = threading.Lock()

    def reply_for(self, message: BaseMessage) -> str:
        """The reply body for ``message``: text-reply XML, or ``success`` for no reply. Never raises."""
        key = dedupe_key(message)
        try:
            first = self.store.claim(key)
        except Exception:
            log.exception("dedupe store failed for %s; answering without dedupe", key)
            first = True
        if not first:
            stored = self.store.wait_for_reply(key, self.settings.reply_budget)
            if stored is not None:
                return stored
            return self._xml(message, t.render(t.STILL_WORKING, question=getattr(message, "content", "") or "您的问题"))
        try:
            content = self.handle_message(message)
            reply = "success" if content is None else self._xml(message, content)
        except Exception:
            log.exception("internal error answering MsgId=%s from=%s", getattr(message, "id", None), key)
            reply = self._xml(message, t.INTERNAL_ERROR)
        try:
            self.store.finish(key, reply)
            self._maybe_purge()
        except Exception:
            log.exception("could not store the reply for %s", key)
        return reply

    def _xml(self, message: BaseMessage, content: str) -> str:
        return text_reply_xml(message.source, message.target, content)

    def _maybe_purge(self) -> None:
        now = time.time()
        if now - self._last_purge > 300 and self._purge_lock.acquire(blocking=False):
            try:
                self._last_purge = now
                self.store.purge(self.settings.dedupe_keep)
            finally:
                self._purge_lock.release()

    # --------------------------------------------------------------------- routing

    def handle_message(self, message: BaseMessage) -> str | None:
        """Reply text for a message (None: no reply)."""
        kind = message._data.get("MsgType", "")
        if kind == "event":
            return self.handle_event(message)
        user = message.source
        if self.store.hit_rate_limit(user, self.settings.rate_limit):
            return t.RATE_LIMITED
        if kind == "text":
            return self.reply_text(user, message.content or "")
        if kind == "voice":
            heard = (message._data.get("Recognition") or "").strip()
            if not heard:
                return t.render(t.VOICE_EMPTY, examples=self.answerer.examples())
            return self.ask(user, heard, lead=t.render(t.VOICE_HEARD, text=heard[:100]))
        what = UNSUPPORTED_NAMES.get(kind, "消息")
        return t.render(t.UNSUPPORTED, what=what, examples=self.answerer.examples())

    def handle_event(self, message: BaseMessage) -> str | None:
        event = (message._data.get("Event") or "").lower()
        if event in ("subscribe", "subscribe_scan"):  # wechatpy renames a subscribe via QR code
            return t.render(t.WELCOME, examples=self.answerer.examples())
        if event == "click":
            action = CLICK_KEYS.get((message._data.get("EventKey") or "").upper())
            if action == "help":
                return self.answerer.help_text()
            if action == "about":
                return t.render(t.ABOUT, count=self.answerer.document_count())
            if action == "examples":
                return t.render(t.EXAMPLES, examples=self.answerer.examples())
        return None  # unsubscribe, SCAN, LOCATION, VIEW, unknown keys: no reply

    # ---------------------------------------------------------------- questions

    def reply_text(self, user: str, text: str, channel: str = "wechat") -> str:
        """The reply to a text message; the QA console calls this too, so both show the same text."""
        if text.strip().lower() in MORE_WORDS:
            return self.more(user)
        return self.ask(user, text, channel=channel)

    def ask(self, user: str, question: str, lead: str = "", channel: str = "wechat") -> str:
        future: Future[Answer] = self.pool.submit(self.answerer.answer, question, 5, lead)
        try:
            answer = future.result(timeout=self.settings.reply_budget)
        except FutureTimeout:
            self.store.set_state(user, {"question": question, "shown": 0, "pending": True})
            future.add_done_callback(lambda f: self._keep_late_answer(user, question, f, channel))
            return t.render(t.TIMEOUT, question=question[:60])
        self._remember(user, question, answer, channel)
        return answer.text

    def _remember(self, user: str, question: str, answer: Answer, channel: str = "wechat") -> None:
        if answer.kind in ("answer", "abstain"):
            self.store.set_state(user, {"question": question, "shown": answer.quoted})
        self.store.log_query(
            channel=channel, user=user, question=question, kind=answer.kind, abstained=answer.abstained,
            top_doc=answer.passages[0].title if answer.passages else None,
            top_section=answer.passages[0].section if answer.passages else None,
            confidence=answer.decision.confidence if answer.decision else None,
            latency_ms=answer.elapsed_ms, index_version=answer.index_version,
        )

    def _keep_late_answer(self, user: str, question: str, future: Future[Answer], channel: str) -> None:
        try:
            answer = future.result()
            self._remember(user, question, answer, channel)
            self.store.set_state(user, {"question": question, "shown": answer.quoted, "late": answer.text})
        except Exception:
            log.exception("late answer failed for a question of %s", self.store.hash_user(user))
            self.store.set_state(user, {"question": question, "shown": 0, "late": t.INTERNAL_ERROR})

    def more(self, user: str) -> str:
        state = self.store.get_state(user, self.settings.state_ttl)
        if state.get("late"):
            self.store.set_state(user, {"question": state["question"], "shown": state.get("shown", 0)})
            return state["late"]
        if state.get("pending"):
            return t.render(t.STILL_WORKING, question=state["question"][:60])
        if not state.get("question"):
            return t.NO_QUESTION_FOR_MORE
        answer = self.answerer.more(state["question"], int(state.get("shown", 0)))
        self.store.set_state(user, {"question": state["question"], "shown": answer.quoted})
        return answer.text


def init_app(app: Flask, answerer: Answerer, store: BotStore) -> Webhook:
    cfg = app.config
    webhook = Webhook(answerer, store, WebhookSettings(
        reply_budget=float(cfg["WECHAT_REPLY_BUDGET_SECONDS"]), rate_limit=int(cfg["WECHAT_RATE_LIMIT"]),
        state_ttl=float(cfg["USER_STATE_TTL_SECONDS"]),
    ))
    app.extensions["webhook"] = webhook
    app.register_blueprint(bp)
    return webhook


def get_webhook() -> Webhook:
    return current_app.extensions["webhook"]
