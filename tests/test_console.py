"""The QA console: auth with the test client, and the pages in a real Chromium (Playwright)."""

import json
import os
from pathlib import Path

import pytest

from bot.evaluate import evaluate, load_questions
from tests.conftest import ROOT, SHARED, make_app, served
from tests.wechat_client import TOKEN as WECHAT_TOKEN
from tests.wechat_client import WeChatClient

CONSOLE_TOKEN, ADMIN_TOKEN = "qa-secret", "admin-secret"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def console_app(built_instance, tmp_path):
    return make_app(built_instance, tmp_path, CONSOLE_TOKEN=CONSOLE_TOKEN, ADMIN_TOKEN=ADMIN_TOKEN,
                    WECHAT_TOKEN=WECHAT_TOKEN)


def sign_in(client, token):
    client.get("/console/login")
    with client.session_transaction() as s:
        csrf = s["csrf"]
    response = client.post("/console/login", data={"token": token, "csrf": csrf})
    client.get("/console/")  # a page after sign-in carries the session's new CSRF token
    with client.session_transaction() as s:
        csrf = s.get("csrf", csrf)
    return response, csrf


def test_console_is_off_without_tokens(built_instance, tmp_path):
    r = make_app(built_instance, tmp_path).test_client().get("/console/")
    assert r.status_code == 403 and "FLASK_CONSOLE_TOKEN" in r.get_data(as_text=True)


def test_sign_in_requires_the_right_token(console_app):
    client = console_app.test_client()
    assert client.get("/console/").status_code == 302  # to the sign-in page
    r, _ = sign_in(client, "wrong")
    assert r.status_code == 401 and "令牌不正确" in r.get_data(as_text=True)
    r, _ = sign_in(client, CONSOLE_TOKEN)
    assert r.status_code == 302 and client.get("/console/").status_code == 200


def test_forms_need_the_csrf_token(console_app):
    client = console_app.test_client()
    sign_in(client, CONSOLE_TOKEN)
    assert client.post("/console/", data={"q": "你好"}).status_code == 400
    assert client.post("/console/", data={"q": "你好", "csrf": "forged"}).status_code == 400


def test_read_only_token_cannot_reach_admin_actions(console_app):
    qa = console_app.test_client()
    _, csrf = sign_in(qa, CONSOLE_TOKEN)
    assert qa.post("/console/reindex", data={"csrf": csrf}).status_code == 403
    assert "重新建立索引" not in qa.get("/console/documents").get_data(as_text=True)
    assert qa.get("/admin/api/documents", headers={"Authorization": f"Bearer {CONSOLE_TOKEN}"}).status_code == 401
    admin = console_app.test_client()
    _, csrf = sign_in(admin, ADMIN_TOKEN)
    assert "重新建立索引" in admin.get("/console/documents").get_data(as_text=True)


def test_sign_out(console_app):
    client = console_app.test_client()
    _, csrf = sign_in(client, CONSOLE_TOKEN)
    client.post("/console/logout", data={"csrf": csrf})
    assert client.get("/console/").status_code == 302


def test_console_reply_is_byte_identical_to_the_webhook(console_app):
    client = console_app.test_client()
    _, csrf = sign_in(client, CONSOLE_TOKEN)
    for question in ["海燕归巢计划是做什么的？", "红烧肉怎么做？", "帮助", "基层党建的“一二三四”组合拳指什么？"]:
        client.post("/console/", data={"q": question, "csrf": csrf})
        with client.session_transaction() as s:
            console_reply = s["chat"][-1]["text"]
        wechat = WeChatClient(console_app.test_client()).send_text(question).content
        assert console_reply.encode("utf-8") == wechat.encode("utf-8")


# ------------------------------------------------------------------------------ browser


