"""ONNX Runtime back end: the sentence-transformers model exported once to ONNX (mean pooling and L2
normalisation inside the graph; the last layer's token vectors a second output, for index.token_match),
its attention, layer norms and GELUs fused into onnxruntime's transformer operators, and quantised to int8
weights, in the instance folder.

On these 2 cores it embeds a query in about 4.5 ms against about 15 ms with torch, with the same
retrieval figures on ../shared/eval (see CHANGES.md). With the fused operators, index builds embed passages
about a quarter faster and sentences a fifth faster than with the plain export (the 53 government work
reports: full build 355 → 320 s); a query gains little (4.6 → 4.5 ms).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from index.bundled_model import atomic_folder
from index.token_match import TokenVectors, unit_rows

ONNX_FILE = "model-int8-tokens.onnx"  # the name changes with the graph's outputs: an older export is redone
MAX_TOKENS = 512
PASSAGE_BATCH = 8  # 400 passages / 1,200 sentences: 8.9 s / 7.0 s at 8, 9.5 / 7.3 at 16, 11.8 / 7.0 at 32


class OnnxExportError(RuntimeError):
    pass


def export_int8(model_folder: Path, target: Path) -> Path:
    """Export ``model_folder`` (a sentence-transformers folder) to ``target`` once, atomically."""
    if (target / ONNX_FILE).exists():
        return target
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(str(model_folder))
    # eager attention exports the plain softmax(QKᵀ)V graph that onnxruntime fuses into one Attention op
    model = AutoModel.from_pretrained(str(model_folder), dtype=torch.float32, attn_implementation="eager").eval()

    class Pooled(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1), hidden

    with atomic_folder(target, ".onnx-") as work:
        ids = torch.tensor([[0, 6, 5, 2], [0, 6, 5, 2]])
        torch.onnx.export(
            Pooled(model), (ids, torch.ones_like(ids)), str(work / "model.onnx"),
            input_names=["input_ids", "attention_mask"], output_names=["embedding", "tokens"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                          "embedding": {0: "batch"}, "tokens": {0: "batch", 1: "tokens"}},
            opset_version=17, dynamo=False,
        )
        fused = optimize_model(str(work / "model.onnx"), model_type="bert", opt_level=1,
                               num_heads=config.num_attention_heads, hidden_size=config.hidden_size)
        fused.save_model_to_file(str(work / "model-fused.onnx"))
        # the fused operators carry no type information for the quantiser's shape inference: say it
        quantize_dynamic(str(work / "model-fused.onnx"), str(work / ONNX_FILE), weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        (work / "model.onnx").unlink()
        (work / "model-fused.onnx").unlink()
        shutil.copyfile(model_folder / "tokenizer.json", work / "tokenizer.json")
        prompts = {}
        st_config = model_folder / "config_sentence_transformers.json"
        if st_config.exists():
            prompts = json.loads(st_config.read_text(encoding="utf-8")).get("prompts", {})
        (work / "prompts.json").write_text(json.dumps(prompts, ensure_ascii=False), encoding="utf-8")
    return target


class OnnxEmbedder:
    """Embeds with onnxruntime (int8), same vectors' geometry as the torch model (cosine ≈ 0.99)."""

    def __init__(self, name: str, folder: Path, threads: int = 0) -> None:
        """``threads`` 0: onnxruntime's default, one per core."""
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(0, threads)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        prompts = json.loads((folder / "prompts.json").read_text(encoding="utf-8"))
        self.query_prefix = prompts.get("query") or ""
        self.passage_prefix = prompts.get("passage") or prompts.get("document") or ""
        # how many tokens each prefix takes at the start of a text ("query: " with the "▁" before the text)
        self.prefix_tokens = {p: len(self.tokenizer.encode(p, add_special_tokens=False).ids) if p else 0
                              for p in ("", self.query_prefix, self.passage_prefix)}
        self.name = name
        self.dimension = int(self._run(["x"]).shape[1])

    def _run(self, texts: list[str], prefix_tokens: int = 0,
             tokens: list[TokenVectors] | None = None) -> np.ndarray:
        """The pooled vectors of ``texts``; with ``tokens``, also each text's token vectors appended to it
        (without the first ``prefix_tokens`` after <s>, nor <s> and </s>)."""
        encoded = self.tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encoded)
        ids = np.ones((len(texts), width), dtype=np.int64)  # 1 = <pad>
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, e in enumerate(encoded):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        pooled, hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
        if tokens is not None:
            for row, e in enumerate(encoded):
                keep = slice(1 + prefix_tokens, max(len(e.ids) - 1, 1 + prefix_tokens))
                tokens.append(TokenVectors(ids[row, keep].copy(), unit_rows(np.asarray(hidden[row, keep]))))
        return np.asarray(pooled, dtype=np.float32)

    def _encode(self, texts: list[str], prefix: str, batch_size: int,
                tokens: list[TokenVectors] | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # sort by length so a batch pads little; restore the order after
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        found: dict[int, TokenVectors] = {}
        skip = self.prefix_tokens[prefix]
        for start in range(0, len(order), batch_size):
            part = order[start:start + batch_size]
            batch: list[TokenVectors] | None = [] if tokens is not None else None
            out[part] = self._run([prefix + texts[i] for i in part], skip, batch)
            if batch is not None:
                found.update(zip(part, batch, strict=True))
        if tokens is not None:
            tokens.extend(found[i] for i in range(len(texts)))
        return out

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, self.query_prefix, 16)

    def token_spans(self, texts: list[str]) -> list[np.ndarray]:
        """For passage texts, each token vector's (start, end) characters in the text, as
        ``encode_passages_with_tokens`` gives the vectors (no prefix or special tokens; (0, 0) for none)."""
        skip, shift = self.prefix_tokens[self.passage_prefix], len(self.passage_prefix)
        spans = []
        for e in self.tokenizer.encode_batch([self.passage_prefix + t for t in texts]):
            kept = e.offsets[1 + skip:max(len(e.ids) - 1, 1 + skip)]
            spans.append(np.maximum(np.array(kept, dtype=np.int64).reshape(-1, 2) - shift, 0))
        return spans

    def encode_passages(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return self._encode(texts, self.passage_prefix, min(batch_size, PASSAGE_BATCH))

    def encode_queries_with_tokens(self, texts: list[str]) -> tuple[np.ndarray, list[TokenVectors]]:
        tokens: list[TokenVectors] = []
        return self._encode(texts, self.query_prefix, 16, tokens), tokens

    def encode_passages_with_tokens(self, texts: list[str],
                                    batch_size: int = 32) -> tuple[np.ndarray, list[TokenVectors]]:
        tokens: list[TokenVectors] = []
        return self._encode(texts, self.passage_prefix, min(batch_size, PASSAGE_BATCH), tokens), tokens
