"""Gradient accumulation must not change training: batch 8 x 1 step equals batch 4 x 2 micro-steps.

The losses divide by the number of examples in the whole accumulated batch (`num_items_in_batch`), so the
summed micro-batch gradients equal the full-batch gradient, and the logged loss is the full-batch loss.
The tiny model has no dropout and length grouping is off, so runs are deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tuneforge
from tests.conftest import make_regression_rows, make_rows, tiny_recipe, write_csv

# 22 rows make uneven epochs: with batch 8 the last batch has 6 rows, which batch 4 x 2 splits into 4 + 2
# and batch 2 x 4 into 2 + 2 + 2; a per-micro-batch mean would weigh those rows differently.
TRAIN_ROWS = 22
EPOCHS = 2
WEIGHT_TOLERANCE = 2e-5
# Adding a constant to every attention key shifts all scores of a query equally, which softmax ignores: the
# key bias has an exactly zero gradient, so what it receives is rounding noise that Adam normalises into
# steps of about the learning rate times noise/eps. Those steps differ between any two summation orders and
# do not change the model's outputs, so the key bias is left out of the weight comparison.
SHIFT_INVARIANT = "attention.self.key.bias"


def train(tiny_model: Path, files: dict[str, Path], output: Path, task: str, batch_size: int,
          accumulation: int) -> dict:
    recipe = tiny_recipe(
        tiny_model, files, output,
        train={"epochs": EPOCHS, "batch_size": batch_size, "gradient_accumulation_steps": accumulation,
               "group_by_length": False, "save_checkpoints": False, "logging_steps": 1, "seed": 7},
        early_stopping={"enabled": False},
    )
    recipe["task"] = task
    if task == "regression":
        recipe["data"]["label_column"] = "score"
    run = tuneforge.fine_tune(recipe)
    records = [json.loads(line) for line in run.layout.log.read_text().splitlines()]
    return {
        "run": run,
        "weights": load_file(run.layout.model / "model.safetensors"),
        "train_logs": [r for r in records if "loss" in r],
        "eval_logs": [r for r in records if "eval_loss" in r],
    }


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("accumulation-data")
    return {
        "classification": {
            "train": write_csv(folder / "cls" / "train.csv", make_rows(TRAIN_ROWS, seed=11)),
            "validation": write_csv(folder / "cls" / "val.csv", make_rows(9, seed=12)),
        },
        "regression": {
            "train": write_csv(folder / "reg" / "train.csv", make_regression_rows(TRAIN_ROWS, seed=11)),
            "validation": write_csv(folder / "reg" / "val.csv", make_regression_rows(9, seed=12)),
        },
    }


@pytest.fixture(scope="module")
def baselines(tiny_model, datasets, tmp_path_factory) -> dict[str, dict]:
    """One run per task without accumulation: batch 8 x 1."""
    folder = tmp_path_factory.mktemp("accumulation-baseline")
    return {task: train(tiny_model, files, folder / task, task, 8, 1) for task, files in datasets.items()}


def assert_same_training(reference: dict, accumulated: dict, tiny_model: Path) -> None:
    steps = -(-TRAIN_ROWS // 8) * EPOCHS
    for result in (reference, accumulated):
        assert result["run"].metrics["training"]["global_steps"] == steps

    # Logged per optimisation step: the full-batch loss, the gradient norm and the learning rate.
    ref_logs, acc_logs = reference["train_logs"], accumulated["train_logs"]
    assert [r["step"] for r in acc_logs] == [r["step"] for r in ref_logs] == list(range(1, steps + 1))
    for ref, acc in zip(ref_logs, acc_logs, strict=True):
        assert acc["loss"] == pytest.approx(ref["loss"], rel=1e-5), ref["step"]
        assert acc["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-5), ref["step"]
        assert acc["learning_rate"] == pytest.approx(ref["learning_rate"], rel=1e-9), ref["step"]
    # One evaluation per epoch, on the weights each run had reached by then.
    ref_eval = [r["eval_loss"] for r in reference["eval_logs"]]
    assert len(ref_eval) == EPOCHS
    assert [r["eval_loss"] for r in accumulated["eval_logs"]] == pytest.approx(ref_eval, rel=1e-5)

    ref_weights, acc_weights = reference["weights"], accumulated["weights"]
    assert set(acc_weights) == set(ref_weights)
    compared = [key for key in ref_weights if not key.endswith(SHIFT_INVARIANT)]
    assert len(compared) > len(ref_weights) / 2
    for key in compared:
        assert torch.allclose(acc_weights[key], ref_weights[key], rtol=0, atol=WEIGHT_TOLERANCE), key

    # The tolerance is meaningful only if training moved the weights far more than it.
    initial = load_file(tiny_model / "model.safetensors")
    moved = max((ref_weights[f"bert.{key}"] - value).abs().max().item() for key, value in initial.items())
    assert moved > 100 * WEIGHT_TOLERANCE


@pytest.mark.parametrize(("batch_size", "accumulation"), [(4, 2), (2, 4)])
def test_classification_accumulation_matches_one_big_batch(tiny_model, datasets, baselines, tmp_path,
                                                           batch_size, accumulation):
    accumulated = train(tiny_model, datasets["classification"], tmp_path / "run", "classification",
                        batch_size, accumulation)
    assert_same_training(baselines["classification"], accumulated, tiny_model)


def test_regression_accumulation_matches_one_big_batch(tiny_model, datasets, baselines, tmp_path):
    accumulated = train(tiny_model, datasets["regression"], tmp_path / "run", "regression", 4, 2)
    assert_same_training(baselines["regression"], accumulated, tiny_model)


def test_regression_target_of_minus_100_counts_as_an_example(tiny_model, tmp_path):
    """The logged loss is the mean over examples whatever the target values are.

    Two datasets that differ only in targets -100 vs -100.01 must log (almost) the same first loss.
    """
    rows = make_regression_rows(16, seed=13)
    for index, row in enumerate(rows):
        row["score"] = 100.0 if index % 2 else -100.0
    first_losses = []
    for name, low in (("exact", -100.0), ("shifted", -100.01)):
        data = [{**row, "score": low if row["score"] < 0 else row["score"]} for row in rows]
        files = {"train": write_csv(tmp_path / name / "train.csv", data),
                 "validation": write_csv(tmp_path / name / "val.csv", make_regression_rows(6, seed=14))}
        recipe = tiny_recipe(tiny_model, files, tmp_path / name / "run",
                             data={"label_column": "score"},
                             train={"max_steps": 1, "group_by_length": False, "save_checkpoints": False,
                                    "logging_steps": 1},
                             early_stopping={"enabled": False})
        recipe["task"] = "regression"
        run = tuneforge.fine_tune(recipe)
        records = [json.loads(line) for line in run.layout.log.read_text().splitlines()]
        first_losses.append(next(r["loss"] for r in records if "loss" in r))
    exact, shifted = first_losses
    assert exact == pytest.approx(shifted, rel=1e-3)
