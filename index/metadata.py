"""What a policy document says about itself: a title when it has no title line, issuer (发文机关),
number (文号), publication date, what it repeals, and the series it belongs to.

Everything here reads the cleaned text (``index.ingest``); nothing guesses from the file name. A field
the text does not state is left out, and an admin may set it (``bot.library``).

- a government work report opens with "各位代表：" and "我代表国务院，向大会报告…": its year is the year of
  its date line, else the year after its "2018年工作回顾" heading, else the 《人民日报》 footer's;
- an exported notice on one long line opens with its title: "…关于…的通知" up to the first document type
  word outside 《》;
- dates: the header's, else the last "…年…月…日…通过/修订/修正" of a law's preamble, else a footer;
- "本法自2019年6月1日起施行" is the effective date, "《…》同时废止" what the document repeals.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

CN_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
STATUS_IN_FORCE, STATUS_AMENDED, STATUS_REPEALED = "现行有效", "已修订", "已废止"
STATUSES = (STATUS_IN_FORCE, STATUS_AMENDED, STATUS_REPEALED)
FIELDS = ("issuer", "number", "date", "status", "replaces", "effective", "kind")  # what an admin may edit
UNTITLED = "未命名文件"
# Raised whenever what this module finds changes: documents stored with an older number are read again
# (``bot.library``), keeping the fields an admin set. 2: joint issuers listed apart (中共中央、国务院).
EXTRACTOR_VERSION = 2

GOV_REPORT = re.compile(r"我代表国务院，?向大会报告")
REVIEW_YEAR = re.compile(r"^[一二三四五六七八九十]+、\s*(\d{4})\s*年工作回顾")
PEOPLES_DAILY = re.compile(r"《人民日报》\s*[（(]\s*(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日")
WIRE_DAY = re.compile(r"新华社北京\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日电")
DATE = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日")
ENACTED = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日[^。\d]{0,160}?(通过|修订|修正|公布)")
EFFECTIVE = re.compile(r"自\s*(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日起施行")
REPEALS = re.compile(r"(《[^》]{2,60}》(?:[、和及]《[^》]{2,60}》)*)同时废止")
NUMBER = re.compile(r"[\u4e00-\u9fff]{1,12}[〔\[［]\s*\d{4}\s*[〕\]］]\s*\d{1,4}\s*号")
CONGRESS = re.compile(r"中国共产党第([一二三四五六七八九十]+)次全国代表大会")
NOTICE_TYPE = re.compile(r"的(通知|意见|决定|批复|通报|公告|通告|报告)")
ISSUER_END = re.compile(r"^.{2,40}(?:人民政府|办公室|办公厅|委员会|中央|国务院|局|厅|部|委|小组)$")
ISSUER_NAMES = {"中办国办": "中共中央办公厅、国务院办公厅", "中办": "中共中央办公厅", "国办": "国务院办公厅"}
# Central bodies that issue documents jointly; a title runs their names together ("中共中央国务院关于…")
JOINT_ISSUERS = ("中共中央办公厅", "国务院办公厅", "中共中央", "国务院", "中央军委", "全国人大常委会")
SIGNED_DATE = re.compile(r"^(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日$")
SIGNATURE = re.compile(r"^([\u4e00-\u9fff]{2,30}(?:人民政府办公室|人民政府办公厅|人民政府|办公室|办公厅|局|委员会))$")
LEGISLATURE = re.compile(
    r"((?:全国|[\u4e00-\u9fff]{2,4}省)?(?:第[一二三四五六七八九十]+届)?人民代表大会(?:常务委员会)?)"
)
PRINTED_BY = re.compile(r"^(.{2,30}?)\s*\d{4}年\d{1,2}月\d{1,2}日印发$")


def cn_number(text: str) -> int:
    """十九 -> 19, 二十 -> 20, 十三 -> 13 (numbers below 100)."""
    if "十" not in text:
        return CN_DIGITS.get(text, 0)
    tens, _, ones = text.partition("十")
    return (CN_DIGITS.get(tens, 1) if tens else 1) * 10 + (CN_DIGITS.get(ones, 0) if ones else 0)


def iso(year: str | int, month: str | int, day: str | int) -> str:
    return f"{int(year):04d}-{int(month):02d}-{int(day):02d}"


def normalised_text(text: str) -> str:
    """The text as compared for duplicates: NFKC, no white space (encodings and line breaks differ)."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


