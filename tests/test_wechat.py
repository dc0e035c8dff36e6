"""The /wechat webhook driven like WeChat's servers drive it."""

import os
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bot import templates as t
from bot.curation.responders import FEEDBACK_FOOTER
from bot.wechat import cdata, text_reply_xml
from tests.conftest import make_app
from tests.wechat_client import ACCOUNT, AES_KEY, APP_ID, TOKEN, WeChatClient, message_xml

FIXTURES = Path(__file__).parent / "fixtures"
QUESTION = "海燕归巢计划是做什么的？"


def logged(app):
    return app.extensions["bot_store"].recent_queries(limit=1000)


# ----------------------------------------------------------------------------- transport


def test_get_verification_echoes(wechat):
    r = wechat.client.get("/wechat", query_string=wechat.query(echostr="echo-123"))
    assert r.status_code == 200 and r.get_data(as_text=True) == "echo-123"


def test_wrong_or_missing_signature_is_403(wechat):
    q = wechat.query(echostr="x")
    q["signature"] = "0" * 40
    assert wechat.client.get("/wechat", query_string=q).status_code == 403
    q.pop("signature")
    assert wechat.client.get("/wechat", query_string=q).status_code == 403
    bad = wechat.query()
    bad["signature"] = "f" * 40
    assert wechat.post_raw(message_xml("text", Content=QUESTION), bad).status == 403


def test_replayed_old_timestamp_is_403(wechat):
    old = int(time.time()) - 3600
    assert wechat.send_text(QUESTION, create_time=old).status == 200  # CreateTime is not the check
    assert wechat.send_xml(message_xml("text", Content=QUESTION), timestamp=old).status == 403
    assert wechat.send_xml(message_xml("text", Content=QUESTION), timestamp=int(time.time()) + 3600).status == 403


def test_endpoint_is_off_without_a_token(built_instance, tmp_path, caplog):
    app = make_app(built_instance, tmp_path)
    r = app.test_client().get("/wechat", query_string={"echostr": "x"})
    assert r.status_code == 503
    assert "FLASK_WECHAT_TOKEN" in caplog.text


@pytest.mark.parametrize("body,status", [
    ("<xml><ToUserName>broken", 400),
    ("not xml at all", 400),
    ("", 400),
    ("<xml><Content>no sender</Content></xml>", 400),
    ("<xml>" + "<a>x</a>" * 20000 + "</xml>", 413),
])
def test_bad_bodies(wechat, body, status):
    r = wechat.post_raw(body)
    assert r.status == status
    assert "Traceback" not in r.body


# ------------------------------------------------------------------------------ messages


def test_text_question_gets_the_answer(wechat, wechat_app):
    r = wechat.send_text(QUESTION, user="o_alice")
    assert r.status == 200
    assert r.field("ToUserName") == "o_alice" and r.field("FromUserName") == ACCOUNT
    assert r.field("MsgType") == "text"
    with wechat_app.app_context():
        expected = wechat_app.extensions["engine"].answerer.answer(QUESTION).text
    assert r.content == expected + FEEDBACK_FOOTER  # a member is invited to say whether it helped
    assert "海燕归巢" in r.content and t.utf8_len(r.content) <= t.WECHAT_MAX_BYTES


@pytest.mark.parametrize("text,needle", [
    ("帮助", "使用说明"), ("help", "使用说明"), ("？", "使用说明"),
    ("你好", "您好！我是政策问答助手"), ("在吗", "您好"),
])
def test_keywords(wechat, text, needle):
    assert needle in wechat.send_text(text).content


def test_more_continues_with_the_next_passages(wechat):
    # answered with one passage quoted and two more close to it (scores 0.29, 0.24, 0.23)
    first = wechat.send_text("如何加强基层党组织建设？", user="o_more")
    more = wechat.send_text("更多", user="o_more")
    assert "还有以下相关内容" in more.content
    quotes_first = {line for line in first.content.split("\n") if line.startswith("“")}
    quotes_more = {line for line in more.content.split("\n") if line.startswith("“")}
    assert quotes_more and not quotes_first & quotes_more
    again = [wechat.send_text("更多", user="o_more").content for _ in range(4)]
    assert "没有更多相关内容了" in again[-1]


