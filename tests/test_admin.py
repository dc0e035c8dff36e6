"""The admin API: auth, documents, re-index jobs (real child processes), versions and rollback."""

import os
import signal
import time

import pytest
from sqlalchemy import text

from tests.conftest import SHARED, make_app

TOKEN = "admin-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Admin-User": "tester"}
NEWS = SHARED / "docs" / "news_xwlb_2023-10-15_cadre_education_training_regulation.txt"


@pytest.fixture
def admin_app(built_instance, tmp_path):
    return make_app(built_instance, tmp_path, ADMIN_TOKEN=TOKEN, CORPUS_DIR=str(tmp_path / "no-corpus"))


@pytest.fixture
def admin(admin_app):
    return admin_app.test_client()


def upload(client, path, **form):
    with open(path, "rb") as fh:
        return client.post("/admin/api/documents", headers=AUTH, data={"file": (fh, path.name), **form},
                           content_type="multipart/form-data")


def wait_job(client, job_id, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/admin/api/jobs/{job_id}", headers=AUTH).get_json()
        if state["state"] in ("done", "failed"):
            return state
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {state}")


def test_admin_api_is_off_without_a_token(built_instance, tmp_path):
    client = make_app(built_instance, tmp_path).test_client()
    r = client.get("/admin/api/documents", headers=AUTH)
    assert r.status_code == 403 and "FLASK_ADMIN_TOKEN" in r.get_json()["error"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                                     {"Authorization": "Basic YWRtaW46YWRtaW4="}])
def test_missing_or_wrong_token_is_401(admin, headers):
    assert admin.get("/admin/api/documents", headers=headers).status_code == 401
    assert admin.post("/admin/api/reindex", headers=headers).status_code == 401
    assert admin.delete("/admin/api/documents/x", headers=headers).status_code == 401


def test_documents_list_add_refuse_remove(admin, admin_app, tmp_path):
    listed = admin.get("/admin/api/documents", headers=AUTH).get_json()["documents"]
    assert [d["doc_id"] for d in listed] == ["quzhou-2018-organization-ministers-speech"]  # seeded from corpus
    r = upload(admin, NEWS)
    assert r.status_code == 201 and r.get_json()["document"]["title"] == "中共中央印发《干部教育培训工作条例》"
    assert upload(admin, NEWS).status_code == 409
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert upload(admin, empty).status_code == 422
    assert admin.post("/admin/api/documents", headers=AUTH, data={}).status_code == 400
    doc_id = r.get_json()["document"]["doc_id"]
    assert admin.delete(f"/admin/api/documents/{doc_id}", headers=AUTH).status_code == 200
    assert admin.delete(f"/admin/api/documents/{doc_id}", headers=AUTH).status_code == 404
    audit = admin.get("/admin/api/audit", headers=AUTH).get_json()["entries"]
    assert [(e["action"], e["who"]) for e in audit[:4]] == [
        ("remove_document", "tester"), ("remove_document", "tester"), ("add_document", "tester"),
        ("add_document", "tester")]
    assert audit[0]["result"].startswith("refused")


def test_reindex_job_switches_every_reader_and_rolls_back(admin, admin_app):
    engine = admin_app.extensions["engine"]
    before = engine.store.current()
    assert upload(admin, NEWS).status_code == 201
    r = admin.post("/admin/api/reindex", headers=AUTH)
    assert r.status_code == 202
    job_id = r.get_json()["job"]
    second = admin.post("/admin/api/reindex", headers=AUTH).get_json()
    assert second == {"job": job_id, "started": False}  # one at a time
    state = wait_job(admin, job_id)
    assert state["state"] == "done", state
    assert state["progress"]["done"] == state["progress"]["total"] > 0
    new = state["version"]
    assert new != before
    engine.wait_for_version(new)
    answer = engine.answerer.answer("干部教育培训工作条例是什么时候印发的？")
    assert any(p.doc.startswith("news_xwlb") for p in answer.passages)

    versions = admin.get("/admin/api/versions", headers=AUTH).get_json()
    assert versions["current"] == new and {v["version"] for v in versions["versions"]} >= {before, new}
    assert admin.post(f"/admin/api/versions/{before}/activate", headers=AUTH).get_json() == {"current": before}
    engine.wait_for_version(before)
    answer = engine.answerer.answer("干部教育培训工作条例是什么时候印发的？")
    assert not any(p.doc.startswith("news_xwlb") for p in answer.passages)
    assert admin.post("/admin/api/versions/v-missing/activate", headers=AUTH).status_code == 404
    assert admin.get("/admin/api/jobs/999", headers=AUTH).status_code == 404


