"""Metric plugins: loaded by dotted path, called with keyword arguments, failures contained or reported early.

The plugins themselves are the module-level functions below, addressed as `tests.evaluate.test_plugins:<name>`.
"""

from __future__ import annotations

import numpy as np
import pytest

from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.plugins import load_plugin, run_plugins, validate_plugins

HERE = "tests.evaluate.test_plugins"


def my_metric(texts, labels, predictions, probabilities, label_names):
    """Takes every argument; numpy results must come back as plain JSON values."""
    return {"examples": len(texts), "accuracy": np.mean(labels == predictions),
            "mean_confidence": probabilities.max(axis=1).mean(), "classes": label_names,
            "per_row_right": labels == predictions}


def only_predictions(predictions):
    """Takes one argument: only that one is passed."""
    return {"predicted_first": int(predictions[0])}


def with_kwargs(**kwargs):
    return {"received": sorted(kwargs)}


def broken(texts):
    raise RuntimeError("the check itself has a bug")


def not_a_dict(labels):
    return [1, 2, 3]


def not_serialisable(labels):
    return {"value": object()}


def vandal(labels, probabilities):
    labels[:] = -1
    probabilities[:] = 0
    return {}


def needs_threshold(texts, threshold):
    return {}


NOT_CALLABLE = 42

TEXTS = ["good", "bad", "fine"]
LABELS = np.array([0, 1, 1])
PROBABILITIES = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
PREDICTIONS = PROBABILITIES.argmax(axis=1)
NAMES = ["positive", "negative"]


def run(*paths: str) -> dict:
    return run_plugins(list(paths), TEXTS, LABELS, PREDICTIONS, PROBABILITIES, NAMES)


def test_good_plugin_in_both_path_styles():
    expected = {"examples": 3, "accuracy": pytest.approx(2 / 3),
                "mean_confidence": pytest.approx((0.9 + 0.7 + 0.6) / 3),
                "classes": NAMES, "per_row_right": [True, True, False]}
    results = run(f"{HERE}:my_metric", f"{HERE}.my_metric")
    assert results == {f"{HERE}:my_metric": expected, f"{HERE}.my_metric": expected}
    assert type(results[f"{HERE}:my_metric"]["accuracy"]) is float  # numpy scalar converted


def test_plugins_receive_only_the_arguments_they_name():
    results = run(f"{HERE}:only_predictions", f"{HERE}:with_kwargs")
    assert results[f"{HERE}:only_predictions"] == {"predicted_first": int(PREDICTIONS[0])}
    assert results[f"{HERE}:with_kwargs"] == {"received": sorted(["texts", "labels", "predictions", "probabilities",
                                                                  "label_names"])}


def test_failing_plugins_are_recorded_and_the_others_still_run():
    results = run(f"{HERE}:broken", f"{HERE}:not_a_dict", f"{HERE}:not_serialisable", f"{HERE}:only_predictions")
    assert results[f"{HERE}:broken"] == {"error": "RuntimeError: the check itself has a bug"}
    assert "list" in results[f"{HERE}:not_a_dict"]["error"]
    assert "object" in results[f"{HERE}:not_serialisable"]["error"]
    assert results[f"{HERE}:only_predictions"] == {"predicted_first": int(PREDICTIONS[0])}


def test_a_plugin_cannot_change_what_the_next_one_sees():
    results = run(f"{HERE}:vandal", f"{HERE}:my_metric")
    assert results[f"{HERE}:my_metric"]["accuracy"] == pytest.approx(2 / 3)
    assert LABELS.tolist() == [0, 1, 1] and PROBABILITIES[0, 0] == 0.9


def test_regression_inputs_pass_none_for_class_information():
    results = run_plugins([f"{HERE}:with_kwargs"], TEXTS, np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.0, 2.5]),
                          None, None)
    assert "error" not in results[f"{HERE}:with_kwargs"]


@pytest.mark.parametrize("path", [
    "no_such_package_xyz.metrics:score",       # module missing
    f"{HERE}:no_such_function",                 # attribute missing
    f"{HERE}.no_such_function",
    "justaname",                                # not module + callable
    f"{HERE}:NOT_CALLABLE",                     # not callable
    f"{HERE}:needs_threshold",                  # wants an argument tuneforge does not pass
])
def test_bad_paths_are_configuration_errors_naming_the_path(path):
    with pytest.raises(TuneforgeError) as caught:
        load_plugin(path)
    assert path in caught.value.fix
    with pytest.raises(TuneforgeError):
        run(f"{HERE}:my_metric", path)  # raised before any plugin runs


def test_validate_plugins_points_at_the_recipe_field():
    problems = validate_plugins([f"{HERE}:my_metric", "no_such_package_xyz:score", f"{HERE}:NOT_CALLABLE"])
    assert [p.where for p in problems] == ["evaluation.plugins[1]", "evaluation.plugins[2]"]
    assert all(p.severity == "error" and p.fix for p in problems)
    assert validate_plugins([]) == []
