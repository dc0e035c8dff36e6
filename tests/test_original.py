"""查看原文: the link that ends every answer, the page it opens (also on a phone in a real Chromium),
signed tokens, the 2048-byte limit, and links that outlive a re-index."""

import re
from pathlib import Path

import pytest

from bot.answer import Answerer
from index.ingest import load_file
from tests.conftest import ROOT, SPEECH, make_app, served
from tests.wechat_client import TOKEN as WECHAT_TOKEN
from tests.wechat_client import WeChatClient

BASE = "https://bot.example.org"
QUESTION = "海燕归巢计划是做什么的？"
URL = re.compile(r'https?://[^\s"<>]+')
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def linked_app(built_instance, tmp_path):
    return make_app(built_instance, tmp_path, PUBLIC_BASE_URL=BASE, WECHAT_TOKEN=WECHAT_TOKEN)


def ask(app, question=QUESTION):
    with app.app_context():
        return app.extensions["engine"].answerer.answer(question)


def path_of(link: str) -> str:
    return link.removeprefix(BASE).split("#", 1)[0]


def test_an_answer_ends_with_its_link_and_the_page_shows_the_passage(linked_app):
    answer = ask(linked_app)
    assert answer.kind == "answer" and answer.link and answer.link.startswith(f"{BASE}/o/")
    assert answer.text.endswith(f'<a href="{answer.link}">查看原文</a>')
    assert URL.findall(answer.text)[-1] == answer.link  # the link is the reply's last URL
    assert answer.link.endswith("#quote") and len(answer.link) < 110  # short: the reply's bytes are few
    assert "quzhou" not in answer.link and "#0" not in answer.link  # no document id or chunk position

    page = linked_app.test_client().get(path_of(answer.link))
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in body
    assert "<script" not in body
    passage = answer.passages[0]
    assert f"<h1 id=\"title\">{passage.title}</h1>" in body
    assert "2018年" in body and "现行有效" in body  # the speech's date and status
    marked = re.search(r'<mark id="quote">(.*?)</mark>', body, re.S)
    assert marked and marked.group(1).strip()[:30] in passage.text
    section = re.search(r'<div class="section" id="section">(.*?)</div>', body, re.S).group(1)
    assert len(re.sub(r"<[^>]+>", "", section)) > len(marked.group(1))  # the whole section, not the quote only
    assert passage.section.split(" › ")[-1] in body  # the section path


def test_the_webhook_reply_carries_the_link_and_the_api_gives_it(linked_app):
    reply = WeChatClient(linked_app.test_client()).send_text(QUESTION).content
    # the link is the reply's last URL (the feedback invitation may follow it, as plain text)
    links = re.findall(r'<a href="(https?://[^"]+)">([^<]+)</a>', reply)
    assert links and re.fullmatch(r"https://bot\.example\.org/o/[^\"]+#quote", links[-1][0]) and links[-1][1] == "查看原文"
    assert re.findall(r"https?://[^\s\"<>]+", reply)[-1] == links[-1][0]
    assert len(reply.encode("utf-8")) <= 2048
    body = linked_app.test_client().post("/api/ask", json={"q": QUESTION}).get_json()
    assert body["link"] and body["text"].endswith(f'<a href="{body["link"]}">查看原文</a>')
    declined = linked_app.test_client().post("/api/ask", json={"q": "红烧肉怎么做？"}).get_json()
    assert declined["link"] is None and "查看原文" not in declined["text"]


def test_no_base_url_no_link(app):
    answer = ask(app)
    assert answer.kind == "answer" and answer.link is None and "<a href" not in answer.text


def test_forged_and_altered_tokens_are_refused(linked_app):
    client = linked_app.test_client()
    path = path_of(ask(linked_app).link)
    token = path.rsplit("/", 1)[1]
    prefix, start, end, signature = token.split(".")
    altered = f"{prefix}.{start}.{int(end, 36) + 50:x}.{signature}"  # another span, the same signature
    for bad in [altered, f"{prefix}.{start}.{end}.{'A' * len(signature)}", "x", "0" * 16 + ".0.1.abcdefghijk"]:
        r = client.get(f"/o/{bad}")
        assert r.status_code == 404 and "没有找到这段原文" in r.get_data(as_text=True)


def test_a_token_signed_with_another_secret_is_refused(linked_app, built_instance, tmp_path):
    path = path_of(ask(linked_app).link)
    stranger = make_app(built_instance, tmp_path / "other", PUBLIC_BASE_URL=BASE, SECRET_KEY="someone else")
    assert stranger.test_client().get(path).status_code == 404
    assert linked_app.test_client().get(path).status_code == 200


