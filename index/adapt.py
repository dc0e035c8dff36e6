"""Adapt the dense model to the library: contrastive fine-tuning on pairs the documents provide.

Members paraphrase, and only the dense side can see paraphrase. ``adapt()`` fine-tunes the bundled
multilingual-e5-small with in-batch negatives (``contrastive_loss``, e5's ``query: ``/``passage: `` prefixes)
on pairs taken from the library itself:

- ``heading``: a section heading -> the body under it (the passage without its title/section line);
- ``title``: a document title -> one of its passages (body only);
- ``sentence``: a sentence -> its passage with that sentence removed (the inverse cloze task);
- ``phrase``: a term the document coins in quotation marks -> the passage that uses it;
- ``question``: a tuning question with gold quotes -> the passage containing a quote.

No two pairs of one passage (or one anchor text) share a batch, so an in-batch negative is never a
positive in disguise. Chatter (``index/chatter.txt`` by default) joins each batch as anchors no passage may
prefer to its own: trained on the library's pairs alone, the model draws every question nearer
the documents, chatter included. The result is saved as a sentence-transformers folder named by a hash of its
weights (so the embedding cache and the index manifest, both keyed by the model's name, never mix two
trainings) and exported to int8 ONNX like the default back end. Select it with FLASK_EMBED_MODEL=<folder>.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from index.bundled_model import atomic_folder
from index.chunk import HEADER_SECTION, Chunk, chunk_document, split_sentences
from index.ingest import FOOTER_SECTION, Document
from index.tokenize import COINED_TERM

PAIR_KINDS = ("question", "sentence", "heading", "phrase", "title")
# Shares of the library pairs (everything the questions leave of the budget), by kind.
DEFAULT_MIX = {"sentence": 0.45, "heading": 0.2, "phrase": 0.2, "title": 0.15}
ADAPT_FILE = "adapt.json"
# Chatter the adaptation keeps away from the documents (``contrastive_loss``); kept apart from
# index/everyday.txt, which calibrates the noise floor of whatever model serves.
CHATTER_FILE = Path(__file__).resolve().parent / "chatter.txt"
ENUMERATOR = re.compile(r"^(第[一二三四五六七八九十百零〇两\d]+[编部分章节条，,、：:]?|[一二三四五六七八九十]+、"
                        r"|[（(][一二三四五六七八九十\d]+[）)]|\d{1,2}[．.、])\s*")
SENTENCE_CHARS = (12, 120)  # an inverse-cloze query: a real sentence, not a fragment or a paragraph
LAYER = re.compile(r"\.encoder\.layer\.(\d+)\.")
FIT_AFTER_STEPS = 3
POSITIVE_CHARS = 220  # about 128 XLM-R tokens of Chinese: a question's gold must fall inside the window

Progress = Callable[[int, int, float], None]  # (step, steps, loss)


class AdaptError(RuntimeError):
    """Fine-tuning cannot run (no pairs, a bad setting)."""


@dataclass(frozen=True)
class Pair:
    query: str  # without the model's prefix
    passage: str
    kind: str
    group: str  # the passage it comes from: no two pairs of a group share a batch
    avoid: tuple[str, ...] = ()  # compacted texts a hard negative must not contain (the gold, the sentence)
    negative: str = ""  # another passage of the same document close to the query (``mine_negatives``)


@dataclass
class AdaptSettings:
    max_pairs: int = 2048
    batch_size: int = 32
    max_seq_length: int = 128
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    scale: float = 50.0  # 1/temperature of the in-batch softmax; e5 was trained at 0.01, ST's default is 20
    freeze_embeddings: bool = True  # the 250k-word table: 80 % of the weights, moves little in minutes, slows Adam
    train_layers: int | None = None  # train only the top n encoder layers (None: all); the rest is frozen
    max_minutes: float = 10.0  # training stops (and saves) when the wall-clock budget runs out
    # out-of-scope questions per batch: each passage must prefer its own anchor to every one of them
    negatives_per_batch: int = 16
    negative_weight: float = 1.0
    # pair kinds that also get a hard negative: a passage of the same document close to the query, which
    # the query must rank below its own (in-batch negatives are mostly other documents' passages: easy)
    hard_negatives: tuple[str, ...] = ()
    hard_negative_pool: int = 3  # the negative is drawn from this many closest allowed passages
    seed: int = 0
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))


@dataclass
class AdaptResult:
    folder: Path
    onnx_folder: Path | None
    pairs: dict[str, int]
    steps: int
    seconds: float
    first_loss: float
    last_loss: float
    stopped_early: bool


# ----------------------------------------------------------------------------------- pairs


def compact(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _head(chunk: Chunk) -> str:
    return chunk.context_text().split("\n", 1)[0]


def heading_label(section: Sequence[str]) -> str | None:
    """The innermost heading of a section path that says something beyond its number (第一条 says nothing)."""
    for label in reversed(section):
        if label in (HEADER_SECTION, FOOTER_SECTION) or label.endswith("…"):
            continue
        words = ENUMERATOR.sub("", label).strip()
        if len(words) >= 4:
            return words
    return None


def library_pairs(documents: Iterable[Document], chunks: Sequence[Chunk]) -> dict[str, list[Pair]]:
    """Every pair the documents themselves provide, by kind (see the module docstring)."""
    titles = {d.doc_id: d.title for d in documents}
    body = [c for c in chunks if c.section[:1] not in ((HEADER_SECTION,), (FOOTER_SECTION,))]
    pairs: dict[str, list[Pair]] = {kind: [] for kind in DEFAULT_MIX}
    seen_headings: set[tuple[str, str]] = set()
    term_chunks: dict[str, list[Chunk]] = {}
    for c in body:
        label = heading_label(c.section)
        if label and (c.doc_id, label) not in seen_headings and compact(label) not in compact(c.text):
            seen_headings.add((c.doc_id, label))  # the first passage under a heading is the one it heads
            pairs["heading"].append(Pair(label, c.text, "heading", c.chunk_id))
        title = titles.get(c.doc_id) or c.title
        if title and compact(title) not in compact(c.text):
            pairs["title"].append(Pair(title, c.text, "title", c.chunk_id))
        spans = [(s, e) for s, e in split_sentences(c.text) if c.text[s:e].strip()]
        if len(spans) >= 2:
            for s, e in spans:
                sentence = c.text[s:e].strip()
                if SENTENCE_CHARS[0] <= len(sentence) <= SENTENCE_CHARS[1]:
                    rest = (c.text[:s] + c.text[e:]).strip()
                    pairs["sentence"].append(Pair(sentence, f"{_head(c)}\n{rest}", "sentence", c.chunk_id,
                                                  (compact(sentence),)))
        for m in COINED_TERM.finditer(c.text):
            term_chunks.setdefault(m.group(1), []).append(c)
    for term, found in sorted(term_chunks.items()):
        if len({c.chunk_id for c in found}) <= 3:  # a term used everywhere names no passage
            pairs["phrase"].append(Pair(term, found[0].context_text(), "phrase", found[0].chunk_id))
    return pairs


def question_pairs(questions: Iterable[dict], chunks: Sequence[Chunk], per_question: int = 2) -> list[Pair]:
    """A tuning question -> each passage (up to ``per_question``) that contains one of its gold quotes."""
    compacted = [compact(c.text) for c in chunks]
    pairs = []
    for q in questions:
        found: list[tuple[Chunk, str]] = []
        for quote in q.get("gold") or []:
            gold = compact(quote)
            for c, text in zip(chunks, compacted, strict=True):
                if gold and gold in text and all(c.chunk_id != f.chunk_id for f, _ in found):
                    found.append((c, quote))
                    break
        for c, quote in found[:per_question]:
            avoid = tuple(compact(g) for g in q.get("gold") or [] if compact(g))
            pairs.append(Pair(q["q"], _window(c, quote), "question", c.chunk_id, avoid))
    return pairs


def _window(chunk: Chunk, quote: str) -> str:
    """The passage as indexed, or, when the quote lies past what training reads, from a sentence near it."""
    text = chunk.text
    at = compact(text).find(compact(quote))
    # offsets in ``text`` of the quote's end (compact offsets lag by the white space before them)
    end = at + len(compact(quote))
    pos, seen = 0, 0
    while pos < len(text) and seen < end:
        seen += not text[pos].isspace()
        pos += 1
    if len(_head(chunk)) + pos <= POSITIVE_CHARS:
        return chunk.context_text()
    start = 0
    for s, _e in split_sentences(text):
        if pos - s <= POSITIVE_CHARS - len(_head(chunk)):
            start = s
            break
    return f"{_head(chunk)}\n{text[start:].strip()}"


def select_pairs(by_kind: dict[str, list[Pair]], questions: list[Pair], settings: AdaptSettings,
                 rng: random.Random) -> list[Pair]:
    """All question pairs (up to half the budget), the rest of ``max_pairs`` shared out by ``mix``."""
    chosen = list(questions[: settings.max_pairs // 2])
    room = settings.max_pairs - len(chosen)
    pools = {k: rng.sample(v, len(v)) for k, v in by_kind.items() if v and settings.mix.get(k, 0) > 0}
    quota = _shares(room, {k: settings.mix[k] for k in pools}, {k: len(v) for k, v in pools.items()})
    for kind, n in quota.items():
        chosen += pools[kind][:n]
    return chosen


def _shares(room: int, weights: dict[str, float], available: dict[str, int]) -> dict[str, int]:
    """Split ``room`` by ``weights``; what a kind cannot fill goes to the others."""
    quota = {k: 0 for k in weights}
    while room > 0:
        open_kinds = [k for k in sorted(weights) if quota[k] < available[k]]
        if not open_kinds:
            break
        total = sum(weights[k] for k in open_kinds)
        wanted = {k: math.floor(room * weights[k] / total) for k in open_kinds}
        if not any(wanted.values()):  # a few left over: one each, in order
            wanted = {k: 1 for k in open_kinds[:room]}
        for k, n in wanted.items():
            n = min(n, available[k] - quota[k], room)
            quota[k] += n
            room -= n
    return quota


def batches(pairs: Sequence[Pair], size: int, rng: random.Random) -> list[list[Pair]]:
    """Shuffled batches in which no passage group and no anchor text appears twice."""
    pending = rng.sample(list(pairs), len(pairs))
    out: list[list[Pair]] = []
    while pending:
        batch: list[Pair] = []
        groups: set[str] = set()
        anchors: set[str] = set()
        rest: list[Pair] = []
        for p in pending:
            if len(batch) < size and p.group not in groups and p.query not in anchors:
                batch.append(p)
                groups.add(p.group)
                anchors.add(p.query)
            else:
                rest.append(p)
        if len(batch) < 2:  # a lone pair has no negative to learn from
            break
        out.append(batch)
        pending = rest
    return out


def mine_negatives(pairs: Sequence[Pair], chunks: Sequence[Chunk], encode: Callable[[list[str], str], np.ndarray],
                   kinds: Sequence[str], pool: int, rng: random.Random) -> list[Pair]:
    """Give each pair of ``kinds`` a hard negative: one of the ``pool`` passages of its own document closest
    to its query (by ``encode``, unit vectors), never its own passage nor one containing what it ``avoid``s."""
    wanted = [i for i, p in enumerate(pairs) if p.kind in kinds]
    by_id = {c.chunk_id: c for c in chunks}
    if not wanted or not pool:
        return list(pairs)
    passages = encode([c.context_text() for c in chunks], "passage")
    queries = encode([pairs[i].query for i in wanted], "query")
    compacted = [compact(c.context_text()) for c in chunks]
    documents = np.array([c.doc_id for c in chunks])
    out = list(pairs)
    for i, vector in zip(wanted, queries, strict=True):
        pair = pairs[i]
        own = by_id.get(pair.group)
        if own is None:
            continue
        scores = np.where(documents == own.doc_id, passages @ vector, -np.inf)
        allowed = [j for j in np.argsort(-scores)
                   if np.isfinite(scores[j]) and chunks[j].chunk_id != pair.group
                   and not any(a in compacted[j] for a in pair.avoid)][:pool]
        if allowed:
            out[i] = replace(pair, negative=chunks[rng.choice(allowed)].context_text())
    return out


def load_question_files(paths: Iterable[Path]) -> list[dict]:
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    return rows


# -------------------------------------------------------------------------------- training


def train(base: Path, batch_list: list[list[Pair]], settings: AdaptSettings,
          progress: Progress | None = None, negatives: Sequence[str] = ()):  # -> SentenceTransformer
    """Fine-tune the sentence-transformers model at ``base``; returns (model, steps, losses, stopped_early).

    The loss is in-batch contrastive both ways: each anchor must pick its passage among the batch's
    passages, and each passage its anchor among the batch's anchors and ``negatives_per_batch``
    out-of-scope questions (``negatives``: everyday chatter the documents never answer). Without the
    second half, training on the library's own pairs pulls every question nearer the documents, chatter
    too, and the answer decision can no longer tell chatter from a question about the documents."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    model = SentenceTransformer(str(base), device="cpu")
    model.max_seq_length = settings.max_seq_length
    _freeze(model, settings)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for n, p in model.named_parameters() if p.requires_grad and not _no_decay(n)]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and _no_decay(n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=settings.learning_rate)
    plan = [len(batch_list)]  # steps; shortened once the first steps show what fits in the time budget
    warmup = max(1, int(plan[0] * settings.warmup_ratio))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (plan[0] - step) / max(1, plan[0] - warmup))))
    prompts = model.prompts
    query_prefix = prompts.get("query") or "query: "
    passage_prefix = prompts.get("passage") or "passage: "
    budget = settings.max_minutes * 60
    started = time.monotonic()
    losses: list[float] = []
    stopped_early = False
    model.train()
    for step, batch in enumerate(batch_list):
        elapsed = time.monotonic() - started
        if step == FIT_AFTER_STEPS:  # the learning rate still decays to zero in the steps that fit
            plan[0] = min(plan[0], step + int((budget - elapsed) / (elapsed / step)))
        if step >= plan[0]:
            break
        if elapsed > budget:
            stopped_early = True
            break
        others = rng.sample(list(negatives), min(settings.negatives_per_batch, len(negatives)))
        anchors = model(model.preprocess([query_prefix + t for t in [p.query for p in batch] + others]))
        texts = [p.passage for p in batch] + [p.negative for p in batch if p.negative]
        passages = model(model.preprocess([passage_prefix + t for t in texts]))
        loss = contrastive_loss(anchors["sentence_embedding"], passages["sentence_embedding"], settings, len(batch))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
        if progress:
            progress(step + 1, plan[0], losses[-1])
    model.eval()
    model.max_seq_length = 512
    return model, len(losses), losses, stopped_early


