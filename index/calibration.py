"""Corpus-aware calibration of the semantic score.

The best cosine a question reaches depends on the corpus as much as on the question: with more passages,
an unrelated question finds a closer neighbour by chance. At build time we measure that noise floor with a
fixed set of everyday questions that no policy corpus answers, and express a question's semantic score in
standard deviations above it. The questions (``index/everyday.txt``, 500 of them over weather, food,
phones, transport, errands, chit-chat …) are generic on purpose: they describe "off-topic", not any
evaluation set; they were written without looking at any question set.

The same questions' vectors are kept with the index: a question that is closer to one of them than to
any passage reads as everyday chatter (``everyday_gap`` in the answer decision).

A second reference, ``index/errands.txt`` (221 personal public-service errands: renewing an ID card,
claiming unemployment pay, moving a pension account), is kept the same way for ``errand_gap``: errands share
the documents' words (医保, 养老保险, 个税) and the noise floor does not catch them. It was written by a helper
that saw no question set, and then every line within cosine 0.93 of a question in ``eval/`` or
``../shared/eval/`` was dropped (100 of 321), so figures on those sets stay out of sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

EVERYDAY_FILE = Path(__file__).resolve().parent / "everyday.txt"
ERRANDS_FILE = Path(__file__).resolve().parent / "errands.txt"


def everyday_questions(path: Path = EVERYDAY_FILE) -> list[str]:
    """The everyday questions (one a line, # comments): what members send that no policy document answers.
    ``errand_questions`` reads the errands' file the same way."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def errand_questions() -> list[str]:
    return everyday_questions(ERRANDS_FILE)


def background_stats(semantic_scores: list[float]) -> dict[str, float]:
    """Mean and spread of the background questions' best cosine on one corpus."""
    values = np.asarray(semantic_scores, dtype=np.float64)
    return {"semantic_mean": round(float(values.mean()), 6), "semantic_std": round(float(max(values.std(), 1e-3)), 6),
            "questions": len(values)}


def z_score(semantic: float, stats: dict[str, float] | None) -> float:
    if not stats:
        return 0.0
    return (semantic - stats["semantic_mean"]) / stats["semantic_std"]