def test_the_link_outlives_a_re_index_that_drops_its_version(linked_app, tmp_path):
    """The link names the text by content and offsets: after the document changes and every version that
    quoted it is pruned, it still opens the quoted text, with a note that the file has changed since."""
    old = ask(linked_app)
    engine = linked_app.extensions["engine"]
    quoted = old.passages[0].text[:20]
    changed = tmp_path / SPEECH.name
    changed.write_text("在全市组织部长会议上的讲话摘要\n\n一、新的开头\n\n这是修改后的版本，删去了原来的内容。", encoding="utf-8")
    old_version = engine.store.current()
    engine.store.keep = 1
    with linked_app.app_context():  # pruning keeps the version before the serving one: build twice
        engine.build([load_file(changed)])
        engine.build([load_file(changed)])
    assert old_version not in engine.store.versions()
    page = linked_app.test_client().get(path_of(old.link)).get_data(as_text=True)
    assert quoted in page and 'id="superseded"' in page
    new = ask(linked_app, "新的开头是什么？")
    if new.link:  # the new version's links open the new text
        assert "修改后的版本" in linked_app.test_client().get(path_of(new.link)).get_data(as_text=True)


def test_the_reply_stays_within_2048_bytes_by_cutting_the_quote_not_the_link(linked_app):
    engine = linked_app.extensions["engine"]
    with linked_app.app_context():
        full = engine.answerer.answer(QUESTION)
        settings = engine.answerer.settings
        tight = Answerer(engine.current_index, type(settings)(**{**settings.__dict__, "max_bytes": 700}))
        short = tight.answer(QUESTION, lead="（您的语音识别为：“" + "很长的一段话" * 5 + "”）\n\n")
        long_lead = engine.answerer.answer(QUESTION, lead="很" * 300)
    assert len(short.text.encode("utf-8")) <= 700 and short.text.endswith(f'<a href="{short.link}">查看原文</a>')
    assert "……" in short.text  # the quote was cut
    assert len(long_lead.text.encode("utf-8")) <= 2048 and long_lead.text.endswith("查看原文</a>")
    assert len(full.text.encode("utf-8")) <= 2048


# ------------------------------------------------------------------------------ browser


@pytest.fixture
def live(linked_app):
    with served(linked_app) as url:
        yield url


def deepest_chunk(index):
    """The passage that starts furthest into its section (the page must scroll to reach it)."""
    first: dict = {}
    for chunk in index.chunks:
        first.setdefault((chunk.doc_id, chunk.section), chunk.start)
    return max(index.chunks, key=lambda c: c.start - first[(c.doc_id, c.section)])


def test_the_page_on_a_phone_without_javascript(linked_app, live):
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium fonts-noto-cjk (.ci/run does this)")
    ARTIFACTS.mkdir(exist_ok=True)
    answer = ask(linked_app, "怎样防止干部带病提拔？")
    assert answer.link
    engine = linked_app.extensions["engine"]
    with linked_app.app_context():
        index = engine.current_index()
    deep = deepest_chunk(index)
    documents = {d["doc_id"]: d for d in index.manifest["documents"]}
    deep_link = engine.links.url(deep, documents[deep.doc_id])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-quic"])
        context = browser.new_context(viewport={"width": 360, "height": 740}, device_scale_factor=2,
                                      is_mobile=True, has_touch=True, java_script_enabled=False, locale="zh-CN",
                                      user_agent="Mozilla/5.0 (Linux; Android 13) MicroMessenger/8.0.47")
        page = context.new_page()
        page.goto(live + answer.link.removeprefix(BASE))
        box = page.locator("mark#quote").bounding_box()
        assert box is not None and 0 <= box["y"] < 740
        assert page.locator("main").bounding_box()["width"] <= 360  # no sideways scrolling at 360 px
        assert page.inner_text("#title") == answer.passages[0].title
        assert page.inner_text("#status") == "现行有效" and page.inner_text("#date") == "2018年2月6日"
        assert page.locator("#section-path").inner_text().strip()
        page.screenshot(path=str(ARTIFACTS / "original-phone.png"))

        # a passage deep in a long section: the #quote fragment scrolls to it, no script needed
        page.goto(live + deep_link.removeprefix(BASE))
        box = page.locator("mark#quote").bounding_box()
        assert box is not None and 0 <= box["y"] < 740
        assert page.locator("#title").bounding_box()["y"] < 0  # the page did scroll
        assert page.locator("mark#quote").inner_text().strip()[:20] in deep.text
        page.screenshot(path=str(ARTIFACTS / "original-phone-scrolled.png"))
        browser.close()
    assert (ARTIFACTS / "original-phone.png").stat().st_size > 10_000