def contrastive_loss(anchors, passages, settings: AdaptSettings, n: int | None = None):
    """In-batch softmax loss: anchor i -> passage i among all the passages (the ``n`` positives, then the
    hard negatives), and passage i -> anchor i among all anchors, the out-of-scope questions after the
    batch's anchors included. Vectors are unit length."""
    import torch

    n = passages.shape[0] if n is None else n
    target = torch.arange(n)
    forward = torch.nn.functional.cross_entropy(settings.scale * anchors[:n] @ passages.T, target)
    if anchors.shape[0] == n or settings.negative_weight == 0:
        return forward
    backward = torch.nn.functional.cross_entropy(settings.scale * passages[:n] @ anchors.T, target)
    return forward + settings.negative_weight * backward


def _encoder(base: Path) -> Callable[[list[str], str], np.ndarray]:
    """Unit vectors from the model at ``base`` before training, with e5's query/passage prefixes."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(base), device="cpu")
    prefixes = {"query": model.prompts.get("query") or "query: ",
                "passage": model.prompts.get("passage") or "passage: "}

    def encode(texts: list[str], kind: str) -> np.ndarray:
        return model.encode([prefixes[kind] + t for t in texts], batch_size=32, normalize_embeddings=True,
                            convert_to_numpy=True)

    return encode


def _freeze(model, settings: AdaptSettings) -> None:
    """Freeze the word table and, with ``train_layers``, all embeddings and the lower layers too (then the
    backward pass stops at the first trained layer: fewer layers train faster)."""
    layers = sorted({int(m.group(1)) for n, _ in model.named_parameters() if (m := LAYER.search(n))})
    frozen = set(layers[: max(0, len(layers) - settings.train_layers)]) if settings.train_layers is not None else set()
    for name, parameter in model.named_parameters():
        m = LAYER.search(name)
        if (settings.freeze_embeddings and name.endswith("embeddings.word_embeddings.weight")
                or frozen and ".embeddings." in name or m and int(m.group(1)) in frozen):
            parameter.requires_grad_(False)


def _no_decay(name: str) -> bool:
    return name.endswith(".bias") or "LayerNorm" in name


def _weights_digest(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def adapt(documents: Sequence[Document], questions: Sequence[dict], base: Path, models_dir: Path,
          settings: AdaptSettings | None = None, *, target_chars: int | None = None,
          export_onnx: bool = True, progress: Progress | None = None,
          negatives: Sequence[str] = ()) -> AdaptResult:
    """Build pairs from ``documents`` (+ ``questions`` with gold quotes), fine-tune ``base`` (keeping the
    out-of-scope ``negatives`` away from every passage), save it in ``models_dir`` and (by default) export
    it to int8 ONNX beside it."""
    settings = settings or AdaptSettings()
    if settings.batch_size < 2:
        raise AdaptError("batch_size must be at least 2: in-batch negatives need company")
    rng = random.Random(settings.seed)
    chunks = [c for d in documents for c in (chunk_document(d, target_chars) if target_chars
                                              else chunk_document(d))]
    answerable = [q for q in questions if q.get("gold")]
    selected = select_pairs(library_pairs(documents, chunks), question_pairs(answerable, chunks), settings, rng)
    if settings.hard_negatives:
        selected = mine_negatives(selected, chunks, _encoder(base), settings.hard_negatives,
                                  settings.hard_negative_pool, rng)
    batch_list = batches(selected, settings.batch_size, rng)
    if not batch_list:
        raise AdaptError("no training pairs: the library has no passages with headings, sentences or quoted terms")
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    started = time.monotonic()
    model, steps, losses, stopped_early = train(base, batch_list, settings, progress, negatives)
    seconds = time.monotonic() - started
    used = [p for b in batch_list[:steps] for p in b]
    counts = {kind: sum(1 for p in used if p.kind == kind) for kind in PAIR_KINDS}
    folder = models_dir / f"{base.name}-adapted-{_weights_digest(model)[:12]}"
    if not (folder / ADAPT_FILE).exists():
        with atomic_folder(folder, ".adapt-") as work:
            model.save(str(work))
            (work / ADAPT_FILE).write_text(json.dumps({
                "base": str(base), "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "settings": asdict(settings), "pairs": counts, "steps": steps, "planned_steps": len(batch_list),
                "seconds": round(seconds, 1), "stopped_early": stopped_early, "documents": len(documents),
                "questions": len(answerable), "negatives": len(negatives),
                "loss": {"first": losses[:5], "last": losses[-5:]},
            }, ensure_ascii=False, indent=1), encoding="utf-8")
    onnx_folder = None
    if export_onnx:
        from index.embed import ONNX_SUFFIX
        from index.onnx_model import export_int8

        onnx_folder = export_int8(folder, models_dir / (folder.name + ONNX_SUFFIX))
    return AdaptResult(folder=folder, onnx_folder=onnx_folder, pairs=counts, steps=steps, seconds=seconds,
                       first_loss=sum(losses[:5]) / max(1, len(losses[:5])),
                       last_loss=sum(losses[-5:]) / max(1, len(losses[-5:])), stopped_early=stopped_early)


def export_adapter(base: Path, adapted: Path, out: Path, rank: int = 32) -> dict:
    """Write the change from the model at ``base`` to the one at ``adapted`` as an adapter file
    (``index.bundled_model.apply_adapter`` adds it back): each changed matrix as its best rank-``rank``
    factors ``a @ b`` (fp16), every other changed weight as it is. Returns what it kept of the change."""
    from safetensors.numpy import load_file, save_file

    before = load_file(str(base / "model.safetensors"))
    after = load_file(str(adapted / "model.safetensors"))
    changes: dict[str, np.ndarray] = {}
    kept, total = 0.0, 0.0
    for name, weight in sorted(after.items()):
        change = weight.astype(np.float32) - before[name].astype(np.float32)
        if not change.any():
            continue
        norm = float(np.square(change).sum())
        total += norm
        if change.ndim == 2 and min(change.shape) > 2 * rank:
            u, singular, vt = np.linalg.svd(change, full_matrices=False)
            changes[f"{name}.a"] = (u[:, :rank] * singular[:rank]).astype(np.float16)
            changes[f"{name}.b"] = vt[:rank].astype(np.float16)
            kept += float(np.square(singular[:rank]).sum())
        else:
            changes[f"{name}.d"] = change.astype(np.float16)
            kept += norm
    if not changes:
        raise AdaptError(f"{adapted} has the same weights as {base}: nothing to export")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(changes, str(out), metadata={"base": base.name, "adapted": adapted.name, "rank": str(rank)})
    return {"weights_changed": len({k.rsplit(".", 1)[0] for k in changes}), "rank": rank,
            "share_kept": round(kept / total, 4) if total else 1.0, "bytes": out.stat().st_size}
