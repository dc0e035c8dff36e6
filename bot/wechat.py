"""The WeChat official-account webhook: verify, parse, dedupe, answer within the deadline, reply.

Protocol facts: ../shared/FACTS.md §1. The view is thin: ``handle_message`` routes a parsed message to
the answerer and the templates; this module only deals with the transport around it.

Guarantees:
- every request is signed (constant-time check) and fresh (timestamp window) or it gets 403;
- a body that is not a message WeChat could send gets 400 (413 when too large) before anything is
  stored: malformed XML, entities, a missing or nested ToUserName / FromUserName / MsgType, a CreateTime
  that is not a Unix time, names longer than WeChat's;
- a re-delivered message (same MsgId, or FromUserName + CreateTime for events) is answered once: a
  duplicate waits for the first delivery's reply and returns it, across workers and nodes (the store);
  a claim whose worker died is taken over, so the re-delivery is answered, and a message is logged once.
  A MsgId that is not a 64-bit number (WeChat never sends one) is ignored: such a message is deduped
  by FromUserName + CreateTime, as events are, and still answered;
- a question that cannot be answered within the reply budget gets a "send 更多 shortly" reply and the
  answer is kept for 更多;
- any internal error still produces a polite, valid reply; the caller never sees a stack trace or a 500
  (the view's outermost guard is the one place that catches every exception).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import struct
import threading
import time
from dataclasses import dataclass
from xml.parsers.expat import ExpatError

import xmltodict
from flask import Blueprint, Flask, Response, current_app, g, request
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.messages import BaseMessage

from bot import templates as t
from bot.pipeline import Event, Message, Reply, ReplyPipeline, seconds_left
from bot.store import CLAIMED, DONE

log = logging.getLogger(__name__)
bp = Blueprint("wechat", __name__)

UNSUPPORTED_NAMES = {
    "image": "图片", "video": "视频", "shortvideo": "小视频", "location": "位置",
    "link": "链接", "file": "文件", "voice": "语音",
}
CLICK_KEYS = {"HELP": "help", "ABOUT": "about", "EXAMPLES": "examples"}
INVALID_XML_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
REQUIRED_FIELDS = ("ToUserName", "FromUserName", "CreateTime", "MsgType")
TEXT_FIELDS = ("MsgId", "Content", "Recognition", "Event", "EventKey")  # read by the bot: plain text or absent
NAME_MAX_CHARS = 128  # OpenIDs are 28 characters, gh_ ids about 15
DIGITS = re.compile(r"[0-9]{1,20}")
MAX_MSG_ID = 2**64 - 1
MAX_CREATE_TIME = 2**32 - 1


class MessageError(ValueError):
    """A signed body that is not a message WeChat could send; the text says what is wrong (HTTP 400)."""


@dataclass(frozen=True)
class Inbound:
    """A parsed message with its checked fields: who, when, and the key its re-deliveries share."""

    message: BaseMessage
    create_time: int
    msg_id: int | None  # None for events, and for a MsgId that is not a 64-bit number


# ------------------------------------------------------------------------------- transport


def signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def signature_ok(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.lower().encode("utf-8", "replace"))


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


def dedupe_key(inbound: Inbound) -> str:
    """MsgId, or FromUserName + CreateTime. The sender is part of every key: a reply is only ever
    returned to the user it was written for, even when two users' messages claim one MsgId."""
    if inbound.msg_id is None:
        return f"at:{inbound.message.source}:{inbound.create_time}"
    return f"msg:{inbound.message.source}:{inbound.msg_id}"


def xml_fields(xml: str | bytes) -> dict:
    """The fields of ``<xml>…</xml>``; MessageError for anything else. Entities are refused (xmltodict)."""
    try:
        data = xmltodict.parse(xml)
    except (ExpatError, ValueError) as exc:  # ValueError: a DTD declaring entities
        raise MessageError("XML 格式不正确") from exc
    root = data.get("xml") if isinstance(data, dict) else None
    if not isinstance(root, dict):
        raise MessageError("消息应以 <xml> 为根元素")
    return root