# ----------------------------------------------------------------------------------- titles


def report_year(paragraphs: list[str], date: str | None) -> int | None:
    """The year of a government work report: its date, else the year after its review, else the footer."""
    if date:
        return int(date[:4])
    for text in paragraphs[:12]:
        m = REVIEW_YEAR.match(text)
        if m:
            return int(m.group(1)) + 1
    for text in reversed(paragraphs[-4:]):
        m = PEOPLES_DAILY.search(text)
        if m:
            return int(m.group(1))
    return None


def is_gov_report(paragraphs: list[str]) -> bool:
    return any(GOV_REPORT.search(p) for p in paragraphs[:6])


def infer_title(paragraphs: list[str], date: str | None) -> str | None:
    """A Chinese title from the content of a document that has no title line, or None."""
    if not paragraphs:
        return None
    if is_gov_report(paragraphs):
        year = report_year(paragraphs, date)
        return f"{year}年政府工作报告" if year else "政府工作报告"
    return notice_title(paragraphs[0])


def notice_title(first: str) -> str | None:
    """"XX关于印发《…的意见》的通知 各区政府：…" -> the part up to 的通知 (outside 《》)."""
    head = first[:200]
    if "关于" not in head[:60] and "印发" not in head[:60]:
        return None
    for m in NOTICE_TYPE.finditer(head):
        candidate = head[: m.end()]
        if candidate.count("《") == candidate.count("》") and len(candidate) >= 8:
            return candidate
    return None


def refine_title(title: str, paragraphs: list[str], date: str | None) -> str:
    """A report titled only "政府工作报告" gets its year: "2019年政府工作报告"."""
    if title == "政府工作报告":
        year = report_year(paragraphs, date)
        if year:
            return f"{year}年{title}"
    return title


# --------------------------------------------------------------------------------- metadata


def extract(title: str, header: list[str], body: list[str], footer: list[str], date: str | None) -> dict[str, str]:
    """Issuer, number, date, effective date, what is repealed and the kind of document, where stated."""
    paragraphs = header + body + footer
    meta: dict[str, str] = {}
    head = paragraphs[:8]
    for text in head:
        m = NUMBER.search(text)
        if m and len(text) <= 40:
            meta["number"] = re.sub(r"\s+", "", m.group(0)).lstrip("（(")
            break
    issuer = _issuer(title, head, body, footer)
    if issuer:
        meta["issuer"] = issuer
    found = date or _date(paragraphs)
    if found:
        meta["date"] = found
    tail = " ".join(paragraphs[-6:])
    m = EFFECTIVE.search(tail)
    if m:
        meta["effective"] = iso(*m.groups())
    m = REPEALS.search(tail)
    if m:
        meta["replaces"] = m.group(1)
    kind = _kind(title, paragraphs)
    if kind:
        meta["kind"] = kind
    meta["status"] = STATUS_IN_FORCE
    return meta


def _issuer(title: str, head: list[str], body: list[str], footer: list[str]) -> str | None:
    if is_gov_report(head):
        return "国务院"
    congress = next((m for p in head[:4] if (m := CONGRESS.search(p))), None)
    if congress and title.endswith("章程"):
        return "中国共产党全国代表大会"
    if congress:
        return "中国共产党中央委员会"
    for text in head[:3]:  # a law's preamble: the body that passed or last amended it
        found = LEGISLATURE.findall(text)
        if found and re.search(r"通过|修订|修正", text):
            return re.sub(r"第[一二三四五六七八九十]+届", "", found[-1]).lstrip("日")
    lead = re.split(r"关于|印发", title, maxsplit=1)[0] if ("关于" in title or "印发" in title) else ""
    if lead in ISSUER_NAMES:
        return ISSUER_NAMES[lead]
    if joint := _joint_issuers(lead):
        return joint
    if lead and len(lead) <= 40 and not re.search(r"强调|指示|会议", lead) and ISSUER_END.match(lead):
        return lead
    for text in body[:12]:  # the signature under a covering notice
        m = SIGNATURE.match(text)
        if m:
            return m.group(1)
    for text in footer:
        m = PRINTED_BY.match(text)
        if m:
            return m.group(1).strip()
    return None


