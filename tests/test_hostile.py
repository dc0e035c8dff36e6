"""Hostile input against the real app: what an attacker or a broken client sends to every front end.

Hypothesis generates it; the properties hold for every example:
- never a 5xx (the app runs with TESTING, so an unhandled exception fails the test with its traceback);
- a valid answer (reply XML that WeChat accepts, the API's JSON, a console page) or a 4xx whose message
  is polite Chinese;
- nothing written to the store for a refused request (SQLite's data_version, the library's files).

`make test` runs the "ci" profile (repeatable examples, counts as written below); `make fuzz` the "fuzz"
profile: twenty times as many, freshly random (tests/conftest.py registers both).
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import sqlite3
import time
import tracemalloc
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import xmltodict
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from wechatpy.crypto import WeChatCrypto

from bot import templates as t
from server import create_app
from tests.docs_factory import docx_bomb_bytes, docx_bytes, html_bytes, lying_zip_bytes, pdf_bytes, zip_bytes
from tests.wechat_client import ACCOUNT, AES_KEY, APP_ID, TOKEN, WeChatClient, cdata, message_xml, sign

ADMIN_TOKEN = "admin-hostile"
CONSOLE_TOKEN = "console-hostile"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LIMITS = {  # small, so that going past them is cheap
    "MAX_UPLOAD_BYTES": 512 * 1024, "MAX_UNPACKED_BYTES": 2 * 1024 * 1024, "MAX_DOCUMENT_CHARS": 100_000,
    "MAX_PDF_PAGES": 50, "MAX_CHUNKS_PER_DOCUMENT": 200, "MAX_QUESTION_CHARS": 1000,
}
CJK = re.compile(r"[\u4e00-\u9fff]")


def examples(n: int) -> int:
    """``n`` examples in the ci profile (max_examples 100), proportionally more in the fuzz profile."""
    return max(1, n * settings.default.max_examples // 100)


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def hostile_app(built_instance, tmp_path_factory):
    """One app for the module (loading the model per example would take minutes): every front end on."""
    instance = tmp_path_factory.mktemp("hostile") / "instance"
    shutil.copytree(built_instance, instance, symlinks=True)
    return create_app({
        "INSTANCE_PATH": str(instance), "TESTING": True, "PRELOAD": True, "WECHAT_TOKEN": TOKEN,
        "WECHAT_AES_KEY": AES_KEY, "WECHAT_APP_ID": APP_ID, "WECHAT_RATE_LIMIT": 10**6,
        "ADMIN_TOKEN": ADMIN_TOKEN, "CONSOLE_TOKEN": CONSOLE_TOKEN, "CORPUS_DIR": str(instance / "no-corpus"),
        **LIMITS,
    })


@pytest.fixture(scope="module")
def store_watch(hostile_app):
    return StoreWatch(Path(hostile_app.instance_path))


@pytest.fixture(scope="module")
def console(hostile_app):
    """A test client signed in to the console, and its form token."""
    client = hostile_app.test_client()
    client.get("/console/login")
    with client.session_transaction() as session:
        csrf = session["csrf"]
    assert client.post("/console/login", data={"token": CONSOLE_TOKEN, "csrf": csrf}).status_code == 302
    client.get("/console/")  # sign-in starts a new session: the page gives it a new form token
    with client.session_transaction() as session:
        csrf = session["csrf"]
    return client, csrf


class StoreWatch:
    """Did anything write to the bot's SQLite store, or to the library's and question sets' folders?"""

    def __init__(self, instance: Path) -> None:
        self.instance = instance
        self.db = sqlite3.connect(instance / "bot.sqlite3", check_same_thread=False)

    def state(self) -> tuple:
        # every table's rows but the workers' heartbeats: a worker that held a claim a moment ago may still be
        # writing its last beat while the next request comes (a race, not a write the request made)
        tables = [name for (name,) in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != 'workers' "
            "ORDER BY name")]
        rows = tuple((name, tuple(self.db.execute(f'SELECT * FROM "{name}" ORDER BY rowid'))) for name in tables)
        return hash(rows), self.files()

    def files(self) -> tuple:
        roots = [self.instance / "documents", self.instance / "question-sets"]
        return tuple(sorted(str(p.relative_to(self.instance)) for root in roots if root.exists()
                            for p in root.rglob("*")))

    def documents(self) -> tuple:
        rows = self.db.execute("SELECT doc_id, file_name, sha256 FROM documents ORDER BY doc_id").fetchall()
        return tuple(rows), self.files()