def read_message(xml: str) -> Inbound:
    """Parse a decrypted message and check the fields the bot relies on."""
    fields = xml_fields(xml)
    for name in REQUIRED_FIELDS:
        value = fields.get(name)
        if not isinstance(value, str) or not value.strip():
            raise MessageError(f"缺少 {name}，或 {name} 不是文本")
    for name in TEXT_FIELDS:
        if fields.get(name) is not None and not isinstance(fields[name], str):
            raise MessageError(f"{name} 应为文本")
    for name in ("ToUserName", "FromUserName"):
        if len(fields[name]) > NAME_MAX_CHARS or INVALID_XML_CHARS.search(fields[name]):
            raise MessageError(f"{name} 不是有效的微信账号标识")
    kind = fields["MsgType"].lower()
    if (kind == "event" or kind.startswith("device_")) and "Event" in fields and not (fields["Event"] or "").strip():
        raise MessageError("事件消息的 Event 为空")
    create_time = fields["CreateTime"].strip()
    if not DIGITS.fullmatch(create_time) or int(create_time) > MAX_CREATE_TIME:
        raise MessageError("CreateTime 应为 Unix 时间戳（秒）")
    raw_id = (fields.get("MsgId") or "").strip()
    msg_id = int(raw_id) if DIGITS.fullmatch(raw_id) and 0 < int(raw_id) <= MAX_MSG_ID else None
    if raw_id and msg_id is None:
        log.warning("MsgId %r is not a 64-bit number: deduping by FromUserName + CreateTime", raw_id[:40])
    message = parse_message(xml)
    return Inbound(message, int(create_time), None if message.type == "event" else msg_id)


def _plain(status: int, text: str) -> Response:
    return Response(text, status=status, mimetype="text/plain")


@bp.route("/wechat", methods=["GET", "POST"])
def webhook() -> Response:
    """The outermost guard: whatever fails below, WeChat gets a polite reply (or ``success``), never a 500."""
    try:
        return _webhook()
    except Exception:
        hook = get_webhook()
        hook.internal_errors += 1
        inbound: Inbound | None = g.get("wechat_inbound")
        log.exception("internal error in the webhook (MsgId %s)", inbound.msg_id if inbound else None)
        if inbound is None:
            return _plain(200, "success")  # nobody to address a reply to: WeChat stops retrying
        reply = hook._xml(inbound.message, t.INTERNAL_ERROR)
        crypto = _crypto() if request.args.get("encrypt_type") == "aes" else None
        if crypto is not None:
            try:
                reply = crypto.encrypt_message(reply, request.args.get("nonce", ""), request.args.get("timestamp"))
            except Exception:  # the encryption itself failed: no reply is better than a plain one
                log.exception("could not encrypt the error reply")
                return _plain(200, "success")
        return Response(reply, status=200, mimetype="application/xml")


