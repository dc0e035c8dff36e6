"""The document library: formats, encodings, and every refused input leaving it unchanged."""

import json

import pytest
from sqlalchemy import text

from bot.library import Library, LibraryError
from bot.store import BotStore
from index import metadata
from tests.conftest import SHARED, SPEECH
from tests.docs_factory import docx_bytes, html_bytes, pdf_bytes, scanned_pdf_bytes

NOTICE = "关于加强基层治理的通知\n\n为进一步加强基层治理，现将有关事项通知如下。\n\n一、总体要求\n\n坚持党建引领，推动治理重心下移。\n"


@pytest.fixture
def library(db_url, tmp_path):
    """The document library on each storage engine (SQLite and PostgreSQL)."""
    store = BotStore.open(db_url)
    yield Library(store, tmp_path / "documents", max_bytes=200_000)
    store.engine.dispose()


def test_txt_in_utf8_bom_and_gbk(library):
    a = library.add("通知.txt", NOTICE.encode("utf-8-sig"), uploaded_by="t")
    b = library.add("notice-gbk.txt", NOTICE.replace("通知如下", "通知如下：").encode("gbk"), uploaded_by="t")
    assert a.title == b.title == "关于加强基层治理的通知"
    docs = {d.doc_id: d for d in library.documents()}
    assert "坚持党建引领" in docs["notice-gbk"].text


def test_docx(library):
    data = docx_bytes(["关于推进数字政府建设的意见", "一、工作目标", "到2025年，政务服务事项全面实现网上办理。"])
    doc = library.add("digital.docx", data, uploaded_by="t")
    assert doc.title == "关于推进数字政府建设的意见"
    text = library.documents()[0].text
    assert "到2025年，政务服务事项全面实现网上办理。" in text


def test_pdf_with_text_layer(library):
    data = pdf_bytes(["Data Sharing Measures", "Article 1. Government data shall be shared by default."])
    doc = library.add("measures.pdf", data, uploaded_by="t")
    assert "shared by default" in library.documents()[0].text
    assert doc.chars > 40


def test_html_keeps_text_drops_script(library):
    data = html_bytes("干部教育培训工作条例", ["第一条 为了推进干部教育培训工作，制定本条例。", "第二条 本条例适用于全国。"])
    doc = library.add("rules.html", data, uploaded_by="t")
    text = library.documents()[0].text
    assert doc.title == "干部教育培训工作条例"
    assert "第二条 本条例适用于全国。".replace(" ", "") in text.replace(" ", "") and "不要索引我" not in text


def test_a_title_can_be_given(library):
    doc = library.add("report.txt", "各位代表：\n\n现在，我代表国务院报告工作。\n".encode(), uploaded_by="t",
                      title="2017年政府工作报告")
    assert doc.title == "2017年政府工作报告" and library.documents()[0].title == "2017年政府工作报告"


@pytest.mark.parametrize("name,data,status,message", [
    ("empty.txt", b"", 422, "空文件"),
    ("blank.txt", b"   \n\n  ", 422, "空文件"),
    ("photo.png", b"\x89PNG\r\n\x1a\nxxxx", 415, "不支持的文件类型"),
    ("noext", b"some text", 415, "不支持的文件类型"),
    ("binary.txt", bytes(range(0, 32)) * 50, 422, "编码"),
    ("scan.pdf", scanned_pdf_bytes(), 422, "扫描件"),
    ("broken.pdf", b"%PDF-1.4 not really", 422, "不是有效的 PDF"),
    ("broken.docx", b"PK\x03\x04 not a zip", 422, "不是有效的 docx"),
    ("huge.txt", ("很长的文字。" * 20000).encode(), 413, "超过大小上限"),
])
def test_bad_input_is_refused_and_changes_nothing(library, name, data, status, message):
    library.add("通知.txt", NOTICE.encode(), uploaded_by="t")
    before = library.all()
    with pytest.raises(LibraryError, match=message) as info:
        library.add(name, data, uploaded_by="t")
    assert info.value.status == status
    assert library.all() == before
    assert sorted(p.name for p in library.files_dir.iterdir()) == ["通知"]


def test_exact_duplicate_names_the_existing_document(library):
    library.add("a.txt", NOTICE.encode(), uploaded_by="t")
    with pytest.raises(LibraryError, match=r"《关于加强基层治理的通知》（a.txt）") as info:
        library.add("b.txt", NOTICE.encode(), uploaded_by="t")
    assert info.value.status == 409


def test_same_name_replaces_only_when_asked(library):
    library.add("a.txt", NOTICE.encode(), uploaded_by="t")
    changed = NOTICE.replace("坚持党建引领", "坚持系统观念")
    with pytest.raises(LibraryError, match="replace=1"):
        library.add("a.txt", changed.encode(), uploaded_by="t")
    library.add("a.txt", changed.encode(), uploaded_by="t", replace=True)
    assert len(library.all()) == 1 and "坚持系统观念" in library.documents()[0].text


def test_remove_and_seed_once(library):
    assert library.seed(SPEECH.parent) == 1
    doc_id = library.all()[0].doc_id
    library.remove(doc_id)
    assert library.seed(SPEECH.parent) == 0  # the admin removed it: it does not come back
    assert library.all() == []
    with pytest.raises(LibraryError) as info:
        library.remove(doc_id)
    assert info.value.status == 404