def chinese(text: str) -> bool:
    return bool(CJK.search(text))


def webhook_errors(app) -> int:
    return app.extensions["webhook"].internal_errors


# ------------------------------------------------------------------------------- strategies

SPECIAL = ["]]>", "<![CDATA[", "&", "&amp;", "<", "\x00", "\ufffe", "\u202e", "帮助", "更多", "你好", "help",
           "？", "{question}", "%s", "😀" * 10, " ", "", "a" * 2000, "问" * 700, "怎样防止干部带病提拔？"]
xml_safe = st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\n\t")
any_char = st.characters(blacklist_categories=("Cs",))
hostile_text = st.one_of(st.text(xml_safe, max_size=60), st.text(any_char, max_size=30), st.sampled_from(SPECIAL))
MSG_IDS = ["", "abc", "1e9", "-1", "0", str(2**64), " 42 ", "١٢٣", "4" * 400, "0x10", "1.5", "6000000000000000O01"]
CREATE_TIMES = ["", "abc", "1e9", "-1", "١٧٠٠٠٠٠٠٠٠", "9" * 400, " 1700000000 ", str(2**40)]
MSG_TYPES = ["text", "voice", "image", "event", "location", "link", "video", "shortvideo", "file", "TEXT", "",
             "device_text", "device_event", "unknown"]
EVENTS = ["subscribe", "unsubscribe", "CLICK", "VIEW", "SCAN", "LOCATION", "scancode_push", "pic_sysphoto", ""]
EVENT_KEYS = ["HELP", "ABOUT", "EXAMPLES", "qrscene_1", "scanbarcode|x", "https://example.org", ""]
MODES = ["cdata"] * 6 + ["text"] * 3 + ["missing", "nested", "attr", "twice", "empty"]


def render_field(name: str, value: str, mode: str) -> str:
    if mode == "missing":
        return ""
    if mode == "cdata":
        return f"<{name}>{cdata(value)}</{name}>"
    if mode == "nested":
        return f"<{name}><a>{escape(value)}</a></{name}>"
    if mode == "attr":
        return f'<{name} k="v">{escape(value)}</{name}>'
    if mode == "twice":
        return render_field(name, value, "cdata") * 2
    if mode == "empty":
        return f"<{name}/>"
    return f"<{name}>{escape(value)}</{name}>"


FIELDS = ["ToUserName", "FromUserName", "CreateTime", "MsgType", "MsgId", "Content", "Recognition", "Event",
          "EventKey", "MediaId"]


@st.composite
def wechat_messages(draw) -> str:
    """Messages shaped like WeChat's: the payload (Content, Recognition, EventKey…) always hostile, and up to
    four of the fields wrong: a hostile value, missing, nested, with attributes, repeated or empty."""
    now = str(int(time.time()))
    right = {
        "ToUserName": ACCOUNT, "FromUserName": draw(st.sampled_from(["o_user_1", "o_user_2", "oAbC-_9"])),
        "CreateTime": now, "MsgType": draw(st.sampled_from(MSG_TYPES[:10])),
        "MsgId": str(draw(st.integers(1, 2**64 - 1))), "Content": draw(hostile_text),
        "Recognition": draw(hostile_text), "Event": draw(st.sampled_from(EVENTS)),
        "EventKey": draw(st.sampled_from(EVENT_KEYS) | hostile_text), "MediaId": draw(hostile_text),
    }
    wrong = {
        "ToUserName": hostile_text, "FromUserName": hostile_text,
        "CreateTime": st.integers(-10, 2**40).map(str) | st.sampled_from(CREATE_TIMES),
        "MsgType": st.sampled_from(MSG_TYPES) | hostile_text, "MsgId": st.sampled_from(MSG_IDS) | hostile_text,
        "Content": hostile_text, "Recognition": hostile_text, "Event": hostile_text, "EventKey": hostile_text,
        "MediaId": hostile_text,
    }
    broken = draw(st.sets(st.sampled_from(FIELDS), max_size=4))
    fields = []
    for name in FIELDS:
        if name in broken:
            value, mode = draw(st.just(right[name]) | wrong[name]), draw(st.sampled_from(MODES))
        else:
            value, mode = right[name], "cdata"
        fields.append(render_field(name, value, mode))
    return "<xml>" + "".join(draw(st.permutations(fields))) + "</xml>"


