"""Calibration: ECE against hand-computed answers, temperature fitting recovers a known temperature."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import softmax

from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.calibration import (
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    read_temperature,
    reliability_diagram,
    reliability_table,
    write_temperature,
)

# Four examples, three classes, five bins (0-.2, .2-.4, .4-.6, .6-.8, .8-1]:
#   row 0: top .90 (class 0), label 0 -> right, bin 4
#   row 1: top .70 (class 1), label 0 -> wrong, bin 3
#   row 2: top .70 (class 1), label 1 -> right, bin 3
#   row 3: top .55 (class 2), label 2 -> right, bin 2
# bin 2: 1 example, accuracy 1,   confidence .55 -> |gap| .45, weight 1/4
# bin 3: 2 examples, accuracy 1/2, confidence .70 -> |gap| .20, weight 2/4
# bin 4: 1 example, accuracy 1,   confidence .90 -> |gap| .10, weight 1/4
# ECE = .45/4 + .20 * 2/4 + .10/4 = .1125 + .1 + .025 = .2375
HAND_PROBABILITIES = np.array([
    [0.90, 0.05, 0.05],
    [0.20, 0.70, 0.10],
    [0.10, 0.70, 0.20],
    [0.30, 0.15, 0.55],
])
HAND_LABELS = np.array([0, 0, 1, 2])


def test_ece_matches_hand_computation():
    assert expected_calibration_error(HAND_PROBABILITIES, HAND_LABELS, bins=5) == pytest.approx(
        0.45 / 4 + 0.20 * 2 / 4 + 0.10 / 4)


def test_reliability_table_lists_every_bin():
    table = reliability_table(HAND_PROBABILITIES, HAND_LABELS, bins=5)
    assert [row["count"] for row in table] == [0, 0, 1, 2, 1]
    assert [row["accuracy"] for row in table] == [None, None, 1.0, 0.5, 1.0]
    assert [row["confidence"] for row in table][2:] == pytest.approx([0.55, 0.70, 0.90])
    assert [row["lower"] for row in table] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert table[-1]["upper"] == 1.0


def test_confidence_on_a_bin_edge_goes_to_the_lower_bin():
    # bins are (lower, upper]: a top probability of exactly .6 belongs to (.4, .6]
    table = reliability_table(np.array([[0.6, 0.4]]), np.array([0]), bins=5)
    assert [row["count"] for row in table] == [0, 0, 1, 0, 0]


def test_perfectly_calibrated_by_construction_has_zero_ece():
    # For each confidence c, ten examples of which exactly 10c are right: accuracy equals confidence in every bin.
    probabilities, labels = [], []
    for confidence in (0.6, 0.7, 0.8, 0.9, 1.0):
        right = round(10 * confidence)
        for i in range(10):
            probabilities.append([confidence, 1 - confidence])
            labels.append(0 if i < right else 1)
    assert expected_calibration_error(np.array(probabilities), np.array(labels)) == pytest.approx(0.0, abs=1e-12)


def _sampled(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True logits and labels drawn from softmax(true logits): the true logits are calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes)) * 1.5
    probabilities = softmax(logits, axis=1)
    cumulative = probabilities.cumsum(axis=1)
    labels = (rng.random((n, 1)) > cumulative).sum(axis=1)
    return logits, np.minimum(labels, classes - 1)


def test_sampled_calibrated_data_has_near_zero_ece():
    # Labels drawn from the probabilities themselves: calibrated up to sampling noise (about 1/sqrt(n per bin)).
    logits, labels = _sampled(50_000, 3, seed=0)
    calibrated_ece = expected_calibration_error(softmax(logits, axis=1), labels)
    assert calibrated_ece < 0.01
    assert expected_calibration_error(softmax(logits * 3, axis=1), labels) > 10 * calibrated_ece


@pytest.mark.parametrize("factor", [3.0, 0.5])
def test_fit_temperature_recovers_a_known_scale(factor):
    logits, labels = _sampled(20_000, 4, seed=1)
    distorted = logits * factor  # over-confident (factor > 1) or under-confident (factor < 1)
    temperature = fit_temperature(distorted, labels)
    assert temperature == pytest.approx(factor, rel=0.05)
    assert negative_log_likelihood(distorted, labels, temperature) < negative_log_likelihood(distorted, labels)
    before = expected_calibration_error(softmax(distorted, axis=1), labels)
    after = expected_calibration_error(softmax(distorted / temperature, axis=1), labels)
    assert after < before


def test_fit_temperature_leaves_calibrated_logits_alone_and_is_deterministic():
    logits, labels = _sampled(20_000, 4, seed=2)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(1.0, rel=0.05)
    assert fit_temperature(logits, labels) == temperature
    assert fit_temperature(logits.astype(np.float32), labels) == pytest.approx(temperature, rel=1e-5)


def test_fit_temperature_stays_within_bounds_on_separable_data():
    # Every example right with a margin: NLL keeps falling as T -> 0, so the fit must stop at a finite bound.
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    temperature = fit_temperature(logits, np.array([0, 1, 0]))
    assert 0 < temperature < 1
    assert np.isfinite(negative_log_likelihood(logits, np.array([0, 1, 0]), temperature))


@pytest.mark.parametrize(("logits", "labels"), [
    (np.zeros((3, 2)), np.array([0, 1])),            # one label short
    (np.zeros(3), np.array([0, 1, 0])),               # not a matrix
    (np.zeros((2, 2)), np.array([0, 2])),             # label out of range
    (np.array([[np.nan, 0.0]]), np.array([0])),       # NaN logits
    (np.zeros((0, 2)), np.zeros(0, dtype=int)),       # nothing to fit
])
def test_bad_inputs_are_tuneforge_errors(logits, labels):
    with pytest.raises(TuneforgeError) as caught:
        fit_temperature(logits, labels)
    assert caught.value.fix


def test_calibration_report_before_and_after():
    logits, labels = _sampled(5_000, 3, seed=3)
    distorted = logits * 2
    temperature = fit_temperature(distorted, labels)
    report = calibration_report(distorted, labels, temperature, bins=10)
    assert set(report) == {"temperature", "bins", "examples", "ece_before", "ece_after", "nll_before", "nll_after",
                           "reliability"}
    assert report["temperature"] == temperature and report["bins"] == 10 and report["examples"] == len(labels)
    assert report["ece_before"] == pytest.approx(expected_calibration_error(softmax(distorted, axis=1), labels, 10))
    assert report["ece_after"] == pytest.approx(
        expected_calibration_error(softmax(distorted / temperature, axis=1), labels, 10))
    assert report["nll_after"] < report["nll_before"]
    assert len(report["reliability"]) == 10
    assert sum(row["count"] for row in report["reliability"]) == len(labels)
    json.dumps(report)  # goes into metrics.json as it is

    unscaled = calibration_report(distorted, labels, 1.0, bins=10)
    assert unscaled["ece_before"] == unscaled["ece_after"] and unscaled["nll_before"] == unscaled["nll_after"]
    with pytest.raises(TuneforgeError):
        calibration_report(distorted, labels, 0.0)


def test_reliability_diagram_writes_a_png_atomically(tmp_path):
    path = tmp_path / "plots" / "reliability_diagram.png"
    reliability_diagram(reliability_table(HAND_PROBABILITIES, HAND_LABELS, bins=5), path, "Reliability (test)")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_temperature_file_round_trip_and_errors(tmp_path):
    path = tmp_path / "calibration.json"
    assert read_temperature(path) == 1.0  # absent: no scaling
    write_temperature(path, 1.7)
    assert json.loads(path.read_text()) == {"temperature": 1.7}
    assert read_temperature(path) == 1.7
    for bad in ('{"temperature": -1}', '{"temperature": "hot"}', "{}", "not json"):
        path.write_text(bad)
        with pytest.raises(TuneforgeError) as caught:
            read_temperature(path)
        assert "delete" in caught.value.fix
    with pytest.raises(TuneforgeError):
        write_temperature(path, float("inf"))
