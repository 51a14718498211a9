"""Error analysis on hand-made predictions whose confusions and worst mistake are known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.error_analysis import error_analysis, length_buckets, per_group_error_rates, word_counts

NAMES = ["cat", "dog", "bird"]
# index: text (word count), true label, probabilities -> prediction
ROWS = [
    ("w", 0, [0.80, 0.10, 0.10]),                          # 1 word,  cat  -> cat   right
    ("w w", 0, [0.20, 0.70, 0.10]),                        # 2 words, cat  -> dog   wrong, confidence .70
    ("w w w", 0, [0.30, 0.60, 0.10]),                      # 3 words, cat  -> dog   wrong, confidence .60
    ("w w w w", 1, [0.10, 0.80, 0.10]),                    # 4 words, dog  -> dog   right
    ("w w w w w", 2, [0.05, 0.90, 0.05]),                  # 5 words, bird -> dog   wrong, confidence .90 (worst)
    ("w w w w w w", 2, [0.10, 0.10, 0.80]),                # 6 words, bird -> bird  right
    ("w w w w w w w", 0, [0.35, 0.55, 0.10]),              # 7 words, cat  -> dog   wrong, confidence .55
    ("w w w w w w w w", 1, [0.60, 0.30, 0.10]),            # 8 words, dog  -> cat   wrong, confidence .60
]
TEXTS = [r[0] for r in ROWS]
LABELS = np.array([r[1] for r in ROWS])
PROBABILITIES = np.array([r[2] for r in ROWS])


def test_counts_and_confused_pairs():
    result = error_analysis(TEXTS, LABELS, PROBABILITIES, NAMES)
    assert (result["examples"], result["errors"]) == (8, 5)
    assert result["error_rate"] == pytest.approx(5 / 8)
    # cat->dog three times; dog->cat and bird->dog once each, tied and then ordered by the true class's index
    assert result["confused_pairs"] == [
        {"true": "cat", "predicted": "dog", "count": 3, "share": pytest.approx(3 / 5)},
        {"true": "dog", "predicted": "cat", "count": 1, "share": pytest.approx(1 / 5)},
        {"true": "bird", "predicted": "dog", "count": 1, "share": pytest.approx(1 / 5)},
    ]
    json.dumps(result)


def test_most_confident_mistakes_first_ties_in_input_order():
    mistakes = error_analysis(TEXTS, LABELS, PROBABILITIES, NAMES, top=4)["confident_mistakes"]
    assert [m["index"] for m in mistakes] == [4, 1, 2, 7]  # .90, .70, then the two .60 in input order
    worst = mistakes[0]
    assert worst == {"index": 4, "text": TEXTS[4], "true": "bird", "predicted": "dog",
                     "confidence": pytest.approx(0.90), "true_probability": pytest.approx(0.05)}


def test_top_limits_both_lists():
    result = error_analysis(TEXTS, LABELS, PROBABILITIES, NAMES, top=1)
    assert len(result["confused_pairs"]) == 1 and len(result["confident_mistakes"]) == 1


def test_length_buckets_from_word_counts():
    # word counts 1..8, four quantile buckets: {1,2} {3,4} {5,6} {7,8}; wrong rows are 1,2,4,6,7 (0-based),
    # i.e. lengths 2,3,5,7,8 -> errors per bucket 1, 1, 1, 2
    buckets = error_analysis(TEXTS, LABELS, PROBABILITIES, NAMES)["length_buckets"]
    assert [(b["lower"], b["upper"], b["examples"], b["errors"]) for b in buckets] == [
        (1, 2, 2, 1), (3, 4, 2, 1), (5, 6, 2, 1), (7, 8, 2, 2)]
    assert [b["error_rate"] for b in buckets] == [0.5, 0.5, 0.5, 1.0]


def test_explicit_lengths_replace_word_counts():
    # Token lengths: the first four rows short, the rest long; two buckets split them in halves.
    lengths = [3, 3, 3, 3, 40, 40, 40, 40]
    buckets = error_analysis(TEXTS, LABELS, PROBABILITIES, NAMES, lengths=lengths, buckets=2)["length_buckets"]
    assert [(b["lower"], b["upper"], b["examples"], b["errors"]) for b in buckets] == [(3, 3, 4, 2), (40, 40, 4, 3)]


def test_equal_lengths_share_one_bucket():
    assert length_buckets(np.full(6, 5), np.array([True, False] * 3)) == [
        {"lower": 5, "upper": 5, "examples": 6, "errors": 3, "error_rate": 0.5}]
    assert length_buckets(np.array([], dtype=int), np.array([], dtype=bool)) == []


def test_no_mistakes():
    right = np.eye(3)[[0, 1, 2]]
    result = error_analysis(["a", "b", "c"], np.array([0, 1, 2]), right, NAMES)
    assert result["errors"] == 0 and result["confused_pairs"] == [] and result["confident_mistakes"] == []


def test_per_group_error_rates_skip_unknown_groups():
    groups = ["f", "m", None, "f", "m", "f"]
    correct = np.array([True, False, False, False, True, True])
    assert per_group_error_rates(groups, correct) == {
        "f": {"examples": 3, "errors": 1, "error_rate": pytest.approx(1 / 3)},
        "m": {"examples": 2, "errors": 1, "error_rate": 0.5},
    }
    with pytest.raises(TuneforgeError):
        per_group_error_rates(groups[:2], correct)


def test_group_error_rates_per_attribute():
    # right/wrong per row: R W W R W R W W
    groups = {"gender": ["f", "f", "m", "m", None, None, "f", "m"], "age": [None] * 8}
    result = error_analysis(TEXTS, LABELS, PROBABILITIES, NAMES, groups=groups)
    assert result["group_error_rates"] == {"gender": {
        "f": {"examples": 3, "errors": 2, "error_rate": pytest.approx(2 / 3)},
        "m": {"examples": 3, "errors": 2, "error_rate": pytest.approx(2 / 3)}}}  # "age" has no group: left out
    assert error_analysis(TEXTS, LABELS, PROBABILITIES, NAMES)["group_error_rates"] == {}


def test_error_groups_from_identity_terms_or_sensitive_columns():
    from tuneforge.evaluate.scoring import error_groups
    from tuneforge.recipe import Recipe

    texts = ["she left early", "he stayed", "the weather"]
    recipe = Recipe.model_validate({"fairness": {"identity_categories": ["gender"]}})
    assert error_groups(recipe, texts) == {"gender": ["female", "male", None]}
    recipe = Recipe.model_validate({"fairness": {"sensitive_columns": ["region"], "identity_categories": ["gender"]}})
    assert error_groups(recipe, texts, {"region": ["north", "", "south"], "other": [1, 2, 3]}) == {
        "region": ["north", None, "south"]}
    assert error_groups(Recipe.model_validate({"fairness": {"identity_categories": []}}), texts) == {}


def test_shape_mismatch_is_a_tuneforge_error():
    with pytest.raises(TuneforgeError):
        error_analysis(TEXTS, LABELS, PROBABILITIES[:, :2], NAMES)
    with pytest.raises(TuneforgeError):
        error_analysis(TEXTS, LABELS, PROBABILITIES, NAMES, lengths=[1, 2])


def test_word_counts():
    assert word_counts(["a b", "  spaced   out  ", ""]).tolist() == [2, 2, 0]
