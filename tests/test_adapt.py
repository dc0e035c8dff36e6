import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from index.adapt import (
    AdaptError,
    AdaptSettings,
    _encoder,
    adapt,
    batches,
    compact,
    contrastive_loss,
    export_adapter,
    library_pairs,
    mine_negatives,
    question_pairs,
    select_pairs,
)
from index.bundled_model import (
    ADAPTER_FILE,
    ADAPTER_SHA256,
    BUNDLED_MODEL_NAME,
    BundledModelError,
    apply_adapter,
    file_sha256,
)
from index.chunk import chunk_document
from index.embed import load_embedder, resolve_model_path
from index.ingest import clean

TEXT = """关于加强村级组织建设的意见

一、总体要求
坚持党建引领，推动村级组织全面进步全面过硬。各地要把村级组织建设摆在突出位置，层层压实责任。

二、重点任务
（一）选优配强村党组织书记
实施“头雁工程”，从本村致富能手、外出务工经商人员中选拔村党组织书记。每个村储备后备力量不少于两名。
（二）推行“村情通”平台
依托“村情通”平台公开村务，方便群众监督。平台信息每月更新一次，群众可在手机上随时查看。
"""
TEXTS = ["村党组织书记从哪里选", "平台信息多久更新"]


@pytest.fixture(scope="module")
def doc():
    return clean(TEXT, doc_id="village")


@pytest.fixture(scope="module")
def chunks(doc):
    return chunk_document(doc, 60)


def test_library_pairs_of_every_kind_never_give_the_answer_away(doc, chunks):
    pairs = library_pairs([doc], chunks)
    assert {kind for kind, found in pairs.items() if found} == {"sentence", "heading", "phrase", "title"}
    headings = {p.query for p in pairs["heading"]}
    assert "选优配强村党组织书记" in headings  # the heading's words, without its number
    for p in pairs["heading"] + pairs["title"]:
        assert compact(p.query) not in compact(p.passage)
    for p in pairs["sentence"]:  # the inverse cloze task: the sentence is cut out of its passage
        assert compact(p.query) not in compact(p.passage)
        assert any(c.chunk_id == p.group for c in chunks)
    assert {p.query for p in pairs["phrase"]} == {"头雁工程", "村情通"}
    for p in pairs["phrase"]:
        assert p.query in p.passage


def test_a_question_pairs_with_the_passage_holding_its_gold_quote(chunks):
    questions = [{"id": "a", "q": "村里有啥平台能看村务", "gold": ["依托“村情通”平台 公开村务"]},
                 {"id": "b", "q": "今天天气如何", "gold": []}]
    pairs = question_pairs(questions, chunks)
    assert len(pairs) == 1
    assert pairs[0].query == "村里有啥平台能看村务"
    assert "依托“村情通”平台公开村务" in compact(pairs[0].passage)


CITY = """关于推进城市社区治理的通知

一、社区服务
社区要建设便民服务平台，居民可在线预约办理事项。服务平台每季度公开一次办理情况。
"""


def test_a_hard_negative_is_a_close_passage_of_the_same_document_without_the_answer(doc, chunks, models_dir):
    city = clean(CITY, doc_id="city")
    library = list(chunks) + chunk_document(city, 60)
    questions = [{"id": "a", "q": "村里有啥平台能看村务", "gold": ["依托“村情通”平台公开村务"]}]
    pairs = question_pairs(questions, library) + library_pairs([doc], chunks)["heading"]
    encode = _encoder(Path(resolve_model_path(BUNDLED_MODEL_NAME, models_dir)))
    mined = mine_negatives(pairs, library, encode, ("question",), 1, random.Random(0))
    question = mined[0]
    assert question.negative and question.negative.split("\n", 1)[1] in {c.text for c in chunks}  # its own document
    assert "依托“村情通”平台公开村务" not in compact(question.negative)  # never the answer
    by_text = {c.context_text(): c for c in library}
    village = [c for c in chunks if c.chunk_id != question.group]
    closest = max(village, key=lambda c: float(encode([c.context_text()], "passage")[0]
                                              @ encode([question.query], "query")[0]))
    assert by_text[question.negative].chunk_id == closest.chunk_id  # pool 1: the closest allowed passage
    assert all(not p.negative for p in mined[1:])  # headings were not asked for
    # what a pair must avoid is never its negative, however close
    avoided = replace(question, negative="", avoid=(compact(closest.text),))
    again = mine_negatives([avoided], library, encode, ("question",), 1, random.Random(0))[0]
    assert again.negative and by_text[again.negative].chunk_id not in (closest.chunk_id, question.group)