def test_more_without_a_question(wechat):
    assert wechat.send_text("更多", user="o_new").content == t.NO_QUESTION_FOR_MORE


def test_voice_with_recognition_is_answered(wechat):
    r = wechat.send("voice", MediaId="m1", Format="amr", Recognition=QUESTION)
    assert r.content.startswith("（您的语音识别为：“海燕归巢计划是做什么的？”）")
    assert "海燕归巢" in r.content.split("）", 1)[1]


def test_voice_without_recognition_asks_to_type(wechat):
    assert "没能识别" in wechat.send("voice", MediaId="m1", Format="amr", Recognition="").content
    assert "没能识别" in wechat.send("voice", MediaId="m1", Format="amr").content


@pytest.mark.parametrize("msg_type,fields,name", [
    ("image", {"PicUrl": "http://x/1.jpg", "MediaId": "m"}, "图片"),
    ("video", {"MediaId": "m", "ThumbMediaId": "t"}, "视频"),
    ("shortvideo", {"MediaId": "m", "ThumbMediaId": "t"}, "小视频"),
    ("location", {"Location_X": "28.9", "Location_Y": "118.8", "Scale": "15", "Label": "衢州"}, "位置"),
    ("link", {"Title": "t", "Description": "d", "Url": "http://x"}, "链接"),
    ("file", {"Title": "a.pdf", "FileKey": "k", "FileMd5": "m", "FileTotalLen": "10"}, "文件"),
])
def test_non_text_messages_get_a_polite_template(wechat, msg_type, fields, name):
    content = wechat.send(msg_type, **fields).content
    assert content.startswith(f"收到您发来的{name}。") and "文字" in content


def test_subscribe_welcomes(wechat):
    content = wechat.event("subscribe", EventKey="qrscene_123", Ticket="tk").content
    assert content.startswith("感谢关注！") and "是指什么？" in content


@pytest.mark.parametrize("event,fields", [
    ("unsubscribe", {}), ("SCAN", {"EventKey": "123", "Ticket": "tk"}),
    ("LOCATION", {"Latitude": "28.9", "Longitude": "118.8", "Precision": "30"}),
    ("VIEW", {"EventKey": "http://example.com"}), ("CLICK", {"EventKey": "UNKNOWN_KEY"}), ("weird", {}),
])
def test_events_without_reply_answer_success(wechat, event, fields):
    r = wechat.event(event, **fields)
    assert r.status == 200 and r.body == "success"


@pytest.mark.parametrize("key,needle", [
    ("HELP", "使用说明"), ("ABOUT", "目前收录 1 份文件"), ("EXAMPLES", "试着这样问"),
])
def test_menu_clicks(wechat, key, needle):
    assert needle in wechat.event("CLICK", EventKey=key).content


# ------------------------------------------------------------------------ golden replies


@pytest.mark.parametrize("name,send", [
    ("subscribe", lambda w: w.event("subscribe", user="o_golden", create_time=1700000000)),
    ("image", lambda w: w.send("image", user="o_golden", create_time=1700000000, PicUrl="u", MediaId="m")),
    ("abstain", lambda w: w.send_text("红烧肉怎么做？", user="o_golden", create_time=1700000000)),
])
def test_golden_replies(wechat, name, send):
    r = send(wechat)
    golden = FIXTURES / f"reply_{name}.xml"
    actual = r.plain.replace(f"<CreateTime>{r.field('CreateTime')}</CreateTime>", "<CreateTime>0</CreateTime>")
    if os.environ.get("UPDATE_GOLDEN"):  # regenerate after a deliberate template change, then review the diff
        golden.write_text(actual + "\n", encoding="utf-8")
    assert actual == golden.read_text(encoding="utf-8").strip()


# ----------------------------------------------------------------------------- safe mode


@pytest.fixture
def safe_app(built_instance, tmp_path):
    return make_app(built_instance, tmp_path, WECHAT_TOKEN=TOKEN, WECHAT_APP_ID=APP_ID, WECHAT_AES_KEY=AES_KEY)