ENTITY_ATTACKS = [
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    "<xml><ToUserName>a</ToUserName><FromUserName>&e;</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>text</MsgType><Content>x</Content></xml>",
    '<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
    "<xml><Content>&d;</Content></xml>",
    '<?xml version="1.0" encoding="GBK"?><xml><Content>x</Content></xml>',
    "<xml>" + "<a>" * 5000 + "</a>" * 5000 + "</xml>",
    "<xml><xml></xml></xml>", "<xml/>", "<xml>text only</xml>", "<notxml><MsgType>text</MsgType></notxml>",
]


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, a piece cut out or inserted, or cut short."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        if op == "flip" and out:
            out[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del out[at:at + draw(st.integers(1, 64))]
        elif op == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=32))
        else:
            del out[at:]
    return bytes(out)


def plain_messages():
    valid = message_xml("text", Content="怎样防止干部带病提拔？").encode()
    return st.one_of(
        wechat_messages().map(str.encode),
        mutated(valid),
        st.binary(max_size=400),
        st.sampled_from(ENTITY_ATTACKS).map(str.encode),
    )


# ------------------------------------------------------------------------------ the webhook


def check_wechat_reply(status: int, body: str, sent: bytes | str, before: tuple, watch: StoreWatch,
                       crypto: WeChatCrypto | None = None) -> None:
    """``sent``: the plain message XML (inside the envelope in safe mode)."""
    event(f"HTTP {status}" + (" success" if body == "success" else ""))
    assert status in (200, 400, 403, 413), (status, body[:300])
    if status != 200:
        assert chinese(body), body
        assert watch.state() == before, "a refused message wrote to the store"
        return
    if body == "success":
        return
    if crypto is not None:
        root = ET.fromstring(body)
        body = crypto.decrypt_message(body, root.findtext("MsgSignature"), root.findtext("TimeStamp"),
                                      root.findtext("Nonce"))
    if isinstance(sent, bytes):
        sent = sent.decode("utf-8", "replace")  # as the webhook reads a body
    reply = ET.fromstring(body)
    assert reply.tag == "xml" and reply.findtext("MsgType") == "text"
    assert reply.findtext("ToUserName") == xmltodict.parse(sent)["xml"]["FromUserName"]
    content = reply.findtext("Content") or ""
    assert content and len(content.encode("utf-8")) <= t.WECHAT_MAX_BYTES, content[:200]
    assert "root:" not in content  # no entity was resolved


EMPTY_EVENT = message_xml("event", Event="").encode()  # found by `make fuzz`: wechatpy lower()s None


@given(body=plain_messages())
@example(body=EMPTY_EVENT)
@settings(max_examples=examples(250))
def test_webhook_answers_hostile_xml_with_a_reply_or_a_4xx(hostile_app, store_watch, body):
    wechat = WeChatClient(hostile_app.test_client())
    errors, before = webhook_errors(hostile_app), store_watch.state()
    r = wechat.post_raw(body)
    check_wechat_reply(r.status, r.body, body, before, store_watch)
    assert webhook_errors(hostile_app) == errors


def safe_envelope(kind: str, inner: str, garbage: str, nonce: str) -> tuple[str, dict]:
    """A safe-mode envelope: ``inner`` encrypted for our AppID or another one, or ``garbage`` as the
    ciphertext; always signed, so that each reaches the decryption."""
    ts = str(int(time.time()))
    if kind == "garbage":
        encrypt = garbage
    else:
        app_id = APP_ID if kind == "inner" else "wx0000000000000000"
        encrypted = WeChatCrypto(TOKEN, AES_KEY, app_id).encrypt_message(inner, nonce, ts)
        encrypt = ET.fromstring(encrypted).findtext("Encrypt") or ""
    envelope = f"<xml><ToUserName>{cdata(ACCOUNT)}</ToUserName><Encrypt>{cdata(encrypt)}</Encrypt></xml>"
    query = {"signature": sign(TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce, "encrypt_type": "aes",
             "msg_signature": sign(TOKEN, ts, nonce, encrypt.strip())}
    return envelope, query


ciphertexts = st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()) | st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=80)


