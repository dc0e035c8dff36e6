"""Titles and policy metadata read from the documents' text (index.metadata), checked on the shared documents."""

import pytest

from index.ingest import clean, load_file
from index.metadata import STATUS_IN_FORCE, STATUS_REPEALED, link_series
from tests.conftest import SHARED, SPEECH

DOCS = SHARED / "docs"

# file -> (title, issuer, number, date): what each document's own header or footer says
EXPECTED = {
    "19th_party_congress_report_2017.txt": ("决胜全面建成小康社会夺取新时代中国特色社会主义伟大胜利", "中国共产党中央委员会",
                                            None, "2017-10-18"),
    "20th_party_congress_report_2022.txt": ("高举中国特色社会主义伟大旗帜为全面建设社会主义现代化国家而团结奋斗",
                                            "中国共产党中央委员会", None, "2022-10-16"),
    "cpc_state_council_opinion_rural_revitalization_2018.txt": ("中共中央国务院关于实施乡村振兴战略的意见", "中共中央、国务院",
                                                                None, "2018-01-02"),
    "law_civil_servant_law_2018.txt": ("中华人民共和国公务员法", "全国人民代表大会常务委员会", None, "2018-12-29"),
    "law_supervision_law_2018.txt": ("中华人民共和国监察法", "全国人民代表大会", None, "2018-03-20"),
    "local_policy_aba_gov_data.txt": ("阿坝州人民政府办公室关于印发《阿坝州政务数据资源管理暂行办法》的通知",
                                      "阿坝州人民政府办公室", "阿府办发〔2021〕21号", "2021-10-11"),
    "local_policy_anhui_industrial_internet.txt": (None, "安徽省人民政府办公厅", "皖政办秘〔2021〕82号", "2021-09-02"),
    "local_policy_anhui_reform_opening.txt": (None, "安徽省推进“三地一区”建设领导小组改革开放新高地执行小组办公室",
                                              "皖开放办〔2022〕6号", "2022-03-23"),
    "local_policy_baotou_digital_gov_assessment_2022.txt": (
        "包头市人民政府办公室关于印发《包头市2022年数字政府建设考评办法》的通知", "包头市人民政府办公室",
        "包府办发〔2022〕43号", "2022-04-14"),
    "local_policy_beijing_data_zone_guidance.txt": (None, "北京市经济和信息化局", "京经信发〔2022〕87号", "2022-11-21"),
    "news_xwlb_2023-06-29_national_organization_work_conference.txt": (None, None, None, "2023-06-29"),
    "news_xwlb_2023-08-02_leading_cadres_party_rules_list.txt": (None, "中共中央办公厅、国务院办公厅", None, "2023-08-02"),
    "news_xwlb_2023-10-15_cadre_education_training_regulation.txt": ("中共中央印发《干部教育培训工作条例》", "中共中央",
                                                                     None, "2023-10-15"),
    "party_constitution_2017_zh.txt": ("中国共产党章程", "中国共产党全国代表大会", None, "2017-10-24"),
    "state_council_gov_work_report_2017.txt": ("2017年政府工作报告", "国务院", None, "2017-03-16"),
    "state_council_gov_work_report_2018.txt": ("2018年政府工作报告", "国务院", None, "2018-03-23"),
    "state_council_gov_work_report_2019.txt": ("2019年政府工作报告", "国务院", None, "2019-03-05"),
    "state_council_gov_work_report_2022.txt": ("2022年政府工作报告", "国务院", None, "2022-03-13"),
    "zhejiang_village_committee_election_measures_2020.txt": ("浙江省村民委员会选举办法", "浙江省人民代表大会常务委员会",
                                                              None, "2020-07-31"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_metadata_of_the_shared_documents(name):
    doc = load_file(DOCS / name)
    title, issuer, number, date = EXPECTED[name]
    if title:
        assert doc.title == title
    assert doc.meta.get("issuer") == issuer
    assert doc.meta.get("number") == number
    assert doc.meta.get("date") == date
    assert doc.meta["status"] == STATUS_IN_FORCE
    assert not any(part in doc.title for part in ("_", ".txt", "report", "state"))


def test_every_document_has_a_chinese_title_never_its_file_name():
    for path in [*sorted(DOCS.glob("*.txt")), SPEECH]:
        doc = load_file(path)
        assert doc.title and doc.meta["title_from"] in ("header", "content"), path.name
        assert not any(ch.isascii() and ch.isalpha() for ch in doc.title.replace("RCEP", "")), doc.title


@pytest.mark.parametrize("year", [2017, 2018, 2022])
def test_government_work_reports_without_a_title_line_are_named_from_their_content(year):
    doc = load_file(DOCS / f"state_council_gov_work_report_{year}.txt")
    assert doc.text.startswith("各位代表：")
    assert doc.title == f"{year}年政府工作报告" and doc.meta["title_from"] == "content"
    assert doc.meta["kind"] == "政府工作报告" and doc.meta["issuer"] == "国务院"


def test_a_notice_on_one_long_line_is_named_by_its_first_sentence():
    line = ("某某市人民政府办公室关于印发《某某市数据安全管理办法（试行）》的通知 各区县人民政府，市政府各部门："
            "现将《某某市数据安全管理办法（试行）》印发给你们，请认真贯彻执行。第一条 为了规范数据处理活动，制定本办法。" * 2)
    doc = clean(line, doc_id="3f9a0c1d2b7e", source="3f9a0c1d2b7e.txt")
    assert doc.title == "某某市人民政府办公室关于印发《某某市数据安全管理办法（试行）》的通知"
    assert doc.meta["issuer"] == "某某市人民政府办公室"


def test_a_report_year_comes_from_its_review_heading_or_its_footer():
    review = "各位代表：\n现在，我代表国务院，向大会报告政府工作。\n一、2020年工作回顾\n过去一年极不平凡。\n"
    assert clean(review, doc_id="r").title == "2021年政府工作报告"
    footer = ("各位代表：\n现在，我代表国务院，向大会报告过去五年政府工作。\n一、过去五年工作回顾\n五年来成就显著。\n"
              "《人民日报》（2018年03月23日01版）\n")
    doc = clean(footer, doc_id="f")
    assert doc.title == "2018年政府工作报告" and doc.meta["date"] == "2018-03-23"


def test_effective_date_and_what_a_law_repeals():
    doc = load_file(DOCS / "law_supervision_law_2018.txt")
    assert doc.meta["replaces"] == "《中华人民共和国行政监察法》"
    assert load_file(DOCS / "law_civil_servant_law_2018.txt").meta["effective"] == "2019-06-01"


def test_series_are_linked_newest_last_and_a_repealed_document_is_marked():
    docs = [
        {"doc_id": "r2022", "title": "2022年政府工作报告", "issuer": "国务院", "kind": "政府工作报告", "date": "2022-03-13"},
        {"doc_id": "r2018", "title": "2018年政府工作报告", "issuer": "国务院", "kind": "政府工作报告", "date": "2018-03-23"},
        {"doc_id": "law", "title": "中华人民共和国监察法", "replaces": "《中华人民共和国行政监察法》", "status": STATUS_IN_FORCE},
        {"doc_id": "old", "title": "中华人民共和国行政监察法", "status": STATUS_IN_FORCE},
    ]
    link_series(docs)
    by_id = {d["doc_id"]: d for d in docs}
    assert by_id["r2018"]["series_order"] == 0 and by_id["r2022"]["series_order"] == 1
    assert by_id["r2018"]["latest"] == by_id["r2022"]["latest"] == "r2022"
    assert by_id["r2018"]["latest_title"] == "2022年政府工作报告"
    assert "series" not in by_id["law"]
    assert by_id["old"]["status"] == STATUS_REPEALED and by_id["law"]["status"] == STATUS_IN_FORCE
