"""A test helper that talks to /wechat the way WeChat's servers do: signed XML, plain or safe mode."""

from __future__ import annotations

import hashlib
import itertools
import time
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

from wechatpy.crypto import WeChatCrypto

TOKEN = "test-token"
APP_ID = "wx1234567890abcdef"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters
ACCOUNT = "gh_test_account"

_ids = itertools.count(6_000_000_000_000_000_000)


def sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def message_xml(msg_type: str, user: str = "o_user_1", msg_id: int | None = None, create_time: int | None = None,
                **fields: str) -> str:
    parts = [
        f"<ToUserName>{cdata(ACCOUNT)}</ToUserName>", f"<FromUserName>{cdata(user)}</FromUserName>",
        f"<CreateTime>{create_time or int(time.time())}</CreateTime>", f"<MsgType>{cdata(msg_type)}</MsgType>",
    ]
    parts += [f"<{name}>{cdata(str(value))}</{name}>" for name, value in fields.items()]
    if msg_type != "event":
        parts.append(f"<MsgId>{msg_id if msg_id is not None else next(_ids)}</MsgId>")
    return "<xml>" + "".join(parts) + "</xml>"


class Reply:
    def __init__(self, response, crypto: WeChatCrypto | None, query: dict) -> None:
        self.status = response.status_code
        self.body = response.get_data(as_text=True)
        self.xml: ET.Element | None = None
        if self.status == 200 and self.body.startswith("<xml>"):
            text = self.body
            if crypto is not None:
                root = ET.fromstring(text)
                text = crypto.decrypt_message(text, root.findtext("MsgSignature"), root.findtext("TimeStamp"),
                                              root.findtext("Nonce"))
            self.plain = text
            self.xml = ET.fromstring(text)

    @property
    def content(self) -> str | None:
        return self.xml.findtext("Content") if self.xml is not None else None

    def field(self, name: str) -> str | None:
        return self.xml.findtext(name) if self.xml is not None else None


class WeChatClient:
    """Builds, signs (and in safe mode encrypts) messages and posts them to the app."""

    def __init__(self, client, token: str = TOKEN, aes_key: str | None = None, app_id: str = APP_ID) -> None:
        self.client = client
        self.token = token
        self.crypto = WeChatCrypto(token, aes_key, app_id) if aes_key else None

    def query(self, timestamp: int | None = None, nonce: str = "n0nce", **extra: str) -> dict:
        ts = str(timestamp if timestamp is not None else int(time.time()))
        return {"signature": sign(self.token, ts, nonce), "timestamp": ts, "nonce": nonce, "openid": "o_user_1",
                **extra}

    def post_raw(self, body: str | bytes, query: dict | None = None) -> Reply:
        query = query or self.query()
        response = self.client.post("/wechat?" + urlencode(query), data=body, content_type="text/xml")
        return Reply(response, self.crypto, query)

    def send_xml(self, xml: str, timestamp: int | None = None) -> Reply:
        query = self.query(timestamp=timestamp)
        body: str = xml
        if self.crypto is not None:
            encrypted = self.crypto.encrypt_message(xml, query["nonce"], query["timestamp"])
            root = ET.fromstring(encrypted)
            encrypt = cdata(root.findtext("Encrypt") or "")
            envelope = f"<xml><ToUserName>{cdata(ACCOUNT)}</ToUserName><Encrypt>{encrypt}</Encrypt></xml>"
            query = {**query, "encrypt_type": "aes", "msg_signature": root.findtext("MsgSignature")}
            body = envelope
        return self.post_raw(body, query)

    def send_text(self, content: str, **kw) -> Reply:
        return self.send_xml(message_xml("text", Content=content, **kw))

    def send(self, msg_type: str, **kw) -> Reply:
        return self.send_xml(message_xml(msg_type, **kw))

    def event(self, event: str, **kw) -> Reply:
        return self.send_xml(message_xml("event", Event=event, **kw))
