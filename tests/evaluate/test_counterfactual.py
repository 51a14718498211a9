"""The counterfactual probe on a keyword model whose probabilities are known for every text."""

from __future__ import annotations

import pytest

from tuneforge.augment.identity import load_terms
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.counterfactual import counterfactual_probe

WEIGHTS = {"he": 2, "his": 2, "him": 2, "she": -2, "her": -2, "muslim": -1, "great": 5}


class KeywordModel:
    """P('pos') is 0.8 for a positive keyword score, 0.3 for a negative one and 0.6 at zero."""

    labels = ["neg", "pos"]

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], object]] = []

    def predict(self, texts, pairs=None, batch_size=64):
        self.calls.append((list(texts), pairs))
        rows = []
        for text in texts:
            score = sum(WEIGHTS.get(word.strip(".,").lower(), 0) for word in text.split())
            p = 0.8 if score > 0 else 0.3 if score < 0 else 0.6
            rows.append({"label": "pos" if p > 0.5 else "neg", "score": max(p, 1 - p),
                         "probabilities": {"neg": 1 - p, "pos": p}})
        return rows


TEXTS = [
    "She was late",          # female->male: 0.3 -> 0.8, flips
    "he was late",           # male->female: 0.8 -> 0.3, flips
    "Her son called",        # both groups: swapped at once to 'His daughter called', 0.3 -> 0.8, flips
    "she was great",         # 'great' outweighs the pronoun: 0.8 -> 0.8, no flip
    "the table",             # no identity term: not probed
    "The Muslim was late",   # one variant per other religion, each 0.3 -> 0.6, all flip
]


def test_probe_counts_flips_and_probability_changes():
    model = KeywordModel()
    result = counterfactual_probe(model, TEXTS, load_terms(["gender", "religion"]), worst=10)
    # originals predicted: neg, pos, neg, pos, neg -> 'pos' is the rarer prediction, so the one watched.
    assert result["positive_label"] == "pos"
    gender = result["categories"]["gender"]
    assert (gender["texts_probed"], gender["pairs"], gender["flips"]) == (4, 4, 3)
    assert gender["flip_rate"] == pytest.approx(3 / 4)
    assert gender["mean_abs_change"] == pytest.approx((0.5 + 0.5 + 0.5 + 0.0) / 4)
    assert gender["max_abs_change"] == pytest.approx(0.5)
    assert gender["swaps"]["female->male"]["pairs"] == 2
    assert gender["swaps"]["female->male"]["mean_change"] == pytest.approx((0.5 + 0.0) / 2)
    assert gender["swaps"]["male->female"]["mean_change"] == pytest.approx(-0.5)
    assert gender["swaps"]["female<->male"]["pairs"] == 1
    variants = {row["original"]: row["variant"] for row in gender["worst"]}
    assert variants["Her son called"] == "His daughter called"
    assert variants["She was late"] == "He was late"
    assert [row["flipped"] for row in gender["worst"]] == [True, True, True, False]  # flips first
    religion = result["categories"]["religion"]
    # Muslim has a counterpart in all six other religions at position 0.
    assert (religion["texts_probed"], religion["pairs"], religion["flips"]) == (1, 6, 6)
    assert religion["mean_abs_change"] == pytest.approx(0.3)
    # One batched call; each distinct text predicted once.
    [(seen, _)] = model.calls
    assert len(seen) == len(set(seen)) == 5 + 4 + 6


def test_limit_named_positive_label_and_pairs():
    model = KeywordModel()
    result = counterfactual_probe(model, TEXTS, load_terms(["gender"]), limit=1, positive_label="neg",
                                  pairs=[f"pair {i}" for i in range(len(TEXTS))])
    gender = result["categories"]["gender"]
    assert (gender["texts_probed"], gender["pairs"]) == (1, 1)
    assert gender["worst"][0]["change"] == pytest.approx(0.2 - 0.7)  # P('neg') falls from 0.7 to 0.2
    [(texts, pairs)] = model.calls
    assert pairs == ["pair 0", "pair 0"]  # the variant keeps its row's pair
    assert texts == ["She was late", "He was late"]


def test_nothing_to_probe_and_regression_runs():
    empty = counterfactual_probe(KeywordModel(), ["the table"], load_terms(["gender"]))
    assert empty["categories"]["gender"] == {"texts_probed": 0, "pairs": 0, "flips": 0, "flip_rate": None,
                                             "mean_abs_change": None, "max_abs_change": None, "swaps": {},
                                             "worst": []}
    regression = KeywordModel()
    regression.labels = None
    with pytest.raises(TuneforgeError, match="classification"):
        counterfactual_probe(regression, TEXTS, load_terms(["gender"]))
