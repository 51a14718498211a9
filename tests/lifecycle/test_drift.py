"""Drift statistics: known answers, same distribution -> ok, planted shifts -> drift."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest

from tests.conftest import make_rows
from tuneforge.lifecycle import drift

REFERENCE = [r["text"] for r in make_rows(400, seed=1)]
SAME = [r["text"] for r in make_rows(200, seed=2)]


def _unseen_words(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join("".join(rng.choice("qxzjkvwy") for _ in range(6)) for _ in range(6)) for _ in range(count)]


def test_psi_known_answers():
    assert drift.categorical_psi([50, 50], [50, 50]) == pytest.approx(0.0)
    # (0.8 - 0.5) ln(0.8/0.5) + (0.2 - 0.5) ln(0.2/0.5)
    assert drift.categorical_psi([50, 50], [80, 20]) == pytest.approx(0.3 * math.log(1.6) + 0.3 * math.log(2.5))
    values = np.random.default_rng(0).normal(size=5000)
    assert drift.psi(values, np.random.default_rng(1).normal(size=5000)) < 0.01
    assert drift.psi(values, np.random.default_rng(1).normal(loc=1.0, size=5000)) > 0.25


def test_token_js_known_answers():
    assert drift.token_js(Counter(a=2, b=2), Counter(a=5, b=5)) == pytest.approx(0.0)
    assert drift.token_js(Counter(a=1), Counter(b=1)) == pytest.approx(1.0)
    assert drift.oov_rate({"a", "b"}, ["a b c d"]) == pytest.approx(0.5)


def test_same_distribution_is_ok_everywhere():
    assert drift.length_drift(REFERENCE, SAME).status == drift.OK
    assert drift.vocabulary_drift(REFERENCE, SAME).status == drift.OK
    rng = np.random.default_rng(0)
    assert drift.embedding_drift(rng.normal(size=(300, 16)), rng.normal(size=(150, 16))).status == drift.OK
    labels = ["negative", "neutral", "positive"]
    assert drift.prediction_drift(labels * 100, labels * 50, labels).status == drift.OK
    assert drift.confidence_drift(rng.uniform(0.6, 1.0, 300), rng.uniform(0.6, 1.0, 200)).status == drift.OK


def test_longer_texts_are_length_drift():
    check = drift.length_drift(REFERENCE, [" ".join([text] * 4) for text in SAME])
    assert check.status == drift.DRIFT
    assert check.values["current_mean_words"] == pytest.approx(4 * check.values["reference_mean_words"], rel=0.05)


def test_new_vocabulary_is_vocabulary_drift():
    check = drift.vocabulary_drift(REFERENCE, _unseen_words(200, seed=3))
    assert check.status == drift.DRIFT
    assert check.values["oov_rate"] == pytest.approx(1.0) and check.values["baseline_oov_rate"] < 0.05
    half = drift.vocabulary_drift(REFERENCE, SAME[:100] + _unseen_words(100, seed=4))
    assert half.values["oov_rate"] == pytest.approx(0.5, abs=0.05) and half.status == drift.DRIFT


def test_shifted_embeddings_are_drift():
    rng = np.random.default_rng(0)
    shifted = rng.normal(size=(150, 16))
    shifted[:, 0] += 2.0
    check = drift.embedding_drift(rng.normal(size=(300, 16)), shifted)
    assert check.status == drift.DRIFT and check.values["domain_auc"] > 0.8


def test_prediction_and_confidence_shifts():
    labels = ["negative", "neutral", "positive"]
    moved = drift.prediction_drift(labels * 100, ["negative"] * 120 + ["positive"] * 30, labels)
    assert moved.status == drift.DRIFT and "'negative'" in moved.reason
    rng = np.random.default_rng(0)
    lower = drift.confidence_drift(rng.uniform(0.8, 1.0, 300), rng.uniform(0.4, 0.9, 200))
    assert lower.status == drift.DRIFT and lower.values["drop"] == pytest.approx(0.25, abs=0.03)


def test_feedback_accuracy_against_the_test_accuracy():
    served = ["a"] * 40
    assert drift.feedback_accuracy(served, ["a"] * 36 + ["b"] * 4, 0.9).status == drift.OK
    worse = drift.feedback_accuracy(served, ["a"] * 24 + ["b"] * 16, 0.9)
    assert worse.status == drift.DRIFT and worse.values["accuracy"] == pytest.approx(0.6)
    assert drift.feedback_accuracy(["a"] * 5, ["b"] * 5, 0.9).status == drift.INSUFFICIENT


def test_verdict_is_the_worst_judged_check():
    checks = [drift.Check("a", drift.OK, ""), drift.Check("b", drift.INSUFFICIENT, ""),
              drift.Check("c", drift.WARNING, "")]
    assert drift.verdict(checks) == drift.WARNING
    assert drift.verdict(checks + [drift.Check("d", drift.DRIFT, "")]) == drift.DRIFT
    assert drift.verdict([drift.Check("b", drift.INSUFFICIENT, "")]) == drift.OK
