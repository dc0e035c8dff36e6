"""Curation through the admin API and the real reply pipeline (real model and index): official answers,
precedence, masking, synonyms on every worker, welcome and menu, feedback, the unanswered queue, audit."""

import io
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import make_app
from tests.wechat_client import APP_ID, WeChatClient
from tests.wechat_client import TOKEN as WECHAT_TOKEN

TOKEN = "admin-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Admin-User": "curator"}
DUES = "党员每个月要交多少党费？"
DUES_ANSWER = "按照党章规定，党员每月交纳党费，标准按收入比例确定。"


@pytest.fixture
def app(built_instance, tmp_path):
    return make_app(built_instance, tmp_path, ADMIN_TOKEN=TOKEN, WECHAT_TOKEN=WECHAT_TOKEN, WECHAT_APP_ID=APP_ID)


@pytest.fixture
def admin(app):
    return app.test_client()


def ask(client, q, user=None, details=False):
    body = {"q": q, "details": details} | ({"user": user} if user else {})
    r = client.post("/api/ask", json=body)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def post(client, path, body, status=201):
    r = client.post(f"/admin/api/{path}", headers=AUTH, json=body)
    assert r.status_code == status, r.get_data(as_text=True)
    return r.get_json()


def test_curation_api_needs_the_admin_token(admin):
    assert admin.get("/admin/api/faq").status_code == 401
    assert admin.post("/admin/api/sensitive-words", json={"word": "x", "action": "block"}).status_code == 401
    assert admin.get("/admin/api/faq", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_official_answer_exact_and_close_before_retrieval(admin):
    faq_id = post(admin, "faq", {"question": DUES, "answer": DUES_ANSWER, "alternatives": ["党费标准是什么"],
                                 "source": "《中国共产党章程》第八条"})["id"]
    exact = ask(admin, "党员每个月要交多少党费")
    assert exact["source"] == "faq" and exact["official"] is True and exact["faq"]["how"] == "exact"
    assert DUES_ANSWER in exact["text"] and "官方答复" in exact["text"] and "《中国共产党章程》第八条" in exact["text"]
    assert ask(admin, "党费标准是什么？")["faq"]["id"] == faq_id  # an alternative phrasing
    close = ask(admin, "党员每个月交多少党费？")
    assert close["source"] == "faq" and close["faq"]["how"] == "close" and close["faq"]["cosine"] >= 0.96
    assert ask(admin, "党费怎么交？")["source"] == "search"  # same subject, another question: the documents
    assert ask(admin, "怎样防止干部带病提拔？")["source"] == "search"
    # edit and delete take effect at the next question
    r = admin.put(f"/admin/api/faq/{faq_id}", headers=AUTH, json={"question": DUES, "answer": "新的答复。"})
    assert r.status_code == 200 and "新的答复。" in ask(admin, DUES)["text"]
    assert admin.delete(f"/admin/api/faq/{faq_id}", headers=AUTH).status_code == 200
    assert ask(admin, DUES)["source"] == "search"
    assert admin.delete(f"/admin/api/faq/{faq_id}", headers=AUTH).status_code == 404


@pytest.mark.parametrize("body", [{}, {"question": "问"}, {"question": "问", "answer": 3},
                                  {"question": "问", "answer": "答", "alternatives": "不是列表"},
                                  {"question": "问", "answer": "答" * 2000}, []])
def test_bad_official_answers_are_refused_and_nothing_is_stored(admin, body):
    r = admin.post("/admin/api/faq", headers=AUTH, json=body)
    assert r.status_code in (400, 413) and r.get_json()["error"]
    assert admin.get("/admin/api/faq", headers=AUTH).get_json()["faqs"] == []


def test_order_sensitive_then_keyword_then_official_answer_then_search(admin):
    post(admin, "faq", {"question": DUES, "answer": DUES_ANSWER})
    keyword_id = post(admin, "keyword-replies", {"keyword": "党费", "match": "contains", "reply": "党费问题请联系支部。"})["id"]
    assert ask(admin, DUES)["source"] == "keyword"
    word_id = post(admin, "sensitive-words", {"word": "党费", "action": "block"})["id"]
    blocked = ask(admin, DUES)
    assert blocked["source"] == "blocked" and "不宜讨论" in blocked["text"] and blocked["passages"] == []
    admin.delete(f"/admin/api/sensitive-words/{word_id}", headers=AUTH)
    admin.delete(f"/admin/api/keyword-replies/{keyword_id}", headers=AUTH)
    assert ask(admin, DUES)["source"] == "faq"
    exact = post(admin, "keyword-replies", {"keyword": "值班电话", "match": "exact", "reply": "0570-1234567"})
    assert exact["id"] and ask(admin, "值班电话！")["text"] == "0570-1234567"
    assert ask(admin, "值班电话是多少，我想问党费")["source"] != "keyword"  # exact means the whole message


def test_masking_applies_to_every_reply_and_is_counted(admin):
    searched = ask(admin, "怎样防止干部带病提拔？", user="m1")
    assert "带病提拔" in searched["text"]
    word_id = post(admin, "sensitive-words", {"word": "带病提拔", "action": "mask"})["id"]
    post(admin, "keyword-replies", {"keyword": "口令", "match": "exact", "reply": "严防带病提拔。"})
    post(admin, "faq", {"question": "干部任用有什么要求", "answer": "杜绝带病提拔。"})
    for q in ("怎样防止干部带病提拔？", "口令", "干部任用有什么要求"):
        r = ask(admin, q, user="m1")
        assert "带病提拔" not in r["text"] and "＊＊＊＊" in r["text"], (q, r["text"])
    # the question itself is not blocked (mask only), and is searched in full
    assert ask(admin, "怎样防止干部带病提拔？", user="m1")["source"] == "search"
    words = admin.get("/admin/api/sensitive-words", headers=AUTH).get_json()["words"]
    assert [w["hits"] for w in words if w["id"] == word_id] == [4]
    # a stateless call masks too but writes nothing
    assert "＊" in ask(admin, "口令")["text"]
    words = admin.get("/admin/api/sensitive-words", headers=AUTH).get_json()["words"]
    assert [w["hits"] for w in words if w["id"] == word_id] == [4]


def test_sensitive_word_file_import(admin):
    data = "# 词表\n赌博 block\n博彩\n六合彩,mask\n".encode()
    r = admin.post("/admin/api/sensitive-words/import", headers=AUTH, content_type="multipart/form-data",
                   data={"file": (io.BytesIO(data), "words.txt"), "action": "block"})
    assert r.status_code == 201 and r.get_json()["imported"] == 3
    words = {w["word"]: w["action"] for w in admin.get("/admin/api/sensitive-words", headers=AUTH).get_json()["words"]}
    assert words == {"赌博": "block", "博彩": "block", "六合彩": "mask"}
    assert ask(admin, "博彩怎么玩")["source"] == "blocked"
    bad = admin.post("/admin/api/sensitive-words/import", headers=AUTH, content_type="multipart/form-data",
                     data={"file": (io.BytesIO("甲 乙 丙\n".encode()), "words.txt")})
    assert bad.status_code == 400 and "第 1 行" in bad.get_json()["error"]


def test_faq_import_export_round_trip_through_the_api(admin):
    csv_text = "问题,其他问法,答案,出处\n党费怎么交,交党费的方式｜党费如何缴纳,每月交纳。,党章\n值班电话,,0570-1234567,\n"
    r = admin.post("/admin/api/faq/import", headers=AUTH, content_type="multipart/form-data",
                   data={"file": (io.BytesIO(csv_text.encode("utf-8-sig")), "faq.csv")})
    assert r.status_code == 201 and r.get_json()["imported"] == 2
    assert ask(admin, "党费如何缴纳？")["source"] == "faq"
    xlsx = admin.get("/admin/api/faq/export.xlsx", headers=AUTH)
    assert xlsx.status_code == 200 and xlsx.data[:2] == b"PK"
    r = admin.post("/admin/api/faq/import", headers=AUTH, content_type="multipart/form-data",
                   data={"file": (io.BytesIO(xlsx.data), "faq.xlsx"), "replace": "1"})
    assert r.status_code == 201
    faqs = admin.get("/admin/api/faq", headers=AUTH).get_json()["faqs"]
    assert [(f["question"], f["alternatives"], f["answer"], f["source"]) for f in faqs] == [
        ("党费怎么交", ["交党费的方式", "党费如何缴纳"], "每月交纳。", "党章"), ("值班电话", [], "0570-1234567", "")]
    exported = admin.get("/admin/api/faq/export.csv", headers=AUTH).get_data(as_text=True)
    assert exported.lstrip("\ufeff").splitlines()[0] == "问题,其他问法,答案,出处"


def test_synonym_group_changes_ranking_and_decision_on_every_worker(app, built_instance, tmp_path):
    other = make_app(built_instance, tmp_path, ADMIN_TOKEN=TOKEN).test_client()  # a second worker, same database
    admin = app.test_client()
    doc_words = ask(other, "海燕归巢计划是做什么的？", details=True)
    before = ask(other, "小燕回家计划是做什么的？", details=True)
    assert "海燕归巢" not in before["decision"]["rewritten"]
    r = admin.put("/admin/api/synonyms", headers=AUTH, json={"groups": [["小燕回家", "海燕归巢"]]})
    assert r.status_code == 200
    assert admin.get("/admin/api/synonyms", headers=AUTH).get_json()["groups"] == [["小燕回家", "海燕归巢"]]
    after = ask(other, "小燕回家计划是做什么的？", details=True)
    assert after["decision"]["rewritten"] == doc_words["decision"]["rewritten"]
    assert after["decision"]["replaced"] == [["小燕回家", "海燕归巢"]]
    assert [p["text"] for p in after["passages"]] == [p["text"] for p in doc_words["passages"]]
    assert after["tier"] == doc_words["tier"] == "answer"
    assert after["decision"]["confidence"] == doc_words["decision"]["confidence"]
    assert admin.put("/admin/api/synonyms", headers=AUTH, json={"groups": [["独字"]]}).status_code == 400
    admin.put("/admin/api/synonyms", headers=AUTH, json={"groups": []})
    assert "海燕归巢" not in ask(other, "小燕回家计划是做什么的？", details=True)["decision"]["rewritten"]


class Events:
    """Events with distinct CreateTimes (WeChat dedupes events by sender + CreateTime)."""

    def __init__(self, app):
        self.wechat = WeChatClient(app.test_client())
        self.at = int(time.time()) - 100

    def event(self, event, **kw):
        self.at += 1
        return self.wechat.event(event, create_time=self.at, **kw)


def test_welcome_and_menu_replies_are_editable_and_masked(app, admin):
    wechat = Events(app)
    default = wechat.event("subscribe").content
    assert "感谢关注" in default
    r = admin.put("/admin/api/settings", headers=AUTH,
                  json={"welcome": "欢迎关注某某县委组织部！回复问题即可查询政策。", "menu": {"duty": "值班电话：0570-1234567"}})
    assert r.status_code == 200 and r.get_json()["menu"] == {"DUTY": "值班电话：0570-1234567"}
    assert admin.get("/admin/api/settings", headers=AUTH).get_json()["welcome"].startswith("欢迎关注某某县委组织部")
    assert wechat.event("subscribe").content == "欢迎关注某某县委组织部！回复问题即可查询政策。"
    assert wechat.event("CLICK", EventKey="DUTY").content == "值班电话：0570-1234567"
    assert "使用说明" in wechat.event("CLICK", EventKey="HELP").content  # built-in keys still answer
    post(admin, "sensitive-words", {"word": "县委组织部", "action": "mask"})
    assert "＊＊＊＊＊" in wechat.event("subscribe").content
    assert admin.put("/admin/api/settings", headers=AUTH, json={"menu": {"bad key!": "x"}}).status_code == 400


def test_feedback_goes_to_the_answer_just_before_it(app, admin):
    wechat = WeChatClient(app.test_client())
    post(admin, "faq", {"question": DUES, "answer": DUES_ANSWER})
    first = wechat.send_text("怎样防止干部带病提拔？", user="o_fb").content
    assert "回复“1”（有用）或“2”（没用）" in first
    official = wechat.send_text(DUES, user="o_fb").content
    assert DUES_ANSWER in official and "回复“1”" in official
    assert "感谢您的反馈" in wechat.send_text("1", user="o_fb").content  # about the official answer
    again = wechat.send_text("1", user="o_fb").content  # no answer pending: an ordinary question
    assert "感谢您的反馈" not in again
    wechat.send_text("怎样防止干部带病提拔？", user="o_fb")
    wechat.send_text("怎样防止干部带病提拔？", user="o_other")
    assert "感谢您的反馈" in wechat.send_text("没用", user="o_fb").content
    assert "感谢您的反馈" in wechat.send_text("2", user="o_other").content
    declined = wechat.send_text("红烧肉怎么做？", user="o_fb").content
    assert "回复“1”" not in declined  # no answer, no invitation
    assert "感谢您的反馈" not in wechat.send_text("有用", user="o_fb").content
    body = admin.get("/admin/api/feedback", headers=AUTH).get_json()
    entries = sorted(body["entries"], key=lambda e: e["id"])
    assert [(e["question"], e["source"], e["tier"], e["verdict"]) for e in entries] == [
        (DUES, "faq", "answer", "useful"),
        ("怎样防止干部带病提拔？", "search", "answer", "useless"),
        ("怎样防止干部带病提拔？", "search", "answer", "useless")]
    assert all(e["log_id"] for e in entries) and len({e["log_id"] for e in entries}) == 3
    assert body["counts"]["faqs"] == [{"faq_id": 1, "useful": 1, "useless": 0}]
    assert [(d["useful"], d["useless"]) for d in body["counts"]["documents"]] == [(0, 2)]


def test_unanswered_queue_groups_and_resolves(app, admin):
    for q, user in [("红烧肉怎么做？", "a"), ("红烧肉怎么做", "b"), ("红烧肉应该怎么做？", "c"), ("明天会下雨吗？", "a")]:
        assert ask(admin, q, user=user)["tier"] != "answer"
    ask(admin, "怎样防止干部带病提拔？", user="d")
    ask(admin, "没用", user="d")
    groups = admin.get("/admin/api/unanswered", headers=AUTH).get_json()["groups"]
    by_question = {g["question"]: g for g in groups}
    meat = by_question["红烧肉怎么做"]
    assert meat["count"] == 3 and meat["last_asked"] > 0
    assert sorted(q["question"] for q in meat["questions"]) == ["红烧肉应该怎么做？", "红烧肉怎么做"]
    assert by_question["怎样防止干部带病提拔？"]["questions"][0]["reasons"] == {"useless": 1}
    rain = by_question["明天会下雨吗？"]
    lines = admin.get(f"/admin/api/unanswered/{meat['id']}/export", headers=AUTH).get_data(as_text=True).splitlines()
    assert [json.loads(line)["q"] for line in lines] == [q["question"] for q in meat["questions"]]
    assert all(json.loads(line)["gold"] == [] and json.loads(line)["id"] for line in lines)
    made = post(admin, f"unanswered/{meat['id']}/faq", {"answer": "本平台只回答政策问题。"})
    assert ask(admin, "红烧肉应该怎么做")["source"] == "faq" and made["id"]
    assert admin.post(f"/admin/api/unanswered/{rain['id']}/dismiss", headers=AUTH).status_code == 200
    left = {g["question"] for g in admin.get("/admin/api/unanswered", headers=AUTH).get_json()["groups"]}
    assert left == {"怎样防止干部带病提拔？"}
    assert admin.post(f"/admin/api/unanswered/{rain['id']}/dismiss", headers=AUTH).status_code == 404


def test_every_change_is_audited_with_who(admin):
    faq_id = post(admin, "faq", {"question": DUES, "answer": DUES_ANSWER})["id"]
    post(admin, "sensitive-words", {"word": "赌博", "action": "block"})
    post(admin, "keyword-replies", {"keyword": "值班", "match": "contains", "reply": "电话"})
    admin.put("/admin/api/settings", headers=AUTH, json={"welcome": "欢迎"})
    admin.put("/admin/api/synonyms", headers=AUTH, json={"groups": [["村官", "村干部"]]})
    admin.delete(f"/admin/api/faq/{faq_id}", headers=AUTH)
    entries = admin.get("/admin/api/audit", headers=AUTH).get_json()["entries"]
    actions = [e["action"] for e in entries if e["who"] == "curator"]
    assert {"add_faq", "add_sensitive_word", "add_keyword_reply", "update_settings", "update_synonyms",
            "delete_faq"} <= set(actions)
    assert all(e["at"] > 0 for e in entries)


def test_ask_json_says_the_source(app, admin):
    post(admin, "faq", {"question": DUES, "answer": DUES_ANSWER})
    out = app.test_cli_runner().invoke(args=["ask", DUES, "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["source"] == "faq"


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                      max_size=4), max_leaves=12)
FIELDS = {"faq": ["question", "answer", "alternatives", "source"], "sensitive-words": ["word", "action"],
          "keyword-replies": ["keyword", "match", "reply"], "settings": ["welcome", "menu"], "synonyms": ["groups"]}


@given(data=st.data())
def test_hostile_curation_bodies_never_fail_and_refusals_write_nothing(app, data):
    client = app.test_client()
    curation = app.extensions["curation"]
    endpoint = data.draw(st.sampled_from(sorted(FIELDS)))
    fields = st.sampled_from(FIELDS[endpoint]) | st.text(max_size=8)
    body = data.draw(st.dictionaries(fields, json_values, max_size=4) | json_values)
    before = curation.store.version()
    method = client.put if endpoint in ("settings", "synonyms") else client.post
    r = method(f"/admin/api/{endpoint}", headers=AUTH, json=body)
    assert r.status_code < 500, r.get_data(as_text=True)
    assert r.is_json and (r.status_code < 300 or r.get_json()["error"])
    if r.status_code >= 400:
        assert curation.store.version() == before