def test_safe_mode_round_trip(safe_app):
    client = WeChatClient(safe_app.test_client(), aes_key=AES_KEY)
    r = client.send_text(QUESTION, user="o_safe")
    assert r.status == 200
    outer = ET.fromstring(r.body)
    assert outer.findtext("Encrypt") and outer.findtext("MsgSignature")
    assert r.field("ToUserName") == "o_safe" and "海燕归巢" in r.content


def test_safe_mode_rejects_another_app_id(safe_app):
    stranger = WeChatClient(safe_app.test_client(), aes_key=AES_KEY, app_id="wx_someone_else")
    assert stranger.send_text(QUESTION).status == 403


def test_safe_mode_rejects_a_wrong_msg_signature(safe_app):
    client = WeChatClient(safe_app.test_client(), aes_key=AES_KEY)
    q = client.query()
    encrypted = client.crypto.encrypt_message(message_xml("text", Content=QUESTION), q["nonce"], q["timestamp"])
    envelope = f"<xml><Encrypt>{cdata(ET.fromstring(encrypted).findtext('Encrypt'))}</Encrypt></xml>"
    q.update(encrypt_type="aes", msg_signature="0" * 40)
    assert client.post_raw(envelope, q).status == 403


def test_safe_mode_message_without_aes_key_configured(wechat):
    q = wechat.query(encrypt_type="aes", msg_signature="x")
    assert wechat.post_raw("<xml><Encrypt>abc</Encrypt></xml>", q).status == 400


# ------------------------------------------------------------------------------ dedupe


def test_late_duplicate_gets_the_stored_reply_and_is_logged_once(wechat, wechat_app):
    xml = message_xml("text", user="o_dup", msg_id=4242, Content=QUESTION)
    first = wechat.send_xml(xml)
    second = wechat.send_xml(xml)
    assert first.body == second.body
    assert [e.question for e in logged(wechat_app)].count(QUESTION) == 1


def test_concurrent_duplicates_wait_for_the_first(wechat, wechat_app):
    engine = wechat_app.extensions["engine"]
    original = engine.answerer.answer

    def slow(*args, **kwargs):
        time.sleep(0.5)
        return original(*args, **kwargs)

    engine.answerer.answer = slow
    xml = message_xml("text", user="o_conc", msg_id=777, Content=QUESTION)
    replies = [None] * 4

    def send(i):
        replies[i] = wechat.send_xml(xml).body

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(set(replies)) == 1 and "海燕归巢" in replies[0]
    assert [e.question for e in logged(wechat_app)].count(QUESTION) == 1


def test_event_dedupe_uses_sender_and_create_time(wechat):
    xml = message_xml("event", user="o_ev", create_time=1700000001, Event="subscribe")
    assert wechat.send_xml(xml).body == wechat.send_xml(xml).body


# ----------------------------------------------------------------- limits and failures


def test_cdata_survives_terminator_in_content(wechat):
    question = "]]><b>x</b>是什么？]]>"
    r = wechat.send_text(question)
    assert r.xml is not None and question in r.content
    xml = text_reply_xml("u", "g", "a]]>b")
    assert ET.fromstring(xml).findtext("Content") == "a]]>b"


def test_five_thousand_characters(wechat):
    r = wechat.send_text("海燕归巢计划是做什么的" + "啊" * 5000)
    assert r.status == 200 and t.utf8_len(r.content) <= t.WECHAT_MAX_BYTES


def test_every_reply_fits_the_byte_limit(wechat):
    for text in ["基层党建的“一二三四”组合拳指什么？", "更多", "帮助", "人才工作要树立哪三种理念？", "更多"]:
        assert t.utf8_len(wechat.send_text(text, user="o_len").content) <= t.WECHAT_MAX_BYTES


def test_rate_limit(built_instance, tmp_path):
    app = make_app(built_instance, tmp_path, WECHAT_TOKEN=TOKEN, WECHAT_RATE_LIMIT=3)
    w = WeChatClient(app.test_client())
    contents = [w.send_text("你好", user="o_fast").content for _ in range(4)]
    assert contents[3] == t.RATE_LIMITED and t.RATE_LIMITED not in contents[:3]
    assert w.send_text("你好", user="o_other").content != t.RATE_LIMITED


