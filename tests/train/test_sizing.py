"""train.batch_size: auto — the growing out-of-memory probe, the CPU estimate, and a whole run that records it."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification

import tuneforge
from tests.conftest import tiny_recipe
from tuneforge.models.estimate import TrainingSetup, memory_breakdown
from tuneforge.models.shapes import build_meta_model, shape_of
from tuneforge.recipe import recipe_from_dict
from tuneforge.train.sizing import (
    checkpoint_batch_size,
    choose_batch_size,
    estimated_batch_size,
    largest_fitting,
    row_cap,
)

QUICK = {"early_stopping": {"enabled": False}, "evaluation": {"explain_examples": 0},
         "fairness": {"identity_categories": [], "counterfactual": False}}


def test_probe_grows_until_out_of_memory():
    tried = []

    def attempt(batch: int) -> None:
        tried.append(batch)
        if batch > 12:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    assert largest_fitting(attempt, cap=1024) == 8
    assert tried == [1, 2, 4, 8, 16]
    assert largest_fitting(lambda batch: None, cap=64) == 64  # nothing fails: the cap
    assert largest_fitting(attempt, cap=0) == 0


def test_probe_passes_other_errors_through():
    def attempt(batch: int) -> None:
        raise ValueError("shape mismatch")

    with pytest.raises(ValueError, match="shape mismatch"):
        largest_fitting(attempt, cap=8)


def test_row_cap_keeps_eight_steps_an_epoch():
    assert row_cap(90, 32) == 8  # 90 // 8 = 11 -> 8
    assert row_cap(10_000, 32) == 32
    assert row_cap(5, 32) == 1


def test_cpu_estimate_picks_the_largest_batch_inside_the_budget(tiny_model):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=3)
    recipe = recipe_from_dict({"model": {"name": str(tiny_model)}, "train": {"batch_size": "auto",
                                                                             "max_length": 64}})
    shape = shape_of(build_meta_model(model.config.to_dict(), "classification", 3), str(tiny_model),
                     "classification")
    peaks = {b: memory_breakdown(shape, TrainingSetup(batch_size=b, max_length=64)).peak for b in (4, 8)}
    between = (peaks[4] + peaks[8]) // 2
    assert estimated_batch_size(model, recipe, "cpu", between, cap=32).size == 4
    assert estimated_batch_size(model, recipe, "cpu", 10 * peaks[8], cap=8).size == 8
    tight = estimated_batch_size(model, recipe, "cpu", 1, cap=32)
    assert tight.size == 1 and "above the memory budget" in tight.reason


def test_given_and_resumed_batch_sizes(tmp_path):
    (tmp_path / "checkpoint-6").mkdir()
    (tmp_path / "checkpoint-6" / "trainer_state.json").write_text(json.dumps({"train_batch_size": 4}))
    assert checkpoint_batch_size(tmp_path / "checkpoint-6") == 4
    auto = recipe_from_dict({}, ["train.batch_size=auto"])
    resumed = choose_batch_size(auto, None, torch.device("cpu"), 100, "fp32", tmp_path / "checkpoint-6")
    assert (resumed.size, resumed.method) == (4, "checkpoint")
    given = choose_batch_size(recipe_from_dict({}, ["train.batch_size=12"]), None, torch.device("cpu"), 100, "fp32")
    assert (given.size, given.method) == (12, "given")


def test_auto_batch_size_run_records_its_choice(tiny_model, classification_files, tmp_path):
    recipe = tiny_recipe(tiny_model, classification_files, tmp_path / "run",
                         train={"batch_size": "auto", "epochs": 1, "save_checkpoints": False}, **QUICK)
    run = tuneforge.fine_tune(recipe)
    training = run.metrics["training"]
    assert training["batch_size"] == 8  # 90 training rows: capped so an epoch keeps 8 steps
    assert training["batch_size_choice"]["method"] == "estimated"
    assert training["global_steps"] == 12  # ceil(90 / 8)
    assert "batch_size: auto" in run.layout.recipe.read_text()