def test_a_hard_negative_near_the_anchor_costs_and_counts_only_as_a_passage():
    torch = pytest.importorskip("torch")
    settings = AdaptSettings(scale=20.0)
    passages = torch.eye(3, 8)[:2]
    anchors = passages.clone()
    far, near = torch.eye(3, 8)[2:], torch.nn.functional.normalize(passages[:1] + 0.3 * torch.eye(3, 8)[2:], dim=1)
    alone = contrastive_loss(anchors, passages, settings)
    assert contrastive_loss(anchors, torch.cat([passages, far]), settings, 2) < \
        contrastive_loss(anchors, torch.cat([passages, near]), settings, 2)  # a close sibling is the hard one
    assert float(contrastive_loss(anchors, torch.cat([passages, far]), settings, 2)) >= float(alone)


def test_no_batch_repeats_a_passage_or_an_anchor(doc, chunks):
    rng = random.Random(1)
    by_kind = library_pairs([doc], chunks)
    chosen = select_pairs(by_kind, [], AdaptSettings(max_pairs=40), rng)
    assert 0 < len(chosen) <= 40
    for batch in batches(chosen, 4, rng):
        assert len({p.group for p in batch}) == len(batch)
        assert len({p.query for p in batch}) == len(batch)


@pytest.fixture(scope="module")
def adapted(doc, models_dir, tmp_path_factory):
    base = resolve_model_path(BUNDLED_MODEL_NAME, models_dir)
    settings = AdaptSettings(max_pairs=12, batch_size=3, max_seq_length=48, learning_rate=1e-4)
    return adapt([doc], [], Path(base), tmp_path_factory.mktemp("adapted"), settings, target_chars=60,
                 export_onnx=False, negatives=["今天天气怎么样", "附近有什么好吃的"])


def test_adapt_saves_a_loadable_model_with_other_vectors(adapted, models_dir):
    result = adapted
    assert json.loads((result.folder / "adapt.json").read_text(encoding="utf-8"))["negatives"] == 2
    assert result.steps >= 4 and 10 <= sum(result.pairs.values()) <= 12  # 3 passages: batches of at most 3
    assert (result.folder / "adapt.json").exists() and result.folder.name.startswith("multilingual-e5-small-adapted-")
    adapted_model = load_embedder(str(result.folder), result.folder.parent)
    original = load_embedder(BUNDLED_MODEL_NAME, models_dir)
    assert adapted_model.name != original.name  # the cache key and the index manifest tell them apart
    new, old = adapted_model.encode_queries(TEXTS), original.encode_queries(TEXTS)
    assert np.allclose(np.linalg.norm(new, axis=1), 1, atol=1e-4)
    cosine = (new * old).sum(axis=1)
    assert np.all(cosine < 0.99999) and np.all(cosine > 0.9)