@given(kind=st.sampled_from(["inner", "inner", "garbage", "other_app"]), inner=wechat_messages(),
       garbage=ciphertexts, nonce=st.text("abcdef0123456789", min_size=1, max_size=12))
@settings(max_examples=examples(100))
def test_safe_mode_answers_hostile_envelopes_with_a_reply_or_a_4xx(hostile_app, store_watch, kind, inner, garbage,
                                                                   nonce):
    envelope, query = safe_envelope(kind, inner, garbage, nonce)
    client = hostile_app.test_client()
    errors, before = webhook_errors(hostile_app), store_watch.state()
    response = client.post("/wechat?" + urllib.parse.urlencode(query), data=envelope, content_type="text/xml")
    body = response.get_data(as_text=True)
    check_wechat_reply(response.status_code, body, inner, before, store_watch,
                       crypto=WeChatCrypto(TOKEN, AES_KEY, APP_ID))
    assert webhook_errors(hostile_app) == errors


QUERY_KEYS = ["signature", "timestamp", "nonce", "echostr", "encrypt_type", "msg_signature", "openid"]


@given(query=st.dictionaries(st.sampled_from(QUERY_KEYS) | st.text(max_size=5), hostile_text, max_size=7),
       fresh=st.booleans(), signed=st.booleans(), method=st.sampled_from(["GET", "POST"]))
@settings(max_examples=examples(80))
def test_webhook_query_strings_never_fail(hostile_app, store_watch, query, fresh, signed, method):
    """Signatures, timestamps and nonces of any shape: signed ones reach the freshness check."""
    if fresh:
        query["timestamp"] = str(int(time.time()))
    if signed:
        query["signature"] = sign(TOKEN, query.get("timestamp", ""), query.get("nonce", ""))
    before = store_watch.state()
    client = hostile_app.test_client()
    url = "/wechat?" + urllib.parse.urlencode(query)
    r = client.get(url) if method == "GET" else client.post(url, data=message_xml("text", Content="你好"))
    event(f"{method} HTTP {r.status_code}")
    assert r.status_code in (200, 400, 403)
    if r.status_code != 200:
        assert chinese(r.get_data(as_text=True))
        assert store_watch.state() == before


@pytest.mark.parametrize("msg_id", ["", "abc", "1e9", "6000000000000000O01", "-5", str(2**64), "1" * 30])
def test_a_malformed_msgid_is_answered_and_deduped_by_user_and_time(hostile_app, msg_id):
    """WeChat never sends one; such a message is deduped like an event, by FromUserName + CreateTime."""
    wechat = WeChatClient(hostile_app.test_client())
    user, now = f"o_msgid_{abs(hash(msg_id))}", int(time.time())
    xml = re.sub(r"<MsgId>\d+</MsgId>", f"<MsgId>{escape(msg_id)}</MsgId>",
                 message_xml("text", user=user, create_time=now, Content="怎样防止干部带病提拔？"))
    first, again = wechat.post_raw(xml), wechat.post_raw(xml)
    assert first.status == again.status == 200 and first.body == again.body
    assert first.field("ToUserName") == user and "带病提拔" in (first.content or "")
    store = hostile_app.extensions["bot_store"]
    user_hash = store.hash_user(user)
    assert [e.user_hash for e in store.recent_queries(limit=50)].count(user_hash) == 1


@pytest.mark.parametrize("create_time", ["", "abc", "1e9", "-1", "9" * 400, str(2**40)])
def test_a_malformed_createtime_is_400(hostile_app, store_watch, create_time):
    wechat = WeChatClient(hostile_app.test_client())
    xml = re.sub(r"<CreateTime>\d+</CreateTime>", f"<CreateTime>{create_time}</CreateTime>",
                 message_xml("text", Content="你好"))
    before = store_watch.state()
    r = wechat.post_raw(xml)
    assert r.status == 400 and "CreateTime" in r.body
    assert store_watch.state() == before


def test_one_msgid_from_two_users_gets_each_their_own_reply(hostile_app):
    wechat = WeChatClient(hostile_app.test_client())
    a = wechat.send_text("你好", user="o_first", msg_id=7_700_000)
    b = wechat.send_text("帮助", user="o_second", msg_id=7_700_000)
    assert a.field("ToUserName") == "o_first" and b.field("ToUserName") == "o_second"
    assert "使用说明" in (b.content or "")