def test_sigkill_during_a_reindex_job_keeps_the_old_version(admin, admin_app):
    engine = admin_app.extensions["engine"]
    before = engine.store.current()
    assert upload(admin, SHARED / "docs" / "19th_party_congress_report_2017.txt").status_code == 201
    job_id = admin.post("/admin/api/reindex", headers=AUTH).get_json()["job"]
    deadline = time.monotonic() + 120
    pid = None
    while time.monotonic() < deadline:
        with engine.bot_store.engine.connect() as conn:
            row = conn.execute(text("SELECT state, done, total, pid FROM jobs WHERE id = :id"), {"id": job_id}).one()
        if row[0] == "running" and 0 < row[1] < row[2]:
            pid = row[3]
            break
        time.sleep(0.1)
    assert pid, "the build never got going"
    os.kill(pid, signal.SIGKILL)
    state = wait_job(admin, job_id, timeout=30)
    assert state["state"] == "failed" and "中止" in state["error"]
    assert engine.store.current() == before
    assert not engine.answerer.answer("海燕归巢计划是做什么的？").abstained
    # the next start removes the half-built directory
    leftovers = [p for p in engine.store.root.iterdir() if p.name.startswith(".building-")]
    assert leftovers
    engine.start()
    assert not [p for p in engine.store.root.iterdir() if p.name.startswith(".building-")]


def test_documents_carry_date_status_and_metadata_that_admins_edit(admin, admin_app):
    report = SHARED / "docs" / "state_council_gov_work_report_2017.txt"
    r = upload(admin, report, issuer="国务院", number="")
    doc = r.get_json()["document"]
    assert r.status_code == 201 and doc["title"] == "2017年政府工作报告" and doc["untitled"] is False
    assert doc["date"] == "2017-03-16" and doc["status"] == "现行有效" and doc["issuer"] == "国务院"
    r = admin.patch(f"/admin/api/documents/{doc['doc_id']}", headers=AUTH,
                    json={"status": "已修订", "number": "国发〔2017〕1号", "title": "2017年国务院政府工作报告"})
    assert r.status_code == 200, r.get_json()
    listed = {d["doc_id"]: d for d in admin.get("/admin/api/documents", headers=AUTH).get_json()["documents"]}
    edited = listed[doc["doc_id"]]
    assert (edited["status"], edited["number"], edited["title"]) == ("已修订", "国发〔2017〕1号", "2017年国务院政府工作报告")
    assert all("date" in d and "status" in d for d in listed.values())
    audit = admin.get("/admin/api/audit", headers=AUTH).get_json()["entries"]
    assert audit[0]["action"] == "update_document" and audit[0]["result"] == "set number, status, title"


@pytest.mark.parametrize("body, status, message", [
    ({"status": "作废"}, 400, "状态只能是"), ({"date": "去年"}, 400, "YYYY-MM-DD"), ({"owner": "x"}, 400, "不能设置字段"),
    ([], 400, "JSON 对象"), ({"status": 3}, 400, "JSON 对象"),
])
def test_bad_metadata_edits_are_refused(admin, body, status, message):
    doc_id = admin.get("/admin/api/documents", headers=AUTH).get_json()["documents"][0]["doc_id"]
    r = admin.patch(f"/admin/api/documents/{doc_id}", headers=AUTH, json=body)
    assert r.status_code == status and message in r.get_json()["error"]
    assert admin.patch("/admin/api/documents/nope", headers=AUTH, json={"status": "已废止"}).status_code == 404


def test_a_reupload_in_gb18030_is_refused_naming_the_existing_document(admin, tmp_path):
    assert upload(admin, NEWS).status_code == 201
    again = tmp_path / "cadre-training-gb.txt"
    again.write_bytes(NEWS.read_text(encoding="utf-8").replace("\n", "\r\n").encode("gb18030"))
    r = upload(admin, again)
    assert r.status_code == 409 and "《中共中央印发《干部教育培训工作条例》》" in r.get_json()["error"]


def test_member_log_gives_question_tier_node_and_time(admin_app, admin):
    admin.post("/api/ask", json={"q": "怎样防止干部带病提拔？", "user": "m1"})
    admin.post("/api/ask", json={"q": "海燕归巢计划是做什么的？", "user": "m2"})
    entries = admin.get("/admin/api/log?user=api:m1", headers=AUTH).get_json()["entries"]
    assert [e["question"] for e in entries] == ["怎样防止干部带病提拔？"]
    node = admin.get("/healthz").get_json()["node"]
    assert node and entries[0]["node"] == node
    assert entries[0]["tier"] in ("answer", "related", "decline") and entries[0]["time"].startswith("20")
    assert admin.get("/admin/api/log", headers=AUTH).status_code == 400
    assert admin.get("/admin/api/log?user=api:m1").status_code == 401