def test_an_exported_adapter_rebuilds_the_adapted_model(adapted, models_dir, tmp_path):
    base = Path(resolve_model_path(BUNDLED_MODEL_NAME, models_dir))
    want = load_embedder(str(adapted.folder), tmp_path).encode_queries(TEXTS)
    before = load_embedder(str(base), tmp_path).encode_queries(TEXTS)
    whole = export_adapter(base, adapted.folder, tmp_path / "whole.safetensors", rank=200)  # no matrix factorised
    assert whole["share_kept"] == 1.0
    rebuilt = apply_adapter(base, tmp_path / "whole.safetensors", tmp_path / "whole",
                            file_sha256(tmp_path / "whole.safetensors"))
    stamp = (rebuilt / "model.safetensors").stat().st_mtime_ns
    assert apply_adapter(base, tmp_path / "whole.safetensors", tmp_path / "whole") == rebuilt
    assert (rebuilt / "model.safetensors").stat().st_mtime_ns == stamp  # added once
    assert np.all((load_embedder(str(rebuilt), tmp_path).encode_queries(TEXTS) * want).sum(axis=1) > 0.99999)
    low = export_adapter(base, adapted.folder, tmp_path / "low.safetensors", rank=16)
    assert low["bytes"] < whole["bytes"] / 4 and 0 < low["share_kept"] < 1
    new = load_embedder(str(apply_adapter(base, tmp_path / "low.safetensors", tmp_path / "low")), tmp_path)
    missed, change = 1 - (new.encode_queries(TEXTS) * want).sum(axis=1), 1 - (before * want).sum(axis=1)
    assert np.all(missed < change / 2)  # the low-rank change carries most of the training's effect
    with pytest.raises(AdaptError, match="nothing to export"):
        export_adapter(base, base, tmp_path / "none.safetensors")


def test_a_wrong_or_foreign_adapter_is_refused(models_dir, tmp_path):
    from safetensors.numpy import save_file

    base = Path(resolve_model_path(BUNDLED_MODEL_NAME, models_dir))
    save_file({"no.such.weight.d": np.zeros(3, dtype=np.float16)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(BundledModelError, match="does not have"):
        apply_adapter(base, tmp_path / "foreign.safetensors", tmp_path / "x")
    with pytest.raises(BundledModelError, match="not the one this version ships"):
        apply_adapter(base, tmp_path / "foreign.safetensors", tmp_path / "x", sha256="0" * 64)
    with pytest.raises(BundledModelError, match="cannot read"):
        apply_adapter(base, tmp_path / "missing.safetensors", tmp_path / "x")
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".adapter-*"))


def test_the_shipped_adapter_is_the_one_its_name_stands_for():
    assert file_sha256(ADAPTER_FILE) == ADAPTER_SHA256  # a new adapter file needs a new ADAPTED_MODEL_NAME


def test_the_loss_keeps_out_of_scope_questions_away_from_every_passage():
    torch = pytest.importorskip("torch")
    settings = AdaptSettings(scale=20.0)
    passages = torch.eye(3, 8)[:2]  # two passages, their anchors on them exactly
    anchors = passages.clone()
    far = torch.eye(3, 8)[2:]  # chatter unlike either passage
    near = torch.nn.functional.normalize(passages[:1] + 0.1 * far, dim=1).requires_grad_(True)
    alone = contrastive_loss(anchors, passages, settings)
    with_far = contrastive_loss(torch.cat([anchors, far]), passages, settings)
    with_near = contrastive_loss(torch.cat([anchors, near]), passages, settings)
    assert with_near > with_far >= alone  # chatter near a passage costs; chatter far from all costs little
    assert float(contrastive_loss(torch.cat([anchors, near]), passages, AdaptSettings(negative_weight=0))) == \
        pytest.approx(float(alone))  # weight 0: the plain one-way in-batch loss
    with_near.backward()  # a step down the gradient moves the chatter away from the passage
    moved = torch.nn.functional.normalize(near.detach() - 0.1 * near.grad, dim=1)
    assert float(moved @ passages[0]) < float(near.detach() @ passages[0])


def test_the_chatter_trained_against_is_not_the_chatter_that_calibrates():
    from index.adapt import CHATTER_FILE
    from index.calibration import everyday_questions

    chatter, everyday = everyday_questions(CHATTER_FILE), everyday_questions()
    assert len(chatter) >= 400 and len(set(chatter)) == len(chatter)
    assert not set(chatter) & set(everyday)  # the noise floor is measured on questions training never saw
