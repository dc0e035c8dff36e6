"""Official answers (问答对): matching a member's question to one, and their CSV / XLSX files.

A question gets an official answer when it is one of the pair's phrasings after normalisation (width,
Traditional/Simplified, case, punctuation and spaces ignored), or when it is close to one on both kinds of
evidence the search uses: the e5 cosine of the two questions (read in the documents' words) and the
share of their character bigrams they have in common — each with a strict bar, so a question that only
shares a topic with a pair goes on to the documents.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bot.curation.store import Faq

# The bars for a close match, measured on the bundled model: close rewordings of 党员每个月要交多少党费？
# score cosine 0.98-0.99 with bigram overlap 0.53-0.84; questions on the same subject asking something
# else (党费怎么交？ 0.96 / 0.14, 入党要交多少钱？ 0.94 / 0.38) and unrelated ones (0.85-0.89) fall short of
# one bar or both. A looser paraphrase (我每月应该缴纳多少党费 0.97 / 0.30) goes to the documents: add it
# as an alternative phrasing.
COSINE_BAR = 0.96
OVERLAP_BAR = 0.4
NOT_WORD = re.compile(r"[^0-9a-z\u3400-\u4dbf\u4e00-\u9fff]+")
QUESTION_TAIL = re.compile(r"(吗|呢|呀|啊|吧|么)$")
ALTERNATIVES_SPLIT = re.compile(r"[\n|｜;；]+")
HEADERS = {
    "question": ("问题", "question", "标准问题"),
    "alternatives": ("其他问法", "相似问法", "alternatives", "alternative questions"),
    "answer": ("答案", "回答", "answer"),
    "source": ("出处", "来源", "source"),
}
EXPORT_HEADER = ["问题", "其他问法", "答案", "出处"]
MAX_ROWS = 10_000


class FaqFileError(ValueError):
    """An import file that cannot be read; the message says which row or column."""


def faq_key(text: str) -> str:
    """A question's exact-match key: NFKC, lower case, only letters, digits and Chinese characters."""
    key = NOT_WORD.sub("", unicodedata.normalize("NFKC", text).lower())
    return QUESTION_TAIL.sub("", key) or key


def bigrams(text: str) -> set[str]:
    key = faq_key(text)
    return {key[i:i + 2] for i in range(len(key) - 1)} or ({key} if key else set())


def overlap(a: set[str], b: set[str]) -> float:
    """Dice coefficient of two bigram sets."""
    return 2 * len(a & b) / (len(a) + len(b)) if a and b else 0.0


@dataclass(frozen=True)
class FaqMatch:
    faq: Faq
    phrase: str  # the pair's phrasing that matched
    how: str  # exact or close
    cosine: float | None = None
    overlap: float | None = None

    def to_json(self) -> dict:
        return {"id": self.faq.id, "question": self.faq.question, "matched": self.phrase, "how": self.how,
                "cosine": self.cosine, "overlap": self.overlap}


class FaqMatcher:
    """The official answers of one curation version, ready to match."""

    def __init__(self, faqs: list[Faq], dimension: int | None = None) -> None:
        self.faqs = faqs
        self.exact: dict[str, tuple[Faq, str]] = {}
        rows: list[np.ndarray] = []
        self.phrases: list[tuple[Faq, str, set[str]]] = []
        for faq in faqs:
            phrases = [faq.question, *faq.alternatives]
            for phrase in phrases:
                self.exact.setdefault(faq_key(phrase), (faq, phrase))
            if faq.vectors is not None and dimension and faq.vectors.size == dimension * len(phrases):
                rows.append(faq.vectors.reshape(len(phrases), dimension))
                self.phrases += [(faq, p, bigrams(p)) for p in phrases]
        self.matrix = np.vstack(rows).astype(np.float32) if rows else None
        # bigram -> the phrases having it, so the overlap with every phrase is a few array additions
        having: dict[str, list[int]] = {}
        for i, (_, _, grams) in enumerate(self.phrases):
            for gram in grams:
                having.setdefault(gram, []).append(i)
        self.gram_phrases = {g: np.array(ids, dtype=np.int64) for g, ids in having.items()}
        self.gram_counts = np.array([len(g) for _, _, g in self.phrases], dtype=np.float64)

    def __len__(self) -> int:
        return len(self.faqs)

    def match(self, question: str, vector: Callable[[], np.ndarray]) -> FaqMatch | None:
        """The pair ``question`` asks for, or None. ``vector`` embeds the question (only called when a
        close match is possible: there are pairs and the question shares bigrams with one)."""
        if not self.faqs:
            return None
        hit = self.exact.get(faq_key(question))
        if hit is not None:
            return FaqMatch(hit[0], hit[1], "exact")
        if self.matrix is None:
            return None
        overlaps = self.overlaps(bigrams(question))
        if overlaps.max(initial=0.0) < OVERLAP_BAR:
            return None
        cosine = self.matrix @ vector()
        passing = np.flatnonzero((cosine >= COSINE_BAR) & (overlaps >= OVERLAP_BAR))
        if not len(passing):
            return None
        best = int(passing[np.argmax(cosine[passing])])
        faq, phrase, _ = self.phrases[best]
        return FaqMatch(faq, phrase, "close", round(float(cosine[best]), 4), round(float(overlaps[best]), 4))


    def overlaps(self, grams: set[str]) -> np.ndarray:
        """``overlap(grams, phrase)`` for every embedded phrase at once."""
        shared = np.zeros(len(self.phrases), dtype=np.float64)
        for gram in grams:
            ids = self.gram_phrases.get(gram)
            if ids is not None:
                shared[ids] += 1.0  # a phrase is listed once per bigram
        if not grams:
            return shared
        return 2.0 * shared / (len(grams) + self.gram_counts)