@pytest.mark.parametrize("encoding, newline", [("gb18030", "\n"), ("utf-8", "\r\n"), ("gb18030", "\r\n")])
def test_the_same_text_in_another_encoding_or_line_breaks_is_a_duplicate(library, encoding, newline):
    library.add("a.txt", NOTICE.encode(), uploaded_by="t")
    again = NOTICE.replace("\n\n", "\n").replace("\n", newline).encode(encoding)
    with pytest.raises(LibraryError, match="《关于加强基层治理的通知》（a.txt）内容相同（仅编码或换行不同）") as refused:
        library.add("b.txt", again, uploaded_by="t")
    assert refused.value.status == 409 and len(library.all()) == 1
    replaced = library.add("a.txt", again, uploaded_by="t", replace=True)  # the same name replaces, as before
    assert replaced.sha256 != library.all()[0].text_sha256 and len(library.all()) == 1


def test_a_document_without_a_title_gets_a_neutral_chinese_one_never_its_file_name(library):
    body = "为了进一步加强和改进新时代干部教育培训工作，推动干部教育培训高质量发展，现就有关事项作出如下安排和部署要求\n第一条 总则。\n"
    doc = library.add("9f3c2a7b.txt", body.encode(), uploaded_by="t")
    assert doc.title.startswith("未命名文件（上传于20") and "9f3c" not in doc.title
    assert doc.untitled and doc.to_json()["untitled"] is True
    named = library.update(doc.doc_id, {"title": "干部教育培训安排"})
    assert named.title == "干部教育培训安排" and not named.untitled
    assert library.documents()[0].title == "干部教育培训安排"


def test_government_work_reports_are_named_and_linked_as_a_series(library):
    for year in (2022, 2018):
        path = SHARED / "docs" / f"state_council_gov_work_report_{year}.txt"
        library.add(path.name, path.read_bytes(), uploaded_by="t")
    docs = {d.doc_id: d for d in library.all()}
    old, new = docs["state_council_gov_work_report_2018"], docs["state_council_gov_work_report_2022"]
    assert (old.title, new.title) == ("2018年政府工作报告", "2022年政府工作报告")
    assert old.meta["latest"] == new.doc_id and old.meta["series_order"] == 0 and new.meta["series_order"] == 1
    assert old.to_json()["status"] == "现行有效" and old.to_json()["date"] == "2018-03-23"
    built = {d.doc_id: d for d in library.documents()}
    assert built[old.doc_id].meta["latest_title"] == "2022年政府工作报告"


def test_metadata_given_at_upload_and_edited_later(library):
    doc = library.add("a.txt", NOTICE.encode(), uploaded_by="t",
                      fields={"issuer": "某某县人民政府", "number": "某政发〔2020〕1号", "date": "2020-05-01"})
    assert doc.meta["issuer"] == "某某县人民政府" and doc.date == "2020-05-01"
    edited = library.update(doc.doc_id, {"status": "已废止", "number": ""})
    assert edited.status == "已废止" and "number" not in edited.meta and edited.meta["issuer"] == "某某县人民政府"
    assert set(edited.meta["edited"]) == {"issuer", "number", "date", "status"}


@pytest.mark.parametrize("fields, message", [
    ({"status": "有效"}, "状态只能是"), ({"date": "2020年5月1日"}, "YYYY-MM-DD"), ({"owner": "x"}, "不能设置字段"),
])
def test_bad_metadata_is_refused(library, fields, message):
    doc = library.add("a.txt", NOTICE.encode(), uploaded_by="t")
    with pytest.raises(LibraryError, match=message):
        library.update(doc.doc_id, fields)
    assert library.all()[0].meta == doc.meta


def test_documents_stored_before_metadata_are_backfilled(library):
    doc = library.add("a.txt", NOTICE.encode(), uploaded_by="t")
    with library.store.engine.begin() as conn:
        conn.execute(text("UPDATE documents SET text_sha256 = NULL, meta = NULL"))
    again = library.all()[0]
    assert again.text_sha256 == doc.text_sha256 and again.status == "现行有效"


def test_metadata_found_by_an_older_extractor_is_read_again_keeping_what_admins_set(library):
    """When extraction improves, stored documents are read again once; a field an admin set, or cleared,
    stays as the admin left it."""
    doc = library.add("a.txt", NOTICE.encode(), uploaded_by="t")
    library.update(doc.doc_id, {"number": "某办发〔2021〕1号", "issuer": ""})
    stored = library.all()[0]
    old = {**stored.meta, "extractor": 1, "kind": "旧的类别"}
    with library.store.engine.begin() as conn:
        conn.execute(text("UPDATE documents SET meta = :meta"), {"meta": json.dumps(old, ensure_ascii=False)})
    again = library.all()[0]
    assert again.meta.get("kind") == doc.meta.get("kind")  # what the text states now, not the stale value
    assert again.meta["number"] == "某办发〔2021〕1号" and "issuer" not in again.meta
    assert again.meta["extractor"] == metadata.EXTRACTOR_VERSION and "extractor" not in again.to_json()
