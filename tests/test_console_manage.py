"""The console's 管理 area in a real Chromium: every curation tab, and its effect on the chat pane."""
# ruff: noqa: F811  (the console fixtures are imported from test_console and used by name)

from tests.test_console import ADMIN_TOKEN, CONSOLE_TOKEN, console_app, live_console, page, shot, sign_in  # noqa: F401


def send(page, question):
    page.goto(page.url.split("/console")[0] + "/console/")
    page.fill("#question", question)
    page.click("#send")
    return page.locator(".msg.bot .bubble").last.inner_text()


def manage(page, tab):
    page.goto(page.url.split("/console")[0] + f"/console/manage/{tab}")


def test_read_only_token_has_no_manage_area(console_app):
    qa = console_app.test_client()
    sign_in(qa, CONSOLE_TOKEN)
    assert qa.get("/console/manage/").status_code == 403
    assert "nav-manage" not in qa.get("/console/").get_data(as_text=True)


def test_manage_area_in_a_real_browser(live_console, page):
    page.goto(f"{live_console}/console/")
    page.fill("input[name=token]", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.click("#nav-manage")
    assert "还没有问答对" in page.inner_text("#faqs")

    # an official answer, then the chat pane gets it
    page.fill("#faq-question", "党员每个月要交多少党费？")
    page.fill("#faq-alternatives", "党费标准是什么")
    page.fill("#faq-answer", "按照党章规定，党员每月交纳党费，标准按收入比例确定。")
    page.fill("#faq-source", "《中国共产党章程》第八条")
    page.click("#faq-save")
    assert "已保存" in page.inner_text("#manage-saved")
    assert "党费标准是什么" in page.inner_text("#faqs")
    shot(page, "manage-faq")
    bubble = send(page, "党费标准是什么？")
    assert "官方答复" in bubble and "《中国共产党章程》第八条" in bubble

    # a refused form says why and stores nothing
    manage(page, "faq")
    page.fill("#faq-question", "只有问题")
    page.fill("#faq-answer", " ")
    page.click("#faq-save")
    assert "答案" in page.inner_text("#manage-error") and "只有问题" not in page.inner_text("#faqs")

    # a masked word: shown as ＊ in the reply
    manage(page, "words")
    page.fill("#word-input", "带病提拔")
    page.select_option("#word-action", "mask")
    page.click("#word-save")
    bubble = send(page, "怎样防止干部带病提拔？")
    assert "带病提拔" not in bubble and "＊＊＊＊" in bubble
    manage(page, "words")
    assert "带病提拔" in page.inner_text("#words")
    shot(page, "manage-words")

    # a synonym group: the member's word is answered as the documents' word
    manage(page, "synonyms")
    page.fill("#synonym-groups", "小燕回家 海燕归巢\n")
    page.click("#synonyms-save")
    assert page.input_value("#synonym-groups").strip() == "小燕回家 海燕归巢"
    shot(page, "manage-synonyms")
    assert "海燕归巢" in send(page, "小燕回家计划是做什么的？")

    # keyword reply and welcome
    manage(page, "keywords")
    page.fill("#keyword-input", "值班电话")
    page.fill("#keyword-reply", "组织部值班电话：0570-1234567")
    page.click("#keyword-save")
    page.fill("#welcome", "欢迎关注！直接发送问题即可查询政策文件。")
    page.fill("#menu", "DUTY=值班电话：0570-1234567")
    page.click("#settings-save")
    assert page.input_value("#welcome") == "欢迎关注！直接发送问题即可查询政策文件。"
    shot(page, "manage-keywords")
    assert send(page, "值班电话") == "组织部值班电话：0570-1234567"

    # feedback right after an answer
    send(page, "怎样防止干部带病提拔？")
    assert "感谢您的反馈" in send(page, "2")
    manage(page, "feedback")
    assert "没用" in page.inner_text("#feedback")
    shot(page, "manage-feedback")

    # the unanswered queue: a group becomes an official answer in one step
    for q in ("红烧肉怎么做？", "红烧肉应该怎么做？", "明天会下雨吗？"):
        send(page, q)
    manage(page, "unanswered")
    shot(page, "manage-unanswered")
    group = page.locator(".group", has_text="红烧肉").first
    assert "共 2 次" in group.inner_text()
    group.locator(".group-answer").fill("本平台只回答政策文件方面的问题，生活问题请咨询其他渠道。")
    group.locator(".group-faq").click()
    assert "红烧肉" not in page.inner_text("main")
    assert "官方答复" in send(page, "红烧肉怎么做")
    manage(page, "unanswered")
    page.locator(".group", has_text="明天会下雨").first.locator(".group-dismiss").click()
    assert "明天会下雨" not in page.inner_text("main")