def _joint_issuers(lead: str) -> str | None:
    """"中共中央国务院" -> "中共中央、国务院": a run of two or more of ``JOINT_ISSUERS``, else None."""
    names: list[str] = []
    rest = lead
    while rest:
        name = next((n for n in JOINT_ISSUERS if rest.startswith(n)), None)
        if name is None:
            return None
        names.append(name)
        rest = rest[len(name):].lstrip("、")
    return "、".join(names) if len(names) >= 2 else None


def _date(paragraphs: list[str]) -> str | None:
    head = paragraphs[:4]
    enacted = [m for p in head for m in ENACTED.finditer(p)]
    if enacted:
        return iso(*enacted[-1].groups()[:3])
    for text in paragraphs[:16]:  # the date under a covering notice's signature
        m = SIGNED_DATE.match(text)
        if m:
            return iso(*m.groups())
    for text in reversed(paragraphs[-4:]):
        m = PEOPLES_DAILY.search(text)
        if m:
            return iso(*m.groups())
    year = report_year(paragraphs, None) if is_gov_report(paragraphs) else None
    if year:
        for text in reversed(paragraphs[-4:]):
            m = WIRE_DAY.search(text)
            if m:
                return iso(year, *m.groups())
    for text in head:
        m = DATE.search(text)
        if m and len(text) <= 40:
            return iso(*m.groups())
    return None


def _kind(title: str, paragraphs: list[str]) -> str | None:
    """The kind of document, without its year: what a series shares."""
    if is_gov_report(paragraphs[:6]) or re.sub(r"^\d{4}年", "", title) == "政府工作报告":
        return "政府工作报告"
    if any(CONGRESS.search(p) and "报告" in p for p in paragraphs[:4]):
        return "党的全国代表大会报告"
    kind = re.sub(r"[(（]?\d{4}\s*[—–-]\s*\d{4}年?[)）]?|\d{4}年(度)?", "", title)
    return kind or None


def congress_number(paragraphs: Iterable[str]) -> int | None:
    for text in paragraphs:
        m = CONGRESS.search(text)
        if m:
            return cn_number(m.group(1))
    return None


# ----------------------------------------------------------------------------------- series


def link_series(documents: list[dict]) -> None:
    """Documents of one kind from one issuer form a series, ordered by date, newest last. Sets each
    one's ``series`` (the kind), ``series_order`` and ``latest`` (the newest's doc_id and title); an older
    member of a series keeps its status, and a document another one repeals is 已废止."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for doc in documents:
        for key in ("series", "series_order", "latest", "latest_title", "latest_date"):
            doc.pop(key, None)
        if doc.get("issuer") and doc.get("kind"):
            groups.setdefault((doc["issuer"], doc["kind"]), []).append(doc)
    for (_, kind), members in groups.items():
        if len(members) < 2:
            continue
        members.sort(key=lambda d: (d.get("date") or "", d.get("doc_id", "")))
        newest = members[-1]
        for order, doc in enumerate(members):
            doc.update(series=kind, series_order=order, latest=newest.get("doc_id", ""),
                       latest_title=newest.get("title", ""), latest_date=newest.get("date") or "")
    titles = {d.get("title", ""): d for d in documents}
    for doc in documents:
        for name in re.findall(r"《([^》]+)》", doc.get("replaces") or ""):
            repealed = titles.get(name)
            if repealed is not None and repealed is not doc and "status" not in repealed.get("edited", []):
                repealed["status"] = STATUS_REPEALED