# ------------------------------------------------------------------------------- files


def read_file(name: str, data: bytes) -> list[Faq]:
    """Pairs from a .csv (UTF-8, UTF-8 with BOM or GB18030) or .xlsx file with a header row naming the
    columns 问题, 其他问法, 答案 (and optionally 出处); alternatives are separated by line breaks, ｜ or ；."""
    lower = name.lower()
    rows: list[list[object]]
    if lower.endswith(".xlsx"):
        rows = _xlsx_rows(data)
    elif lower.endswith(".csv"):
        rows = list(_csv_rows(data))
    else:
        raise FaqFileError("请上传 .csv 或 .xlsx 文件")
    if not rows:
        raise FaqFileError("文件是空的")
    header = [str(h or "").strip().lower() for h in rows[0]]
    columns: dict[str, int] = {}
    for field, names in HEADERS.items():
        for i, name in enumerate(header):
            if name in names:
                columns[field] = i
                break
    if "question" not in columns or "answer" not in columns:
        raise FaqFileError("第一行应为表头，至少包含“问题”和“答案”两列（可选“其他问法”“出处”）")
    if len(rows) - 1 > MAX_ROWS:
        raise FaqFileError(f"一次最多导入 {MAX_ROWS} 条问答对")
    out = []
    for number, row in enumerate(rows[1:], 2):
        cell: dict[str, str] = {f: str(row[i]).strip() if i < len(row) and row[i] is not None else ""
                                for f, i in columns.items()}
        if not any(cell.values()):
            continue
        if not cell["question"] or not cell["answer"]:
            raise FaqFileError(f"第 {number} 行缺少问题或答案")
        alternatives = [a.strip() for a in ALTERNATIVES_SPLIT.split(cell.get("alternatives", "")) if a.strip()]
        out.append(Faq(id=0, question=cell["question"], alternatives=alternatives, answer=cell["answer"],
                       source=cell.get("source", "")))
    return out


def _csv_rows(data: bytes) -> list[list[object]]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise FaqFileError("CSV 文件应为 UTF-8 或 GBK 编码")
    try:
        return [list(row) for row in csv.reader(io.StringIO(text))]
    except csv.Error as exc:
        raise FaqFileError(f"CSV 格式不正确：{exc}") from exc


def _xlsx_rows(data: bytes) -> list[list[object]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a file that is not a workbook
        raise FaqFileError("无法读取该 Excel 文件（应为 .xlsx 格式）") from exc
    sheet = book.worksheets[0]
    rows = []
    for row in sheet.iter_rows(values_only=True):
        rows.append(list(row))
        if len(rows) > MAX_ROWS + 1:
            break
    book.close()
    return rows


def export_rows(faqs: list[Faq]) -> list[list[str]]:
    return [EXPORT_HEADER] + [[f.question, "\n".join(f.alternatives), f.answer, f.source] for f in faqs]


def to_csv(faqs: list[Faq]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(export_rows(faqs))
    return ("\ufeff" + out.getvalue()).encode("utf-8")  # the BOM makes Excel read UTF-8


def to_xlsx(faqs: list[Faq]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "问答对"
    for row in export_rows(faqs):
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
