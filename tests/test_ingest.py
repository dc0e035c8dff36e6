import re

import pytest

from index.ingest import BODY, FOOTER, FOOTER_SECTION, HEADER, IngestError, clean, decode, load_file
from tests.conftest import SHARED, SPEECH


@pytest.fixture(scope="module")
def speech():
    return load_file(SPEECH)


def test_header_is_recovered(speech):
    assert speech.title == "在全市组织部长会议上的讲话摘要"
    assert speech.author == "陈玲玲"
    assert speech.date == "2018-02-06"
    assert [p.kind for p in speech.paragraphs[:3]] == [HEADER] * 3


def test_footer_is_kept_as_its_own_section(speech):
    footer = [p for p in speech.paragraphs if p.kind == FOOTER]
    assert [p.text[:2] for p in footer] == ["送：", "发：", "中共"]
    assert all(p.section == (FOOTER_SECTION,) for p in footer)
    assert footer[-1].text == "中共衢州市委组织部办公室 2018年2月9日印发"


def test_lines_are_reflowed_into_paragraphs(speech):
    body = [p for p in speech.paragraphs if p.kind == BODY and not p.is_heading]
    assert len(body) == 9
    # every body paragraph ends a sentence: no paragraph was cut at a PDF line break
    assert all(p.text[-1] in "。！？”" for p in body), [p.text[-10:] for p in body]
    assert "— 2 —" not in speech.text and "—2—" not in speech.text
    assert "习近平新时代中国特色社会主义思想" in speech.text  # was split over two lines
    assert "（2018年2月6日）" in speech.text  # PDF spaces between CJK and digits removed


def test_section_paths(speech):
    by_start = {p.text[:3]: p.section for p in speech.paragraphs}
    assert by_start["第一，"] == (
        "三、奋力开启新时代组织工作勇立潮头新征程",
        "第一，着力树好实干担当导向，以高素质专业化为目标全力打造堪当高质量发展重任的干部铁军",
    )
    assert by_start["第二，"][0].startswith("三、")
    assert by_start["坚持打"] == ("四、着力锻造新时代模范组织部门过硬组工队伍",)
    assert by_start["这次会"] == ()


def test_offsets_point_into_clean_text(speech):
    for p in speech.paragraphs:
        assert speech.text[p.start:p.end] == p.text


SINGLE_SPACED = """关于加强基层治理的通知

各乡镇：
为进一步加强基层治理，现将有关事项通知
如下。
一、总体要求
坚持党建引领，推动治理重心下移。各地要结合
实际抓好落实。
- 3 -
二、工作措施
（一）健全网格体系。每个网格配备专职网格员，
确保全覆盖。
（二）强化保障。落实经费保障。

抄送：市委办公室
XX市人民政府办公室 2021年3月5日印发
"""


def test_blank_lines_separate_paragraphs_when_not_double_spaced():
    doc = clean(SINGLE_SPACED, doc_id="notice")
    texts = [p.text for p in doc.paragraphs]
    assert doc.title == "关于加强基层治理的通知"
    assert "为进一步加强基层治理，现将有关事项通知如下。" in texts
    assert "坚持党建引领，推动治理重心下移。各地要结合实际抓好落实。" in texts
    assert not any(re.fullmatch(r"-\s*3\s*-", t) for t in texts)
    grid = next(p for p in doc.paragraphs if p.text.startswith("（一）"))
    assert grid.section == ("二、工作措施", "（一）健全网格体系")
    assert grid.text == "（一）健全网格体系。每个网格配备专职网格员，确保全覆盖。"
    assert doc.date == "2021-03-05"
    assert [p.kind for p in doc.paragraphs[-2:]] == [FOOTER, FOOTER]


def test_whole_paragraphs_on_their_lines_stay_paragraphs():
    """A report with one paragraph a line (long lines that close their sentences) is not hard-wrapped: each
    line is a paragraph, however long, and a new paragraph is never glued to the one before it."""
    long = "综合研判国内外形势，今年我国发展面临的风险挑战明显增多，必须爬坡过坎。" * 4
    target = "今年发展主要预期目标是：国内生产总值增长5.5%左右；城镇新增就业1100万人以上。"
    short = "经济增速预期目标的设定，主要考虑稳就业保民生防风险的需要。"
    doc = clean(f"政府工作报告\n{long}\n{target}\n{short}\n{long}\n", doc_id="report")
    assert [p.text for p in doc.paragraphs if p.text != "政府工作报告"][-4:] == [long, target, short, long]
    wrapped = clean("标题\n\n为进一步加强基层治理，推动治理重心下移，现将有关事项\n通知如下。各地要结合实际抓好落实，确保\n"
                    "全覆盖。\n", doc_id="wrapped")  # hard-wrapped lines still join
    assert any(p.text.startswith("为进一步") and p.text.endswith("确保全覆盖。") for p in wrapped.paragraphs)