def test_the_outermost_guard_still_answers_politely(hostile_app, monkeypatch):
    """A bug below the view (here: the dedupe store failing hard) is logged, counted and answered with the
    polite error reply: WeChat never sees a 500 or a stack trace."""
    from bot.wechat import Webhook

    def broken(self, inbound):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(Webhook, "reply_for", broken)
    wechat = WeChatClient(hostile_app.test_client())
    errors = webhook_errors(hostile_app)
    r = wechat.send_text("你好", user="o_guard")
    assert r.status == 200 and r.content == t.INTERNAL_ERROR and r.field("ToUserName") == "o_guard"
    assert webhook_errors(hostile_app) == errors + 1
    safe = WeChatClient(hostile_app.test_client(), aes_key=AES_KEY)
    r = safe.send_text("你好", user="o_guard")
    assert r.status == 200 and r.content == t.INTERNAL_ERROR  # encrypted, like every safe-mode reply


# --------------------------------------------------------------------------------- /api/ask

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)
questions = st.one_of(hostile_text, st.text(any_char | st.sampled_from("\ud800\udfff"), max_size=40),
                      st.integers(990, 1010).map(lambda n: "问" * n))
api_bodies = st.one_of(
    json_values.map(json.dumps),
    st.fixed_dictionaries({"q": questions}, optional={"k": json_values, "details": json_values}).map(json.dumps),
    st.fixed_dictionaries({"q": st.sampled_from(SPECIAL)}, optional={"k": st.integers(-3, 30)}).map(
        lambda d: json.dumps(d, ensure_ascii=False)),
    st.integers(9, 20_000).map(lambda n: "[" * n + "]" * n),
    st.integers(9, 5_000).map(lambda n: '{"q":' * n),
    st.integers(4300, 6000).map(lambda n: '{"q": "问题", "k": ' + "1" * n + "}"),
    st.integers(16 * 1024 - 40, 16 * 1024 + 40).map(lambda n: json.dumps({"q": "问题", "pad": "x" * n})),
    st.binary(max_size=300),
    mutated(json.dumps({"q": "怎样防止干部带病提拔？", "k": 3}).encode()),
)


@given(body=api_bodies)
@settings(max_examples=examples(250))
def test_api_ask_answers_json_or_a_polite_4xx(hostile_app, store_watch, body):
    before = store_watch.state()
    r = hostile_app.test_client().post("/api/ask", data=body, content_type="application/json")
    event(f"HTTP {r.status_code}")
    assert r.status_code in (200, 400, 413), r.get_data(as_text=True)[:300]
    data = r.get_json()
    if r.status_code == 200:
        assert isinstance(data["text"], str) and data["text"]
        assert isinstance(data["passages"], list)
    else:
        assert chinese(data["error"])
        if r.status_code == 413:
            assert "FLASK_MAX_QUESTION_CHARS" in data["error"] or "FLASK_API_MAX_BODY_BYTES" in data["error"]
    assert store_watch.state() == before  # /api/ask never writes


@pytest.mark.parametrize("body", ['{"q":' * 5000, "[" * 10_000, '{"q": "' + "问" * 1001 + '"}',
                                  json.dumps({"q": "问题", "pad": "x" * 20_000})])
def test_api_ask_refusals_from_the_issue(hostile_app, body):
    r = hostile_app.test_client().post("/api/ask", data=body, content_type="application/json")
    assert r.status_code in (400, 413) and chinese(r.get_json()["error"])


# ----------------------------------------------------------------------- uploads and ingest

VALID_DOCX = docx_bytes(["关于加强基层治理的通知", "一、总体要求", "坚持党建引领，推动治理重心下移。"])
VALID_PDF = pdf_bytes(["Data Sharing Measures", "Article 1. Government data shall be shared by default."])
DOCX_PARTS = ["[Content_Types].xml", "_rels/.rels", "word/document.xml", "word/_rels/document.xml.rels",
              "word/styles.xml", "docProps/core.xml"]
