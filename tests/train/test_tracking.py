"""train.report_to: the run's parameters and training curve reach an experiment tracker."""

from __future__ import annotations

from pathlib import Path

import pytest

import tuneforge
from tests.conftest import tiny_recipe
from tuneforge.errors import TuneforgeError


def test_mlflow_receives_the_run_parameters_and_curve(tiny_model: Path, classification_files: dict[str, Path],
                                                     tmp_path: Path) -> None:
    import mlflow

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    recipe = tiny_recipe(tiny_model, classification_files, tmp_path / "run",
                         train={"epochs": 1, "report_to": ["mlflow"]}, evaluation={"explain_examples": 0})
    recipe["output"] = {**recipe["output"], "tracking_uri": store, "experiment": "tracked"}
    tuneforge.fine_tune(recipe)
    client = mlflow.MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("tracked")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "run"
    assert float(run.data.params["learning_rate"]) == pytest.approx(1e-2)
    assert "loss" in run.data.metrics and "eval_f1_macro" in run.data.metrics


def test_a_tracker_that_is_not_installed_stops_the_run_first(tiny_model: Path, classification_files: dict[str, Path],
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    recipe = tiny_recipe(tiny_model, classification_files, tmp_path / "run", train={"report_to": ["wandb"]})
    with pytest.raises(TuneforgeError, match="pip install wandb"):
        tuneforge.fine_tune(recipe)
    assert not (tmp_path / "run" / "metrics.json").exists()