@pytest.fixture
def live_console(console_app):
    with served(console_app) as url:
        yield url


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium fonts-noto-cjk (.ci/run does this)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
        yield page
        browser.close()


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def test_console_pages_in_a_real_browser(live_console, page, console_app):
    page.goto(f"{live_console}/console/")
    page.fill("input[name=token]", "wrong")
    page.click("button[type=submit]")
    assert "令牌不正确" in page.inner_text("#login-error")
    page.fill("input[name=token]", CONSOLE_TOKEN)
    page.click("button[type=submit]")
    shot(page, "login-done")

    # an answerable question: the chat pane shows the WeChat reply, the inspector why
    page.fill("#question", "海燕归巢计划是做什么的？")
    page.click("#send")
    bubble = page.locator(".msg.bot .bubble").last.inner_text()
    expected = WeChatClient(console_app.test_client()).send_text("海燕归巢计划是做什么的？").content
    assert bubble == expected
    assert page.inner_text("#verdict") == "作答"
    assert "海燕归巢" in page.locator("#passages tr").nth(1).inner_text()
    assert page.locator("#decision").is_visible()
    shot(page, "ask-answered")

    # an unanswerable one
    page.fill("#question", "红烧肉怎么做？")
    page.click("#send")
    assert "没有找到" in page.locator(".msg.bot .bubble").last.inner_text()
    assert "不作答" in page.inner_text("#verdict")
    shot(page, "ask-declined")

    # a how-to question whose action no passage has: the inspector says so
    page.fill("#question", "海燕归巢计划怎么申报？")
    page.click("#send")
    assert page.inner_text("#action") == "申报（段落中没有）"
    # a member's word: the inspector shows how the question was read
    page.fill("#question", "村官是怎么选出来的")
    page.click("#send")
    assert "村官 → 村民委员会成员" in page.inner_text("#rewritten")

    # the dev set as a batch: the page's metrics equal `flask eval`
    page.click("text=批量评测")
    page.set_input_files("#set-file", str(SHARED / "eval" / "dev.jsonl"))
    page.click("#run-batch")
    page.wait_for_selector("#metrics-1", timeout=120_000)
    shown = {el.get_attribute("data-metric"): el.locator("b").inner_text()
             for el in page.locator("#metrics-1 .metric[data-metric]").all()}
    with console_app.app_context():
        expected_metrics, _ = evaluate(console_app.extensions["engine"].answerer,
                                       load_questions(SHARED / "eval" / "dev.jsonl"))
    for key in ("R@1", "R@3", "R@5", "MRR", "false_abstentions", "abstention_rate",
                "right", "useful", "wrong", "declined", "shown", "everyday_declined"):
        assert shown[key] == str(expected_metrics[key]), (key, shown[key], expected_metrics[key])
    assert shown["hard_not_answered"] == "—"  # the dev set marks no question hard
    runner = console_app.test_cli_runner()
    printed = runner.invoke(args=["eval", str(SHARED / "eval" / "dev.jsonl")]).output
    assert f"R@1                {shown['R@1']}" in printed
    shot(page, "batch")
    all_rows = page.locator("#rows tr").count()
    page.click("#toggle-failures")
    failed = sum(1 for r in page.locator("#rows tr").all()[1:] if "bad" in (r.get_attribute("class") or ""))
    assert page.locator("#rows tr").count() == 1 + failed < all_rows

    # log and documents
    page.click("text=日志")
    assert "红烧肉怎么做？" in page.inner_text("#log")
    shot(page, "log")
    page.click("text=文档")
    page.click("text=在全市组织部长会议上的讲话摘要")
    chunks = page.locator("#chunks tr")
    assert chunks.count() > 10 and "海燕归巢" in page.inner_text("#chunks")
    shot(page, "document")
    assert os.path.getsize(ARTIFACTS / "console-document.png") > 10_000


