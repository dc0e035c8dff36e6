import json


def test_ask_returns_the_answer_json(client):
    r = client.post("/api/ask", data=json.dumps({"q": "怎样防止干部带病提拔？", "k": 3}),
                    content_type="application/json")
    assert r.status_code == 200
    body = r.get_json()
    assert set(body) == {"question", "abstained", "tier", "text", "passages", "elapsed_ms", "source", "link"}
    assert body["source"] == "search"
    assert body["tier"] in ("answer", "related") and len(body["passages"]) == 3
    assert set(body["passages"][0]) >= {"doc", "title", "section", "text", "score", "date", "status"}
    assert "带病提拔" in body["passages"][0]["text"]


def test_ask_accepts_a_body_without_content_type(client):
    r = client.post("/api/ask", data='{"q": "村情通是什么？"}')
    assert r.status_code == 200 and r.get_json()["abstained"] is False


def test_details_expose_the_decision(client):
    body = client.post("/api/ask", json={"q": "推荐一部好看的电影", "details": True}).get_json()
    assert body["abstained"] is True
    decision = body["decision"]
    assert body["tier"] == decision["tier"] == "decline" and decision["scope"] < decision["related_threshold"]
    assert {"embed", "search", "rank", "tokenize"} <= set(body["timings_ms"])
    assert body["index_version"]


def test_bad_requests_get_a_clear_400(client):
    for payload in ["not json", "[]", '{"question": "x"}', '{"q": 5}']:
        r = client.post("/api/ask", data=payload, content_type="application/json")
        assert r.status_code == 400 and "error" in r.get_json()
    for k in [0, 21, "5", True]:
        r = client.post("/api/ask", json={"q": "问题", "k": k})
        assert r.status_code == 400


def test_healthz_reports_model_and_index(client, app):
    body = client.get("/healthz").get_json()
    assert body["ok"] is True and body["model_loaded"] and body["index_loaded"]
    assert body["index_version"] == app.extensions["engine"].store.current()


def test_ask_without_an_index_is_503(tmp_path, models_dir):
    from server import create_app

    (tmp_path / "models").symlink_to(models_dir, target_is_directory=True)
    app = create_app({"INSTANCE_PATH": str(tmp_path), "TESTING": True})
    client = app.test_client()
    r = client.post("/api/ask", json={"q": "问题"})
    assert r.status_code == 503 and "索引" in r.get_json()["error"]
    assert client.get("/healthz").status_code == 503


def test_a_user_makes_the_api_stateful(client):
    """With a ``user``, 更多 continues that user's last question, as on WeChat; without one it has none."""
    first = client.post("/api/ask", json={"q": "怎样防止干部带病提拔？", "user": "tester"}).get_json()
    more = client.post("/api/ask", json={"q": "更多", "user": "tester"}).get_json()
    assert first["source"] == "search" and more["source"] == "more"
    assert more["question"] == "怎样防止干部带病提拔？"
    anonymous = client.post("/api/ask", json={"q": "更多"}).get_json()
    assert anonymous["source"] == "more" and anonymous["passages"] == [] and anonymous["question"] == ""
    for bad in (5, "", "x" * 200):
        assert client.post("/api/ask", json={"q": "党费", "user": bad}).status_code == 400