def _webhook() -> Response:
    arrived = time.monotonic()  # the reply budget counts from here: WeChat's 5 s run from its request
    cfg = current_app.config
    token = cfg.get("WECHAT_TOKEN")
    if not token:
        log.error("the /wechat endpoint is off: set FLASK_WECHAT_TOKEN (and FLASK_WECHAT_AES_KEY, "
                  "FLASK_WECHAT_APP_ID for safe mode) to the values in the WeChat admin console")
        return _plain(503, "微信接口未启用：请设置 FLASK_WECHAT_TOKEN")
    args = request.args
    timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
    if not signature_ok(signature(token, timestamp, nonce), args.get("signature")):
        return _plain(403, "签名无效")
    if (not DIGITS.fullmatch(timestamp)
            or abs(time.time() - int(timestamp)) > float(cfg["WECHAT_FRESHNESS_SECONDS"])):
        return _plain(403, "时间戳无效或已过期")
    if request.method == "GET":
        return _plain(200, args.get("echostr", ""))

    limit = int(cfg["WECHAT_MAX_BODY_BYTES"])
    too_large = f"消息体超过 {limit} 字节的上限（可通过设置 FLASK_WECHAT_MAX_BODY_BYTES 调整）"
    if request.content_length is not None and request.content_length > limit:
        return _plain(413, too_large)
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        return _plain(413, too_large)
    if not body.strip():
        return _plain(400, "消息体为空")

    crypto = None
    if args.get("encrypt_type") == "aes":
        crypto = _crypto()
        if crypto is None:
            log.error("received a safe-mode message but FLASK_WECHAT_AES_KEY is not set")
            return _plain(400, "安全模式未配置：请设置 FLASK_WECHAT_AES_KEY")
        try:
            xml = _decrypt(crypto, token, body, args)
        except (InvalidSignatureException, InvalidAppIdException) as exc:
            log.warning("rejected safe-mode message: %s", exc.__class__.__name__)
            return _plain(403, "消息签名或 AppID 不正确")
        except MessageError as exc:
            return _plain(400, f"加密消息格式不正确：{exc}")
    else:
        xml = body.decode("utf-8", "replace")

    try:
        inbound = read_message(xml)
    except MessageError as exc:
        return _plain(400, str(exc))
    g.wechat_inbound = inbound
    reply = get_webhook().reply_for(inbound, arrived)
    if crypto is not None and reply != "success":
        reply = crypto.encrypt_message(reply, nonce, timestamp)
    return Response(reply, status=200, mimetype="application/xml" if reply != "success" else "text/plain")


def _crypto() -> WeChatCrypto | None:
    cfg = current_app.config
    if not cfg.get("WECHAT_AES_KEY"):
        return None
    return WeChatCrypto(cfg["WECHAT_TOKEN"], cfg["WECHAT_AES_KEY"], cfg.get("WECHAT_APP_ID") or "")


def _decrypt(crypto: WeChatCrypto, token: str, body: bytes, args) -> str:
    from wechatpy.utils import to_text

    encrypt = xml_fields(body).get("Encrypt")
    if not isinstance(encrypt, str) or not encrypt.strip():
        raise MessageError("缺少 Encrypt")
    expected = signature(token, args.get("timestamp", ""), args.get("nonce", ""), encrypt)
    if not signature_ok(expected, args.get("msg_signature")):
        raise InvalidSignatureException()
    try:
        plain = crypto.decrypt_message({"Encrypt": encrypt}, args.get("msg_signature"), args.get("timestamp"),
                                       args.get("nonce"))
    except (ValueError, IndexError, struct.error) as exc:  # base64, block size, padding, length, UTF-8
        raise MessageError("密文无法解密") from exc
    return to_text(plain)


# ------------------------------------------------------------------------------------ core


@dataclass
class WebhookSettings:
    reply_budget: float = 4.0  # seconds from a request's arrival to its reply ("send 更多 shortly" when late)
    rate_limit: int = 20  # messages per user per minute
    state_ttl: float = 1800.0  # how long 更多 remembers a user's last question
    dedupe_keep: float = 3600.0  # how long reply keys are kept (WeChat retries within ~15 s)


