"""How a question is worded: as a question about the documents' subjects, or as everyday chatter.

The scope model (``index.rank.SCOPE_FEATURES``) otherwise judges a question only by where the embedding
model puts it: how close it comes to the library's passages, to everyday questions and to personal errands.
There, 医保卡能给家里人用吗 or 个税年度汇算怎么退税 lie close to the reports' passages on 医保 and 个税. Wording
is a second, independent view: a logistic model over the question's characters and character pairs
(TF-IDF, sublinear counts, unit length), fitted by ``flask fit`` on the tuning questions that are about the
documents' subjects (answerable, and hard out of scope) against everyday questions, personal errands and
chatter (``index/everyday.txt``, ``errands.txt``, ``chatter.txt``, and the tuning set's own everyday
questions). Its log-odds are the scope feature ``wording``.

Measured before it became a feature (character 1–2-grams seen at least twice, C = 3), AUC of in scope
against everyday questions: held-out 0.975, fresh 0.992, tune-more 0.983 — against the scope model's
0.970, 0.991, 0.969 — and the two together 0.984–0.988, 0.996–0.997, 0.982–0.990: they err on different
questions.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_COUNT = 2  # a character pair must occur in this many training texts to be a feature
WORDING_C = 3.0  # the logistic model's inverse L2 strength
LOG_ODDS_LIMIT = 8.0  # the feature's log-odds are clipped to ± this


class WordingError(ValueError):
    pass


def grams(text: str) -> Counter[str]:
    """The characters and adjacent character pairs of ``text`` (NFKC, lower case, white space removed)."""
    compact = "".join(unicodedata.normalize("NFKC", text).lower().split())
    return Counter(list(compact) + [compact[i:i + 2] for i in range(len(compact) - 1)])


@dataclass
class WordingModel:
    vocabulary: dict[str, int]  # gram -> column
    idf: np.ndarray  # float64 (columns,)
    weights: np.ndarray  # float64 (columns,)
    intercept: float

    def rows(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's TF-IDF row (sublinear counts, unit length), dense: a question has a few dozen grams."""
        out = np.zeros((len(texts), len(self.vocabulary)))
        for i, text in enumerate(texts):
            for gram, count in grams(text).items():
                column = self.vocabulary.get(gram)
                if column is not None:
                    out[i, column] = (1.0 + math.log(count)) * self.idf[column]
            norm = np.linalg.norm(out[i])
            if norm > 0:
                out[i] /= norm
        return out

    def log_odds(self, texts: Sequence[str]) -> np.ndarray:
        """The log-odds that each text is about the documents' subjects, clipped to ±``LOG_ODDS_LIMIT``."""
        return np.clip(self.rows(texts) @ self.weights + self.intercept, -LOG_ODDS_LIMIT, LOG_ODDS_LIMIT)

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[bool], c: float = WORDING_C) -> WordingModel:
        """Fitted on ``texts`` labelled True (about the documents' subjects) or False (chatter), the two
        classes weighed equally."""
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(labels, dtype=bool)
        if len(texts) != len(y) or y.all() or not y.any():
            raise WordingError("wording needs texts of both kinds, one label each")
        counts = [grams(t) for t in texts]
        document_frequency = Counter(g for c_ in counts for g in c_)
        kept = sorted(g for g, n in document_frequency.items() if n >= MIN_COUNT)
        vocabulary = {g: i for i, g in enumerate(kept)}
        idf = np.array([math.log((1 + len(texts)) / (1 + document_frequency[g])) + 1.0 for g in kept])
        model = cls(vocabulary, idf, np.zeros(len(kept)), 0.0)
        lr = LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(model.rows(texts), y)
        model.weights, model.intercept = lr.coef_[0].astype(np.float64), float(lr.intercept_[0])
        return model

    def to_json(self) -> dict:
        grams_in_order = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        return {"grams": grams_in_order, "idf": [round(float(v), 5) for v in self.idf],
                "weights": [round(float(v), 5) for v in self.weights], "intercept": round(self.intercept, 6)}

    @classmethod
    def from_json(cls, data: dict) -> WordingModel:
        grams_in_order = list(data["grams"])
        idf = np.array(data["idf"], dtype=np.float64)
        weights = np.array(data["weights"], dtype=np.float64)
        if not (len(grams_in_order) == len(idf) == len(weights)) or len(set(grams_in_order)) != len(grams_in_order):
            raise WordingError("malformed wording model: grams, idf and weights differ in length or repeat")
        return cls({g: i for i, g in enumerate(grams_in_order)}, idf, weights, float(data["intercept"]))