def test_articles_and_chapters_nest():
    raw = (
        "示例条例\n\n第一章 总则\n\n第一条 为了规范管理，制定本条例。\n\n第二条 本条例适用于全市。\n\n"
        "第二章 附则\n\n第三条 本条例自公布之日起施行。\n"
    )
    doc = clean(raw, doc_id="law")
    sections = {p.text[:3]: p.section for p in doc.paragraphs}
    assert sections["第一条"] == ("第一章总则", "第一条")
    assert sections["第三条"] == ("第二章附则", "第三条")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "gbk", "utf-16"])
def test_decode_detects_encodings(encoding):
    text = "中共衢州市委组织部：坚决防止“带病提拔”。"
    assert decode(text.encode(encoding)) == text


def test_empty_and_undecodable_input_is_refused(tmp_path):
    with pytest.raises(IngestError, match="空文件"):
        decode(b"  \n ")
    with pytest.raises(IngestError, match="编码"):
        decode(bytes(range(0, 32)) * 20)
    png = tmp_path / "scan.png"
    png.write_bytes(b"\x89PNG....")
    with pytest.raises(IngestError, match="不支持"):
        load_file(png)
    with pytest.raises(IngestError, match="无法读取"):
        load_file(tmp_path / "missing.txt")


def test_long_titles_of_notices_and_news_headlines():
    notice = ("某某市人民政府办公室关于印发《某某市促进数字经济和实体经济深度融合高质量发展若干政策措施（2024—2026年）》"
              "的实施意见的通知\n某政办发〔2024〕3号\n各区人民政府：\n现将有关措施印发给你们，请认真贯彻执行。\n")
    doc = clean(notice, doc_id="n")
    assert doc.title.startswith("某某市人民政府办公室关于印发") and doc.title.endswith("的通知")
    assert len(doc.title) > 60
    news = ("习近平对组织工作作出重要指示强调 不断提高组织工作质量 全国组织工作会议在京召开\n2023-06-29\n"
            "央视网消息（新闻联播）：全国组织工作会议29日在京召开。\n")
    doc = clean(news, doc_id="x")
    assert doc.title.startswith("习近平对组织工作作出重要指示") and doc.date == "2023-06-29"
    # a long first line that is neither is body text, not a title
    body = "为了进一步加强和改进新时代干部教育培训工作，推动干部教育培训高质量发展，现就有关事项作出如下安排和部署要求\n第一条 总则。\n"
    assert clean(body, doc_id="b", source="b.txt").title == "未命名文件"  # never the file name


def test_a_title_printed_twice_is_one_title():
    # the second copy differs only in bracket width and dash; the document number sits in brackets too
    notice = ("某省人民政府办公厅关于印发数字经济发展行动计划(2021—2023年)的通知\n"
              "某省人民政府办公厅关于印发数字经济发展行动计划（2021-2023年）的通知\n"
              "（某政办秘〔2021〕82号）\n各市人民政府：\n现将行动计划印发给你们，请认真抓好落实。\n")
    doc = clean(notice, doc_id="n", source="local_policy_notice.txt")
    assert doc.title == "某省人民政府办公厅关于印发数字经济发展行动计划(2021—2023年)的通知"
    texts = [p.text for p in doc.paragraphs]
    assert "（某政办秘〔2021〕82号）" in texts
    assert sum("行动计划" in t and "通知" in t for t in texts) == 1
    # the same sentence twice in the body stays: only a line repeating the one before it goes
    body = clean("标题\n第一条 要加强学习。\n第二条 要加强学习。\n", doc_id="b")
    assert sum("要加强学习" in p.text for p in body.paragraphs) == 2


def test_titles_of_the_shared_notices():
    doc = load_file(SHARED / "docs" / "local_policy_anhui_industrial_internet.txt")
    assert doc.title.startswith("安徽省人民政府办公厅关于印发支持工业互联网发展若干政策")
    assert doc.title.endswith("的通知")