class Webhook:
    """Routes parsed messages to replies; shared by every request of one app (one per worker)."""

    def __init__(self, pipeline: ReplyPipeline, settings: WebhookSettings) -> None:
        self.pipeline = pipeline
        self.answerer = pipeline.answerer
        self.store = pipeline.store
        self.settings = settings
        self.internal_errors = 0  # replies that fell back to the polite error (tests assert none)
        self._last_purge = 0.0
        self._purge_lock = threading.Lock()

    def reply_for(self, inbound: Inbound, arrived: float | None = None) -> str:
        """The reply body for a message: text-reply XML, or ``success`` for no reply. ``arrived``: when its
        request came (time.monotonic()); the reply is due ``reply_budget`` seconds after it."""
        message = inbound.message
        key = dedupe_key(inbound)
        deadline = (time.monotonic() if arrived is None else arrived) + self.settings.reply_budget
        try:
            first = self.store.claim(key)
        except Exception:
            log.exception("dedupe store failed for %s; answering without dedupe", key)
            first = True
        if not first:  # another worker or node is answering: wait for its reply, or take over if it died
            outcome, stored = self.store.await_reply(key, seconds_left(deadline))
            if outcome == DONE and stored is not None:
                return stored
            if outcome != CLAIMED:
                return self._xml(message, t.render(t.STILL_WORKING,
                                                   question=getattr(message, "content", "") or "您的问题"))
        try:
            content = self.handle_message(message, key, deadline)
            reply = "success" if content is None else self._xml(message, content)
        except Exception:
            self.internal_errors += 1
            log.exception("internal error answering MsgId=%s from=%s", inbound.msg_id, key)
            # the claim is forgotten, not finished with the apology: WeChat's retry of this message (or a
            # member sending it again) is answered afresh, so a passing fault costs one reply, not all of them
            try:
                self.store.release(key)
            except Exception:
                log.exception("could not release the claim on %s", key)
            return self._xml(message, t.INTERNAL_ERROR)
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

    def handle_message(self, message: BaseMessage, key: str | None = None, deadline: float | None = None) -> str | None:
        """Reply text for a message (None: no reply); ``key`` (its dedupe key) makes it logged once;
        ``deadline`` (time.monotonic()) is when the reply is due (None: the reply budget from retrieval)."""
        kind = message._data.get("MsgType", "")
        if kind == "event":
            return self.handle_event(message)
        user = message.source
        if self.store.hit_rate_limit(user, self.settings.rate_limit):
            return t.RATE_LIMITED
        if kind == "text":
            return self.reply_text(user, message.content or "", key=key, deadline=deadline)
        if kind == "voice":
            heard = (message._data.get("Recognition") or "").strip()
            if not heard:
                return t.render(t.VOICE_EMPTY, examples=self.answerer.examples())
            return self.reply_text(user, heard, lead=t.render(t.VOICE_HEARD, text=heard[:100]), key=key,
                                   deadline=deadline)
        what = UNSUPPORTED_NAMES.get(kind, "消息")
        return t.render(t.UNSUPPORTED, what=what, examples=self.answerer.examples())

    def handle_event(self, message: BaseMessage) -> str | None:
        """The admin's welcome or menu reply when one is set (through the pipeline's event responders),
        else the built-in one; finished like every reply (sensitive words masked)."""
        event = (message._data.get("Event") or "").lower()
        key = message._data.get("EventKey") or ""
        configured = self.pipeline.reply_event(Event(event, key, message.source))
        if configured is not None:
            return configured.text
        text = self.builtin_event_reply(event, key)
        return None if text is None else self.pipeline.finish(Reply(text, "event")).text

    def builtin_event_reply(self, event: str, key: str) -> str | None:
        if event in ("subscribe", "subscribe_scan"):  # wechatpy renames a subscribe via QR code
            return t.render(t.WELCOME, examples=self.answerer.examples())
        if event == "click":
            action = CLICK_KEYS.get(key.upper())
            if action == "help":
                return self.answerer.help_text()
            if action == "about":
                return t.render(t.ABOUT, count=self.answerer.document_count())
            if action == "examples":
                return t.render(t.EXAMPLES, examples=self.answerer.examples())
        return None  # unsubscribe, SCAN, LOCATION, VIEW, unknown keys: no reply

    # ---------------------------------------------------------------- questions

    def reply_text(self, user: str, text: str, channel: str = "wechat", lead: str = "", key: str | None = None,
                   deadline: float | None = None) -> str:
        """The reply to a text message, through the one reply pipeline the API and the console share."""
        return self.pipeline.reply(Message(text=text, user=user, channel=channel, lead=lead, key=key,
                                           deadline=deadline)).text


def init_app(app: Flask, pipeline: ReplyPipeline) -> Webhook:
    cfg = app.config
    webhook = Webhook(pipeline, WebhookSettings(
        reply_budget=float(cfg["WECHAT_REPLY_BUDGET_SECONDS"]), rate_limit=int(cfg["WECHAT_RATE_LIMIT"]),
        state_ttl=float(cfg["USER_STATE_TTL_SECONDS"]),
    ))
    app.extensions["webhook"] = webhook
    app.register_blueprint(bp)
    return webhook


def get_webhook() -> Webhook:
    return current_app.extensions["webhook"]
