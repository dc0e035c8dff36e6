"""Learned decisions as data: the passage ranker and the answer decision are linear models over named
features, their coefficients read from JSON (``index/learned.json``, written by ``flask eval fit``).

The ranker scores every candidate passage of a question from the evidence in ``PASSAGE_FEATURES`` (a softmax
over one question's candidates: scores are log-odds between them); the decision turns the evidence about
the best passage (``DECISION_FEATURES``) into two logistic probabilities — that the first passage answers
the question, and that the question is about the documents' subjects at all — which pick the reply's tier.
A reader sees what decides by reading the JSON; two fits can be diffed line by line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from index.wording import WordingModel

DEFAULT_LEARNED = Path(__file__).resolve().parent / "learned.json"

# Per candidate passage. Scores are scaled per question (a share of the best candidate, or a gap to it),
# so the weights carry over between corpora of different sizes.
PASSAGE_FEATURES = (
    "dense_gap",  # cosine minus the best candidate's cosine (<= 0)
    "dense_z",  # cosine in standard deviations above the corpus's off-topic noise floor
    "dense_rank",  # log(1 + rank) by cosine among the candidates
    "sentence_gap",  # the best cosine of one of its sentences (index.sentences), minus the best candidate's
    "sentence_rank",  # log(1 + rank) by that sentence cosine
    "bm25",  # jieba BM25 over the (rewritten) question, as a share of the best candidate's
    "bm25_rank",
    "bigram",  # character-bigram BM25, as a share of the best candidate's
    "bigram_rank",
    "coverage",  # IDF-weighted share of the question's terms in the passage
    "bigram_coverage",  # IDF-weighted share of the question's character bigrams in the passage
    "section_coverage",  # share of the question's terms in the passage's section headings
    "neighbour_gap",  # best cosine of the passage before or after it in its document, minus the best (<= 0)
    "token_match",  # IDF-weighted mean of the question's tokens' best cosine with its tokens (index.token_match)
    "token_match_gap",  # the same minus the best candidate's (<= 0)
    "token_low",  # the lower quartile of those best cosines: some part of the question met by nothing here
    "token_low_gap",
    "doc_bm25",  # BM25 over whole documents, as a share of the best document's
    "doc_title",  # IDF-weighted share of the question's terms in the document's title
    "doc_dense_gap",  # the best cosine among the document's candidates, minus the best overall (<= 0)
    "doc_named",  # the question names this document's year or congress session
    "doc_named_other",  # the question names a year or session, and this document is not it
    "header",  # the document's header (title, author, date) rather than its body
)

# Per question, about the ranking's first passage(s): the evidence ``HybridSearcher.search`` reports.
DECISION_FEATURES = (
    "top_score",  # the ranker's score of the first passage (log-odds against the other candidates)
    "margin",  # its lead over the second passage
    "top_share",  # the first passage's share of the ranker's softmax over all the candidates
    "semantic_z",  # the best cosine in standard deviations above the off-topic noise floor
    "sentence_z",  # the same for the best single sentence (index.sentences): a question is about one sentence
    "coverage",  # best share of the question's terms in one of the first three passages
    "top_coverage",  # the first passage's share
    "bigram_coverage",  # the first passage's share of the question's bigrams
    "named",  # share of the question's terms that are the documents' own coined names, found
    "action_missing",  # a how-to question whose action no top passage has
    "figure_missing",  # a question asking for a figure (多少, 几年) whose first passage states none
    "top_rank_agreement",  # 1 when the first passage is also first by cosine or by BM25
    "everyday_gap",  # cosine to the nearest everyday question (index/everyday.txt) minus the best passage's
    "errand_gap",  # cosine to the nearest personal errand (index/errands.txt) minus the best passage's
    "chatter_gap",  # the larger of everyday_gap and errand_gap: how much closer it comes to chatter of either kind
    "chatter_gap_z",  # the same in standard deviations of the corpus's off-topic noise floor
    "wording",  # log-odds that the question's wording is about the documents' subjects (index.wording)
)
# Does the first passage answer it? How far the ranker's choice stands out, and how much of the question it
# covers. Is the question about the documents' subjects at all? How close it comes to them, in meaning and
# in words, against how close it comes to chatter of either kind (a sports question is far from every errand:
# that says nothing about its subject), and how it is worded.
ANSWER_FEATURES = ("top_score", "margin", "top_share", "semantic_z", "sentence_z", "top_coverage", "bigram_coverage",
                   "named", "action_missing", "figure_missing", "top_rank_agreement", "everyday_gap", "errand_gap")
SCOPE_FEATURES = ("semantic_z", "sentence_z", "coverage", "bigram_coverage", "chatter_gap", "chatter_gap_z", "named",
                  "wording")


class ModelError(ValueError):
    """A learned model file is missing, malformed, or does not fit these features."""


@dataclass
class LinearModel:
    """A logistic model: ``sigmoid(intercept + sum(coef * (x - mean) / scale))``."""

    features: tuple[str, ...]
    coefficients: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray

    def score(self, x: np.ndarray) -> np.ndarray:
        """Log-odds for each row of ``x`` (columns in ``features`` order)."""
        return ((x - self.mean) / self.scale) @ self.coefficients + self.intercept

    def probability(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.score(x)))

    def to_json(self) -> dict:
        return {
            "weights": {name: round(float(c), 6) for name, c in zip(self.features, self.coefficients, strict=True)},
            "intercept": round(float(self.intercept), 6),
            "mean": {name: round(float(m), 6) for name, m in zip(self.features, self.mean, strict=True)},
            "scale": {name: round(float(s), 6) for name, s in zip(self.features, self.scale, strict=True)},
        }

    @classmethod
    def from_json(cls, data: dict, features: tuple[str, ...]) -> LinearModel:
        try:
            if set(data["weights"]) != set(features):
                missing = sorted(set(features) - set(data["weights"]))
                extra = sorted(set(data["weights"]) - set(features))
                raise ModelError(f"model features differ from the code's: missing {missing}, unknown {extra}; "
                                 "refit with `flask --app server fit eval/tune.jsonl`")
            return cls(features=features,
                       coefficients=np.array([data["weights"][f] for f in features], dtype=np.float64),
                       intercept=float(data["intercept"]),
                       mean=np.array([data["mean"][f] for f in features], dtype=np.float64),
                       scale=np.array([data["scale"][f] or 1.0 for f in features], dtype=np.float64))
        except (KeyError, TypeError) as exc:
            raise ModelError(f"malformed model ({exc.__class__.__name__}: {exc})") from exc

    @classmethod
    def neutral(cls, features: tuple[str, ...], weights: dict[str, float], intercept: float = 0.0) -> LinearModel:
        """A hand-set model (tests, and the first fit's starting point): unscaled weights."""
        n = len(features)
        return cls(features, np.array([weights.get(f, 0.0) for f in features], dtype=np.float64), intercept,
                   np.zeros(n), np.ones(n))


TIER_ANSWER, TIER_RELATED, TIER_DECLINE = "answer", "related", "decline"


@dataclass
class Tiers:
    """Answer when P(first passage right) reaches ``answer`` and P(about the documents' subjects) reaches
    ``related``; decline when neither does; otherwise list related passages. A question whose first passage
    the answer model is sure of is not declined even when the scope model doubts its subject (the passage
    answering implies the subject is the documents'): the two models disagree, so it is listed as related."""

    answer: float
    related: float

    def tier(self, p_answer: float, p_related: float) -> str:
        sure, in_scope = p_answer >= self.answer, p_related >= self.related
        return TIER_ANSWER if sure and in_scope else TIER_RELATED if sure or in_scope else TIER_DECLINE


@dataclass
class LearnedModels:
    ranker: LinearModel
    answer: LinearModel  # P(the first passage answers the question)
    scope: LinearModel  # P(the question is about the documents' subjects, not everyday chatter)
    tiers: Tiers
    info: dict = field(default_factory=dict)  # what it was fitted and validated on, with the figures
    wording: WordingModel | None = None  # the question's wording (index.wording); None: the feature reads 0

    def to_json(self) -> dict:
        return {"ranker": self.ranker.to_json(), "answer": self.answer.to_json(),
                "scope": self.scope.to_json(),
                "tiers": {"answer": self.tiers.answer, "related": self.tiers.related}, "info": self.info} | (
                    {"wording": self.wording.to_json()} if self.wording is not None else {})

    @classmethod
    def from_json(cls, data: dict) -> LearnedModels:
        try:
            tiers = Tiers(answer=float(data["tiers"]["answer"]), related=float(data["tiers"]["related"]))
            scope = LinearModel.from_json(data["scope"], SCOPE_FEATURES)
            if "wording" not in data and scope.coefficients[SCOPE_FEATURES.index("wording")] != 0:
                # the feature would read 0 for every question and tilt the scope model silently
                raise ModelError("the scope model weighs the question's wording but the file has no wording model; "
                                 "refit with `flask --app server fit eval/tune.jsonl`")
            return cls(ranker=LinearModel.from_json(data["ranker"], PASSAGE_FEATURES),
                       answer=LinearModel.from_json(data["answer"], ANSWER_FEATURES), scope=scope,
                       tiers=tiers, info=data.get("info", {}),
                       wording=WordingModel.from_json(data["wording"]) if "wording" in data else None)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ModelError):
                raise
            raise ModelError(f"malformed learned models ({exc.__class__.__name__}: {exc})") from exc

    @classmethod
    def load(cls, path: Path = DEFAULT_LEARNED) -> LearnedModels:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read learned models from {path}: {exc}") from exc
        return cls.from_json(data)

    def save(self, path: Path = DEFAULT_LEARNED) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def log_rank(rank: int | None, missing: int) -> float:
    return math.log1p(rank if rank is not None else missing)