def test_internal_error_still_gets_a_polite_reply(wechat, wechat_app, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("index exploded")

    wechat_app.extensions["engine"].answerer.answer = broken
    r = wechat.send_text(QUESTION, msg_id=99887766)
    assert r.status == 200 and r.content == t.INTERNAL_ERROR
    assert "MsgId=99887766" in caplog.text and "index exploded" in caplog.text


def test_a_retry_after_an_internal_error_is_answered_afresh(wechat, wechat_app):
    # the fault passes before WeChat retries the message: the retry gets the answer, not the stored apology
    answerer = wechat_app.extensions["engine"].answerer
    original, calls = answerer.answer, []

    def fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a passing fault")
        return original(*args, **kwargs)

    answerer.answer = fails_once
    assert wechat.send_text(QUESTION, user="o_retry", msg_id=99887767).content == t.INTERNAL_ERROR
    retry = wechat.send_text(QUESTION, user="o_retry", msg_id=99887767).content
    assert retry != t.INTERNAL_ERROR and "海燕归巢" in retry and len(calls) == 2
    assert wechat.send_text(QUESTION, user="o_retry", msg_id=99887767).content == retry  # now stored: once
    assert len(calls) == 2


def test_slow_answer_replies_in_time_and_keeps_the_answer_for_more(built_instance, tmp_path):
    app = make_app(built_instance, tmp_path, WECHAT_TOKEN=TOKEN, WECHAT_REPLY_BUDGET_SECONDS=0.2)
    answerer = app.extensions["engine"].answerer
    original = answerer.answer
    release, finished = threading.Event(), threading.Event()

    def slow(*args, **kwargs):  # an answer that takes as long as the test wants, not a fixed sleep
        release.wait(30)
        try:
            return original(*args, **kwargs)
        finally:
            finished.set()

    answerer.answer = slow
    w = WeChatClient(app.test_client())
    r = w.send_text(QUESTION, user="o_slow")
    assert not finished.is_set()  # the reply did not wait for the answer
    assert "请稍等几秒后发送“更多”" in r.content
    assert "还在查找" in w.send_text("更多", user="o_slow").content
    release.set()
    store, deadline = app.extensions["pipeline"].store, time.monotonic() + 30
    while "late" not in store.get_state("o_slow", 3600) and time.monotonic() < deadline:
        time.sleep(0.05)
    later = w.send_text("更多", user="o_slow").content
    assert "海燕归巢" in later and "文件中" in later


def test_work_before_retrieval_counts_against_the_reply_budget(built_instance, tmp_path):
    app = make_app(built_instance, tmp_path, WECHAT_TOKEN=TOKEN, WECHAT_REPLY_BUDGET_SECONDS=0.2)
    pipeline = app.extensions["pipeline"]
    release, left = threading.Event(), []
    original_answer, original_left = pipeline.answerer.answer, pipeline.time_left

    def held(*args, **kwargs):
        release.wait(30)
        return original_answer(*args, **kwargs)

    def time_left(message):
        left.append(original_left(message))
        return left[-1]

    pipeline.answerer.answer, pipeline.time_left = held, time_left
    pipeline.refreshers.append(lambda: time.sleep(0.3))  # a slow step before retrieval uses up the budget
    r = WeChatClient(app.test_client()).send_text(QUESTION, user="o_budget")
    release.set()
    assert left == [0.0]  # retrieval was not given a fresh budget of its own
    assert "请稍等几秒后发送“更多”" in r.content


def test_questions_are_logged_with_hashed_users(wechat, wechat_app):
    wechat.send_text(QUESTION, user="o_log_user")
    wechat.send_text("红烧肉怎么做？", user="o_log_user")
    entries = logged(wechat_app)
    assert [e.question for e in entries[:2]] == ["红烧肉怎么做？", QUESTION]
    assert entries[0].abstained and not entries[1].abstained
    assert entries[1].top_doc == "在全市组织部长会议上的讲话摘要" and entries[1].index_version
    assert entries[0].user_hash == entries[1].user_hash and "o_log_user" not in entries[0].user_hash
    result = wechat_app.test_cli_runner().invoke(args=["log", "tail", "--abstained"])
    assert "红烧肉怎么做？" in result.output and QUESTION not in result.output