xmlish = st.one_of(st.binary(max_size=200), st.text(xml_safe, max_size=100).map(lambda s: f"<a>{escape(s)}</a>".encode()),
                   st.sampled_from([b"<?xml version='1.0'?><Types/>", b"", b"<w:document/>"]))


def broken_content_types(data: bytes) -> bytes:
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    parts["[Content_Types].xml"] = b"<Types><Default Extension='xml' ContentType='broken'/></Types>"
    return zip_bytes(parts)


def document_bodies(suffix: str):
    """Bodies of every kind for a file with ``suffix``, most of them broken."""
    text = st.text(xml_safe, max_size=300)
    common = [st.binary(max_size=2000), text.map(lambda s: s.encode("utf-8"))]
    if suffix == ".docx":
        return st.one_of(*common, mutated(VALID_DOCX),
                         st.dictionaries(st.sampled_from(DOCX_PARTS) | st.text(min_size=1, max_size=12), xmlish, max_size=6).map(zip_bytes),
                         st.lists(text, min_size=1, max_size=4).map(docx_bytes),
                         st.just(broken_content_types(VALID_DOCX)))
    if suffix == ".pdf":
        return st.one_of(*common, mutated(VALID_PDF), st.lists(text, min_size=1, max_size=3).map(
            lambda lines: pdf_bytes([ln.encode("latin-1", "ignore").decode("latin-1") for ln in lines])),
            st.binary(max_size=500).map(lambda b: b"%PDF-1.4\n" + b))
    if suffix in (".html", ".htm"):
        return st.one_of(*common, st.tuples(text, st.lists(text, max_size=3)).map(lambda p: html_bytes(*p)),
                         text.map(lambda s: f"<html><title>{s}<p>{s}<script>{s}".encode()))
    return st.one_of(*common, text.map(lambda s: s.encode("gb18030")), text.map(lambda s: s.encode("utf-16")),
                     st.binary(min_size=1, max_size=99).map(lambda b: b"\xff\xfe" + b[: len(b) // 2 * 2 + 1]))


SUFFIXES = [".txt", ".md", ".docx", ".pdf", ".html", ".htm"] * 2 + [".TXT", ".exe", ".png", "", ".docx.exe"]
NAMES = ["../../etc/passwd", "..\\..\\boot", "a\x00b", "a.txt\x00", "\u202etxt", "CON", "", ".", "..", "/", "a/",
         " ", "x" * 400, "中" * 200, "a\nb", "a\rb", "%00", "~/.ssh/id", "C:\\Windows\\win", "\x07\x1b[31m", "名字"]


@st.composite
def uploads(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(SUFFIXES))
    stem = draw(st.sampled_from(NAMES) | st.text(any_char, max_size=40))
    body = draw(document_bodies(suffix.lower().removesuffix(".exe") or ".txt"))
    return stem + suffix, body


@given(upload=uploads(), title=st.none() | hostile_text | st.just("标" * 300), replace=st.booleans())
@settings(max_examples=examples(150))
def test_admin_upload_stores_a_clean_file_or_refuses_cleanly(hostile_app, store_watch, upload, title, replace):
    name, body = upload
    form = {"file": (io.BytesIO(body), name), "replace": "1" if replace else "0"}
    if title is not None:
        form["title"] = title
    client = hostile_app.test_client()
    before = store_watch.documents()
    r = client.post("/admin/api/documents", headers=AUTH, data=form, content_type="multipart/form-data")
    event(f"HTTP {r.status_code}")
    assert r.status_code in (201, 400, 409, 413, 415, 422), r.get_data(as_text=True)[:300]
    data = r.get_json()
    if r.status_code != 201:
        assert chinese(data["error"])
        assert store_watch.documents() == before, "a refused upload changed the library"
        if r.status_code == 413:
            assert "FLASK_MAX_" in data["error"]
        return
    stored = data["document"]
    file_name = stored["file_name"]
    assert not re.search(r"[\x00-\x1f\x7f/\\]", file_name) and not file_name.startswith(".")
    assert len(file_name.encode("utf-8")) <= 180
    path = Path(hostile_app.instance_path) / "documents" / stored["doc_id"] / file_name
    assert path.is_file() and path.read_bytes() == body
    assert client.delete(f"/admin/api/documents/{urllib.parse.quote(stored['doc_id'], safe='')}",
                         headers=AUTH).status_code == 200


@given(upload=uploads())
@settings(max_examples=examples(250))
def test_ingest_reads_a_document_or_raises_ingest_error(upload):
    """Whatever a parser raises on a broken file becomes IngestError (cannot read this file)."""
    from index.ingest import IngestError, ReadLimits, load_bytes

    name, body = upload
    limits = ReadLimits(unpacked_bytes=LIMITS["MAX_UNPACKED_BYTES"], chars=LIMITS["MAX_DOCUMENT_CHARS"],
                        pdf_pages=LIMITS["MAX_PDF_PAGES"])
    try:
        doc = load_bytes(body, name, limits=limits)
    except IngestError as exc:
        event(type(exc).__name__)
        assert chinese(str(exc))
        return
    event("read")
    assert doc.text.strip() and len(doc.text) <= limits.chars + 1000


@given(text=st.text(any_char, max_size=2000) | st.text(st.sampled_from("一、（）第条章\n 。，1.—页\f\r"), max_size=400))
@settings(max_examples=examples(150))
def test_clean_takes_any_text(text):
    from index.chunk import chunk_document
    from index.ingest import IngestError, clean

    try:
        doc = clean(text, doc_id="d")
    except IngestError:
        return
    assert all(chunk.text.strip() for chunk in chunk_document(doc))


def upload_one(app, name: str, body: bytes):
    return app.test_client().post("/admin/api/documents", headers=AUTH, data={"file": (io.BytesIO(body), name)},
                                  content_type="multipart/form-data")


def test_a_zip_bomb_docx_never_reaches_memory(hostile_app, store_watch):
    bomb = docx_bomb_bytes(40 * 1024 * 1024)  # 40 MB of document.xml in a few dozen KB
    assert len(bomb) < 200_000
    before = store_watch.documents()
    tracemalloc.start()
    try:
        r = upload_one(hostile_app, "炸弹.docx", bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 413 and "FLASK_MAX_UNPACKED_BYTES" in r.get_json()["error"]
    assert peak < 8 * 1024 * 1024, f"{peak / 1e6:.1f} MB allocated while refusing the bomb"
    assert store_watch.documents() == before


def test_a_zip_whose_headers_lie_is_refused(hostile_app, store_watch):
    parts = {"[Content_Types].xml": b"<Types/>", "word/document.xml": b" " * (5 * 1024 * 1024)}
    before = store_watch.documents()
    r = upload_one(hostile_app, "lies.docx", lying_zip_bytes(zip_bytes(parts)))
    assert r.status_code in (413, 422) and chinese(r.get_json()["error"])
    assert store_watch.documents() == before


@pytest.mark.parametrize("name,body,status,needle", [
    ("broken-types.docx", broken_content_types(VALID_DOCX), 422, "无法读取"),
    ("a\x00b.txt", "关于加强基层治理的通知\n\n坚持党建引领，推动治理重心下移。\n".encode(), 201, None),
    ("long.txt", ("这是一句很长的话。" * 12_000).encode(), 413, "FLASK_MAX_DOCUMENT_CHARS"),
    ("many.txt", "\n\n".join(f"第{i}条 这是第{i}条规定的内容，讲的是一件具体的事情，篇幅刚好足够成为一段。" * 4
                             for i in range(300)).encode(), 413, "FLASK_MAX_CHUNKS_PER_DOCUMENT"),
    ("big.txt", b"x" * (600 * 1024), 413, "FLASK_MAX_UPLOAD_BYTES"),
    ("huge.txt", b"x" * (2 * 1024 * 1024), 413, "FLASK_MAX_UPLOAD_BYTES"),
])
def test_upload_refusals_name_their_limit(hostile_app, store_watch, name, body, status, needle):
    before = store_watch.documents()
    r = upload_one(hostile_app, name, body)
    assert r.status_code == status, r.get_data(as_text=True)[:300]
    if status == 201:
        stored = r.get_json()["document"]
        assert stored["file_name"] == "ab.txt"
        hostile_app.test_client().delete(f"/admin/api/documents/{stored['doc_id']}", headers=AUTH)
        return
    assert needle in r.get_json()["error"]
    assert store_watch.documents() == before


def test_an_index_build_refuses_a_document_with_too_many_passages(hostile_app):
    from index.ingest import IngestError, clean

    engine = hostile_app.extensions["engine"]
    versions = engine.store.versions()
    doc = clean("\n\n".join(f"第{i}条 本条规定第{i}项具体事务的办理要求和时限，各单位应当遵照执行。" * 4
                            for i in range(300)), doc_id="many", source="many.txt")
    with hostile_app.app_context(), pytest.raises(IngestError, match="FLASK_MAX_CHUNKS_PER_DOCUMENT"):
        engine.build([doc])
    assert engine.store.versions() == versions


# -------------------------------------------------------------------------------- console

console_k = st.sampled_from(["", "abc", "0", "21", "²", "5", "-1", "1" * 5000, "٣", "3"]) | st.text(max_size=4)
form_text = st.one_of(hostile_text, st.integers(990, 1010).map(lambda n: "问" * n))


@given(q=form_text, k=console_k)
@settings(max_examples=examples(60))
def test_console_ask_form(hostile_app, store_watch, console, q, k):
    client, csrf = console
    before = store_watch.state()
    r = client.post("/console/", data={"q": q, "k": k, "csrf": csrf})
    event(f"HTTP {r.status_code}")
    assert r.status_code in (200, 400, 413), r.get_data(as_text=True)[:300]
    if r.status_code != 200:
        assert chinese(r.get_data(as_text=True))
        assert store_watch.state() == before


question_lines = st.lists(st.fixed_dictionaries({"q": st.text(xml_safe, max_size=20)}), min_size=1, max_size=2).map(
    lambda rows: "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode())
question_sets = st.one_of(
    question_lines,
    st.binary(max_size=300),
    st.integers(9, 5000).map(lambda n: ('{"q": "问"}\n' + "[" * n + "]" * n).encode()),
    st.integers(4300, 5000).map(lambda n: ('{"q": "问", "x": ' + "1" * n + "}").encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.just('{"q": "问"}\n'.encode("utf-16")),
)


@given(name=st.sampled_from(NAMES) | st.text(any_char, max_size=30), suffix=st.sampled_from([".jsonl", ".txt", ""]),
       body=question_sets)
@settings(max_examples=examples(50))
def test_console_question_set_upload(hostile_app, store_watch, console, name, suffix, body):
    client, csrf = console
    before = store_watch.state()
    r = client.post("/console/batch", data={"csrf": csrf, "file": (io.BytesIO(body), name + suffix)},
                    content_type="multipart/form-data")
    event(f"HTTP {r.status_code}")
    assert r.status_code in (302, 400, 413), r.get_data(as_text=True)[:300]
    if r.status_code == 302:  # accepted: let its run finish before the next example measures the store
        batch_id = int(r.headers["Location"].rstrip("/").rsplit("/", 1)[1])
        store = hostile_app.extensions["bot_store"]
        deadline = time.monotonic() + 60
        while store.get_batch(batch_id)["state"] == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        sets = Path(hostile_app.instance_path) / "question-sets"
        assert not [p for p in sets.iterdir() if p.name.startswith(".upload-")]
        return
    assert chinese(r.get_data(as_text=True))
    assert store_watch.state() == before, "a refused question set was written"


# ------------------------------------------------------------------------------- URL parts

ROUTES = [("GET", "/admin/api/jobs/{}"), ("POST", "/admin/api/versions/{}/activate"),
          ("DELETE", "/admin/api/documents/{}"), ("GET", "/admin/api/audit?limit={}"), ("GET", "/console/batch/{}"),
          ("GET", "/console/batch/{}/download.csv"), ("GET", "/console/documents/{}"),
          ("GET", "/console/log?channel={}&abstained=1"), ("GET", "/api/ask/{}"), ("PUT", "/api/ask"),
          ("GET", "/console/login?next={}")]


@given(route=st.sampled_from(ROUTES), part=st.integers(-2**70, 2**70).map(str) | hostile_text)
@settings(max_examples=examples(80))
def test_url_parts_of_any_shape(hostile_app, console, route, part):
    client, _ = console
    method, template = route
    url = template.format(urllib.parse.quote(part, safe=""))
    r = client.open(url, method=method, headers=AUTH if url.startswith("/admin") else {})
    event(f"HTTP {r.status_code}")
    assert r.status_code < 500, (url, r.status_code)
    if r.status_code >= 400:
        assert chinese(r.get_data(as_text=True))
