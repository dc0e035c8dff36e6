import json
import re

import pytest

from index.chunk import HEADER_SECTION, chunk_document, split_sentences
from index.ingest import FOOTER_SECTION, clean, load_file
from tests.conftest import SHARED, SPEECH


@pytest.fixture(scope="module")
def speech():
    return load_file(SPEECH)


@pytest.mark.parametrize("target", [80, 160, 300])
def test_chunks_never_cut_a_sentence(speech, target):
    sentence_lengths = {}
    for para in speech.paragraphs:
        for s, e in split_sentences(para.text):
            for i in range(para.start + s, para.start + e):
                sentence_lengths[i] = e - s
    for chunk in chunk_document(speech, target):
        assert speech.text[chunk.start:chunk.end].strip() == chunk.text
        # a chunk ends where a sentence or paragraph ends; only an overlong sentence is cut at a clause
        ends_sentence = chunk.text[-1] in "。！？；”" or speech.text[chunk.end:chunk.end + 1] in ("\n", "")
        cut_long = chunk.text[-1] in "，、：" and sentence_lengths[chunk.end - 1] > 2 * target
        assert ends_sentence or cut_long, chunk.text[-15:]


def test_chunk_length_follows_the_target(speech):
    chunks = chunk_document(speech, 160)
    body = [c for c in chunks if c.section and c.section[0] not in (HEADER_SECTION, FOOTER_SECTION)]
    lengths = [len(c.text) for c in body]
    assert max(lengths) <= 2 * 160 + 40
    assert sum(lengths) / len(lengths) > 80


def test_chunks_carry_document_and_section(speech):
    chunks = chunk_document(speech, 160)
    assert chunks[0].section == (HEADER_SECTION,)
    assert "陈玲玲" in chunks[0].text
    assert chunks[-1].section == (FOOTER_SECTION,)
    assert all(c.doc_id == speech.doc_id and c.title == speech.title for c in chunks)
    assert len({c.chunk_id for c in chunks}) == len(chunks)
    talent = next(c for c in chunks if "海燕归巢" in c.text)
    assert talent.section[0].startswith("三、") and talent.section[1].startswith("第四，")
    assert talent.context_text().startswith(speech.title)


def test_every_gold_quote_of_the_dev_set_survives_chunking(speech):
    chunks = [re.sub(r"\s", "", c.text) for c in chunk_document(speech)]
    for line in (SHARED / "eval" / "dev.jsonl").read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        for quote in q["gold"]:
            assert any(re.sub(r"\s", "", quote) in c for c in chunks), (q["id"], quote)


def test_an_overlong_sentence_is_cut_at_clauses():
    sentence = "，".join(["各级党组织要切实担负起管党治党的政治责任"] * 30) + "。"
    doc = clean(f"标题\n\n{sentence}\n", doc_id="long")
    chunks = chunk_document(doc, 100)
    assert len(chunks) > 3
    assert all(len(c.text) <= 220 for c in chunks)
    assert "".join(c.text for c in chunks if c.section != (HEADER_SECTION,)) == sentence


def test_a_passage_closes_where_a_new_paragraph_begins():
    """Once a passage holds half the target, a new paragraph opens the next one; a short paragraph still
    joins its neighbour."""
    first = "各级党组织要切实担负起管党治党的政治责任，把全面从严治党落到实处。" * 3
    second = "今年发展主要预期目标是：国内生产总值增长5.5%左右；城镇新增就业1100万人以上，城镇调查失业率全年控制在5.5%以内。"
    tiny = "要抓好落实。"
    doc = clean(f"标题\n\n{first}\n\n{second}\n\n{tiny}\n", doc_id="paras")
    texts = [c.text for c in chunk_document(doc, 160) if c.section != (HEADER_SECTION,)]
    assert [t.replace("\n", "") for t in texts] == [first, second + tiny]


def test_split_sentences_keeps_closing_quotes():
    text = "要突出“实干实绩”。坚持“凡提四必。”然后呢？好"
    parts = [text[s:e] for s, e in split_sentences(text)]
    assert parts == ["要突出“实干实绩”。", "坚持“凡提四必。”", "然后呢？", "好"]
