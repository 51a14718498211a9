"""Multilabel metrics, decoding and threshold tuning against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logit

from tuneforge.tasks import get_task, multilabel

NAMES = ["a", "b", "c"]


def logits_of(probabilities: list[list[float]]) -> np.ndarray:
    return logit(np.asarray(probabilities))


def test_metrics_match_hand_counts():
    truth = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=float)
    probs = [[0.9, 0.2, 0.7], [0.6, 0.8, 0.1], [0.7, 0.3, 0.2], [0.1, 0.1, 0.1]]
    # predicted at 0.5: [1,0,1], [1,1,0], [1,0,0], [0,0,0]
    metrics = multilabel.compute_metrics(logits_of(probs), truth, NAMES)
    # tp 4 (a twice, b once, c once), fp 1 (a in row 2), fn 1 (b in row 3)
    assert metrics["precision_micro"] == pytest.approx(4 / 5)
    assert metrics["recall_micro"] == pytest.approx(4 / 5)
    assert metrics["f1_micro"] == pytest.approx(0.8)
    # per label F1: a 2*2/(3+2)=0.8, b 2*1/(1+2)=2/3, c 1.0
    assert metrics["per_class"]["a"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8),
                                         "support": 2}
    assert metrics["f1_macro"] == pytest.approx((0.8 + 2 / 3 + 1.0) / 3)
    assert metrics["f1_weighted"] == pytest.approx((0.8 * 2 + 2 / 3 * 2 + 1.0) / 5)
    assert metrics["subset_accuracy"] == pytest.approx(2 / 4)  # rows 1 and 4 entirely right
    assert metrics["hamming_loss"] == pytest.approx(2 / 12)


def test_thresholds_change_the_decision():
    truth = np.array([[1, 0, 1]], dtype=float)
    logits = logits_of([[0.4, 0.2, 0.7]])
    assert multilabel.compute_metrics(logits, truth, NAMES)["subset_accuracy"] == 0.0
    assert multilabel.compute_metrics(logits, truth, NAMES, [0.3, 0.5, 0.5])["subset_accuracy"] == 1.0


def test_decode_lists_labels_above_their_threshold_with_probabilities():
    rows = multilabel.decode(logits_of([[0.9, 0.4, 0.6], [0.1, 0.2, 0.3]]), NAMES, [0.5, 0.3, 0.7])
    assert rows[0]["labels"] == ["a", "b"]
    assert rows[1]["labels"] == []
    assert rows[0]["probabilities"] == pytest.approx({"a": 0.9, "b": 0.4, "c": 0.6})
    assert get_task("multilabel") is multilabel


def test_threshold_tuning_maximises_each_labels_f1():
    # label a: positives at 0.35 and 0.3, negatives at 0.2 and 0.1 -> the cut between 0.3 and 0.2 gives F1 1
    # label b: positives score high, a negative at 0.55 -> cut between 0.55 and 0.8
    # label c: never positive -> 0.5
    probs = [[0.35, 0.9, 0.2], [0.3, 0.8, 0.45], [0.2, 0.55, 0.1], [0.1, 0.1, 0.4]]
    truth = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=float)
    thresholds = multilabel.tune_thresholds(logits_of(probs), truth)
    assert thresholds[0] == pytest.approx(0.25)
    assert thresholds[1] == pytest.approx(0.675)
    assert thresholds[2] == 0.5
    tuned = multilabel.compute_metrics(logits_of(probs), truth, NAMES, thresholds)
    assert tuned["f1_micro"] == 1.0 and tuned["subset_accuracy"] == 1.0


def test_thresholds_file_round_trip(tmp_path):
    path = tmp_path / "thresholds.json"
    multilabel.write_thresholds(path, NAMES, [0.2, 0.5, 0.7])
    assert multilabel.read_thresholds(path, ["c", "a", "b"]) == [0.7, 0.2, 0.5]
    assert multilabel.read_thresholds(tmp_path / "missing.json", NAMES) == [0.5, 0.5, 0.5]