def test_batch_compare_download_and_log_export(console_app, tmp_path):
    client = console_app.test_client()
    _, csrf = sign_in(client, ADMIN_TOKEN)
    engine = console_app.extensions["engine"]
    old = engine.store.current()
    from index.ingest import load_file
    from tests.conftest import SPEECH

    news = SHARED / "docs" / "news_xwlb_2023-10-15_cadre_education_training_regulation.txt"
    engine.build([load_file(SPEECH), load_file(news)])
    qs = tmp_path / "set.jsonl"
    qs.write_text('{"id": "a", "q": "干部教育培训工作条例是什么时候印发的？", "gold": ["干部教育培训工作条例"]}\n'
                  '{"id": "b", "q": "海燕归巢计划是做什么的？", "gold": ["“海燕归巢”计划"]}\n', encoding="utf-8")
    with open(qs, "rb") as fh:
        r = client.post("/console/batch", data={"csrf": csrf, "file": (fh, "set.jsonl"), "compare": old},
                        content_type="multipart/form-data")
    assert r.status_code == 302
    batch_url = r.headers["Location"]
    batch_id = int(batch_url.rstrip("/").rsplit("/", 1)[1])
    import time as _time

    deadline = _time.monotonic() + 60
    while engine.bot_store.get_batch(batch_id)["state"] == "running" and _time.monotonic() < deadline:
        _time.sleep(0.2)
    page = client.get(batch_url).get_data(as_text=True)
    assert "版本对比" in page and "变好" in page  # question a is answered only by the new version
    csv_body = client.get(f"/console/batch/{batch_id}/download.csv").get_data(as_text=True)
    assert csv_body.lstrip("\ufeff").startswith("id,question,answerable,rank,tier,") and "海燕归巢" in csv_body
    jsonl = client.get(f"/console/batch/{batch_id}/download.jsonl").get_data(as_text=True)
    assert len(jsonl.strip().splitlines()) == 2
    # a broken set is refused with its line number
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n", encoding="utf-8")
    with open(bad, "rb") as fh:
        r = client.post("/console/batch", data={"csrf": csrf, "file": (fh, "bad.jsonl")},
                        content_type="multipart/form-data")
    assert r.status_code == 400 and "bad.jsonl:1" in r.get_data(as_text=True)

    client.post("/console/", data={"q": "红烧肉怎么做？", "csrf": csrf})
    log_page = client.get("/console/log?abstained=1").get_data(as_text=True)
    assert "红烧肉怎么做？" in log_page
    entry = engine.bot_store.recent_queries(limit=1, abstained_only=True)[0]
    exported = client.post("/console/log", data={"csrf": csrf, "id": str(entry.id)}).get_data(as_text=True)
    assert json.loads(exported) == {"id": f"log-{entry.id}", "q": "红烧肉怎么做？", "gold": []}


def test_admins_edit_a_documents_metadata_on_its_page(console_app):
    doc_id = "quzhou-2018-organization-ministers-speech"
    qa = console_app.test_client()
    _, csrf = sign_in(qa, CONSOLE_TOKEN)
    page = qa.get(f"/console/documents/{doc_id}").get_data(as_text=True)
    assert "发文机关" in page and "现行有效" in page and 'id="meta-form"' not in page
    assert qa.post(f"/console/documents/{doc_id}/meta", data={"csrf": csrf, "status": "已废止"}).status_code == 403
    admin = console_app.test_client()
    _, csrf = sign_in(admin, ADMIN_TOKEN)
    assert 'id="meta-form"' in admin.get(f"/console/documents/{doc_id}").get_data(as_text=True)
    r = admin.post(f"/console/documents/{doc_id}/meta", data={"csrf": csrf, "status": "已废止", "number": "衢组〔2018〕1号"})
    assert r.status_code == 302
    page = admin.get(r.headers["Location"]).get_data(as_text=True)
    assert "已废止" in page and "衢组〔2018〕1号" in page and "已保存" in page
    r = admin.post(f"/console/documents/{doc_id}/meta", data={"csrf": csrf, "date": "二〇一八年"})
    assert r.status_code == 400 and "YYYY-MM-DD" in r.get_data(as_text=True)
    assert admin.post("/console/documents/nope/meta", data={"csrf": csrf, "status": "已废止"}).status_code == 404
