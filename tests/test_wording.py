"""The wording model (index/wording.py): a question's characters and character pairs, about the documents'
subjects or everyday chatter."""

import json

import numpy as np
import pytest

from bot.fit import wording_out_of_fold
from index.rank import LearnedModels, ModelError
from index.wording import LOG_ODDS_LIMIT, WordingError, WordingModel, grams
from tests.conftest import ROOT

ABOUT = ["党员发展对象要培养多久", "干部考察有哪些办法", "基层党组织怎么换届", "党员有哪些权利",
         "预备党员怎么转正", "干部选拔任用的标准是什么", "党支部委员会怎么选举", "党员的义务有哪些"]
CHATTER = ["今天天气怎么样", "附近哪里有好吃的饭店", "周末去哪里玩", "晚饭吃什么好",
           "明天会下雨吗", "哪里的火锅好吃", "周末看什么电影", "附近有没有超市"]


def small_model() -> WordingModel:
    return WordingModel.fit(ABOUT + CHATTER, [True] * len(ABOUT) + [False] * len(CHATTER))


def test_grams_are_characters_and_pairs_of_the_normalised_text():
    assert grams("ＡＢ c") == {"a": 1, "b": 1, "c": 1, "ab": 1, "bc": 1}
    assert grams("党员党员")["党员"] == 2
    assert grams("") == {}


def test_new_questions_are_told_apart_by_their_words():
    model = small_model()
    about, chatter = model.log_odds(["入党积极分子怎么培养", "明天天气好吗，去哪里玩"])
    assert about > 0 > chatter
    # a text none of whose grams the model knows reads as its intercept alone
    assert model.log_odds(["ZZZ"])[0] == pytest.approx(np.clip(model.intercept, -LOG_ODDS_LIMIT, LOG_ODDS_LIMIT))


def test_the_model_survives_its_json_exactly_enough():
    model = small_model()
    again = WordingModel.from_json(json.loads(json.dumps(model.to_json(), ensure_ascii=False)))
    texts = ["党员怎么转正", "附近有什么好玩的", "党员干部"]
    assert np.allclose(again.log_odds(texts), model.log_odds(texts), atol=1e-3)


def test_a_fit_needs_both_kinds_of_text():
    with pytest.raises(WordingError):
        WordingModel.fit(ABOUT, [True] * len(ABOUT))
    with pytest.raises(WordingError):
        WordingModel.fit(ABOUT, [True])


def test_a_malformed_wording_model_is_a_clear_error():
    data = LearnedModels.load().to_json()
    data["wording"]["weights"] = data["wording"]["weights"][:-1]
    with pytest.raises(ModelError, match="wording"):
        LearnedModels.from_json(data)


def test_a_scope_model_that_weighs_the_wording_needs_the_wording_model():
    data = LearnedModels.load().to_json()
    del data["wording"]
    with pytest.raises(ModelError, match="no wording model"):
        LearnedModels.from_json(data)
    data["scope"]["weights"]["wording"] = 0.0  # a model that never reads it loads without one
    assert LearnedModels.from_json(data).wording is None


def test_out_of_fold_wording_comes_from_models_that_never_saw_the_row():
    texts = ABOUT + CHATTER
    about = np.array([True] * len(ABOUT) + [False] * len(CHATTER))
    folds = np.arange(len(texts)) % 2
    primary = np.ones(len(texts), dtype=bool)
    before = wording_out_of_fold(texts, about, folds, primary, ["今天几号"])
    flipped = about.copy()
    flipped[folds == 0] = ~flipped[folds == 0]  # the labels of fold 0 change
    after = wording_out_of_fold(texts, flipped, folds, primary, ["今天几号"])
    assert np.allclose(before[folds == 0], after[folds == 0])  # fold 0's values never read its labels
    assert not np.allclose(before[folds == 1], after[folds == 1])


def test_the_shipped_model_reads_unseen_errands_as_chatter_and_policy_questions_as_about_the_documents():
    """Measured on sets it was never fitted on: the personal errands (eval/errands.jsonl) and the held-out
    documents' questions (answerable or hard out of scope)."""
    model = LearnedModels.load().wording
    assert model is not None
    errands = [json.loads(line)["q"] for line in (ROOT / "eval" / "errands.jsonl").read_text().splitlines() if line]
    held_out = [json.loads(line) for line in (ROOT / "eval" / "heldout.jsonl").read_text().splitlines() if line]
    about = [q["q"] for q in held_out if q.get("gold") or q.get("hard")]
    assert (model.log_odds(errands) < 0).mean() >= 0.9  # 194 of 200 when fitted
    assert (model.log_odds(about) > 0).mean() >= 0.7  # 173 of 222 when fitted
