"""End to end: a run's calibration.json reaches Predictor probabilities and `tuneforge evaluate` reports
calibration, error analysis and plugin results."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.special import softmax

import tuneforge
from tests.conftest import tiny_recipe
from tuneforge.cli.main import main
from tuneforge.evaluate.calibration import expected_calibration_error, write_temperature
from tuneforge.predict import Predictor

GOOD = "tests.evaluate.test_plugins:my_metric"
BROKEN = "tests.evaluate.test_plugins:broken"


def test_stored_temperature_reaches_predictions_and_evaluate(tiny_model, classification_files, tmp_path, capsys):
    run = tuneforge.fine_tune(tiny_recipe(tiny_model, classification_files, tmp_path / "run",
                                          train={"max_steps": 6}, evaluation={"plugins": [GOOD, BROKEN]},
                                          calibration={"temperature_scaling": False}))
    layout = run.layout
    test = pd.read_csv(classification_files["test"])
    texts = test["text"].tolist()

    plain = Predictor.from_run(run.directory)
    assert plain.temperature == 1.0  # no calibration.json: no scaling
    write_temperature(layout.calibration, 2.0)
    predictor = Predictor.from_run(run.directory)
    assert predictor.temperature == 2.0

    logits = predictor.logits(texts)
    np.testing.assert_allclose(logits, plain.logits(texts), rtol=1e-6, atol=1e-6)  # raw logits stay raw
    expected = softmax(logits.astype(np.float64) / 2.0, axis=1)
    np.testing.assert_allclose(predictor.probabilities(texts), expected, rtol=1e-6, atol=1e-9)
    rows = predictor.predict(texts)
    np.testing.assert_allclose([[r["probabilities"][name] for name in predictor.labels] for r in rows], expected,
                               rtol=1e-6, atol=1e-9)
    assert [r["label"] for r in rows] == [r["label"] for r in plain.predict(texts)]  # T never changes the label

    capsys.readouterr()
    # the run names plugins, which are code: evaluating it runs them only when trusted
    assert main(["evaluate", str(run.directory), "--data", str(classification_files["test"]),
                 "--trust-run-code"]) == 0
    captured = capsys.readouterr()
    assert "ece" in captured.out
    assert BROKEN in captured.err  # a failing plugin is a warning, not a failed evaluation
    evaluation = json.loads((layout.evaluations / "test.json").read_text())

    ids = np.array([predictor.labels.index(label) for label in test["label"]])
    bins = run.recipe.calibration.bins
    calibration = evaluation["calibration"]
    assert calibration["temperature"] == 2.0 and calibration["bins"] == bins
    assert calibration["ece_after"] == pytest.approx(expected_calibration_error(expected, ids, bins), abs=1e-6)
    assert calibration["ece_before"] == pytest.approx(
        expected_calibration_error(softmax(logits.astype(np.float64), axis=1), ids, bins), abs=1e-6)
    assert evaluation["ece"] == calibration["ece_after"]
    assert sum(row["count"] for row in calibration["reliability"]) == len(texts)

    analysis = evaluation["error_analysis"]
    assert analysis["examples"] == len(texts)
    assert analysis["errors"] == int((expected.argmax(axis=1) != ids).sum())
    assert sum(bucket["examples"] for bucket in analysis["length_buckets"]) == len(texts)

    plugins = evaluation["plugins"]
    assert set(plugins) == {GOOD, BROKEN}
    assert plugins[GOOD]["accuracy"] == pytest.approx(evaluation["accuracy"])
    assert plugins[GOOD]["mean_confidence"] == pytest.approx(expected.max(axis=1).mean(), abs=1e-6)
    assert plugins[GOOD]["classes"] == predictor.labels
    assert "error" in plugins[BROKEN]


    # A plugin that cannot be imported is a configuration error, reported before any scoring or writing.
    recipe = yaml.safe_load(layout.recipe.read_text())
    recipe["evaluation"]["plugins"] = ["no_such_package_xyz.checks:score"]
    layout.recipe.write_text(yaml.safe_dump(recipe))
    target = tmp_path / "never.json"
    capsys.readouterr()
    assert main(["evaluate", str(run.directory), "--data", str(classification_files["test"]),
                 "--output", str(target), "--trust-run-code"]) == 1
    assert "no_such_package_xyz.checks:score" in capsys.readouterr().err
    assert not target.exists()
