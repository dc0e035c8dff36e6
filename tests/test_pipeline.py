"""The reply pipeline: responders in order, the first that answers wins, finishers see every reply."""

import threading
import time

from bot.pipeline import Message, Reply


def test_search_answers_and_more_continues(app):
    pipeline = app.extensions["pipeline"]
    with app.app_context():
        first = pipeline.reply(Message(text="怎样防止干部带病提拔？", user="u1", channel="console"))
        more = pipeline.reply(Message(text="更多", user="u1", channel="console"))
        nobody = pipeline.reply(Message(text="更多", user="u2", channel="console"))
    assert first.source == "search" and first.answer is not None and "带病提拔" in first.text
    assert more.source == "more" and more.question == "怎样防止干部带病提拔？"
    assert nobody.source == "more" and nobody.answer is None


def test_a_responder_inserted_before_search_wins_and_finishers_see_it(app):
    pipeline = app.extensions["pipeline"]
    seen: list[str] = []

    def fixed(message, _pipeline):
        return Reply("固定回复", "keyword") if message.text == "值班电话" else None

    def finish(reply, _pipeline):
        seen.append(reply.source)
        return reply

    pipeline.insert_before("search", "keyword", fixed)
    pipeline.finishers.append(("watch", finish))
    assert [name for name, _ in pipeline.responders] == ["sensitive", "feedback", "keyword", "faq", "more",
                                                         "keyword", "search"]
    with app.app_context():
        fixed_reply = pipeline.reply(Message(text="值班电话", user="u1"))
        searched = pipeline.reply(Message(text="村情通是什么？", user="u1"))
    assert fixed_reply.text == "固定回复" and fixed_reply.to_json()["source"] == "keyword"
    assert searched.source == "search"
    assert seen == ["keyword", "search"]


def test_the_order_is_one_list(app):
    pipeline = app.extensions["pipeline"]
    assert [name for name, _ in pipeline.responders] == ["sensitive", "feedback", "keyword", "faq", "more", "search"]
    assert [name for name, _ in pipeline.finishers] == ["feedback_footer", "remember_answer", "mask"]


def test_still_more_continues_and_a_follow_up_without_a_question_asks_for_one(app):
    pipeline = app.extensions["pipeline"]
    with app.app_context():
        first = pipeline.reply(Message(text="怎样防止干部带病提拔？", user="u3", channel="console"))
        again = pipeline.reply(Message(text="还有呢？", user="u3", channel="console"))
        lone = pipeline.reply(Message(text="那考核呢？", channel="api", logged=False))
        plain = pipeline.reply(Message(text="海燕归巢计划是做什么的？", user="u3", channel="console"))
    assert first.source == "search"
    assert again.source == "more" and again.question == "怎样防止干部带病提拔？"
    assert again.extra["understood"] == "怎样防止干部带病提拔？"
    assert lone.source == "followup" and "关于考核有哪些规定？" in lone.text and lone.answer is None
    assert plain.source == "search" and "understood" not in plain.extra  # a whole question stays as it is


def test_a_message_past_its_deadline_is_told_to_send_more_and_keeps_the_answer(app):
    pipeline = app.extensions["pipeline"]
    release = threading.Event()
    original = pipeline.answerer.answer

    def held(*args, **kwargs):
        release.wait(30)
        return original(*args, **kwargs)

    pipeline.answerer.answer = held
    with app.app_context():
        late = pipeline.reply(Message(text="海燕归巢计划是做什么的？", user="u_late", deadline=time.monotonic() - 1))
        assert pipeline.time_left(Message(text="x", deadline=time.monotonic() - 1)) == 0.0
        assert pipeline.time_left(Message(text="x")) == pipeline.settings.reply_budget
        assert "请稍等几秒后发送“更多”" in late.text and late.answer is None
        release.set()
        deadline = time.monotonic() + 30
        while "late" not in pipeline.store.get_state("u_late", 3600) and time.monotonic() < deadline:
            time.sleep(0.05)
        more = pipeline.reply(Message(text="更多", user="u_late"))
    assert "海燕归巢" in more.text and more.source == "more"


def test_answers_are_searched_with_the_serving_thread_limit(app):
    """OpenMP keeps its thread count per thread: the pool thread that answers must be held to
    SERVE_THREADS as the worker's own thread is, or FAISS's extra OpenMP thread spins between questions."""
    import faiss

    pipeline = app.extensions["pipeline"]
    seen: list[int] = []
    original = pipeline.answerer.answer

    def watched(*args, **kwargs):
        seen.append(faiss.omp_get_max_threads())
        return original(*args, **kwargs)

    pipeline.answerer.answer = watched
    with app.app_context():
        pipeline.reply(Message(text="海燕归巢计划是做什么的？", user="u_threads"))
    assert app.config["SERVE_THREADS"] == 1 and seen == [1]  # a thread that set nothing: one a core
