"""Multi-task learning: batches drawn per task by the sampling rule (known answers), and a run with two tiny tasks
(classification and regression) over one shared encoder, loaded back one task at a time."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import yaml

import tuneforge
from tests.conftest import make_regression_rows, make_rows, write_csv
from tuneforge.cli.main import main
from tuneforge.errors import RecipeError, TuneforgeError
from tuneforge.recipe import recipe_from_dict
from tuneforge.train.pipelines.multitask import TaskBatchSampler, task_probabilities, task_schedule


def test_task_probabilities_follow_the_rule() -> None:
    np.testing.assert_allclose(task_probabilities([300, 100], "proportional"), [0.75, 0.25])
    np.testing.assert_allclose(task_probabilities([400, 100], "temperature", 2.0), [2 / 3, 1 / 3])
    np.testing.assert_allclose(task_probabilities([300, 100], "round_robin"), [0.5, 0.5])


def test_proportional_epoch_is_one_pass_over_each_task() -> None:
    sampler = TaskBatchSampler([20, 7], batch_size=4, sampling="proportional", temperature=2.0, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5 + 2
    first, second = sorted(i for b in batches for i in b if i < 20), sorted(i for b in batches for i in b if i >= 20)
    assert first == list(range(20)) and second == list(range(20, 27))  # every row once
    assert all(max(b) < 20 or min(b) >= 20 for b in batches)  # each batch from one task


def test_round_robin_alternates_and_small_tasks_cycle() -> None:
    assert task_schedule([20, 4], 4, "round_robin", 2.0, np.random.default_rng(0)) == [0, 1, 0, 1, 0, 1]
    sampler = TaskBatchSampler([20, 4], batch_size=4, sampling="round_robin", temperature=2.0, seed=0)
    small = [sorted(b) for b in sampler if min(b) >= 20]
    assert small == [[20, 21, 22, 23]] * 3  # the one-batch task repeats its (reshuffled) rows


def test_temperature_schedule_lifts_the_small_task() -> None:
    counts = Counter(task_schedule([900, 100], 1, "temperature", 2.0, np.random.default_rng(0)))
    assert counts[1] / 1000 == pytest.approx(0.25, abs=0.03)  # sqrt(100) / (sqrt(900) + sqrt(100))


def test_sampler_is_seeded_by_epoch() -> None:
    sampler = TaskBatchSampler([20, 7], 4, "temperature", 2.0, seed=3)
    sampler.set_epoch(1)
    again = TaskBatchSampler([20, 7], 4, "temperature", 2.0, seed=3)
    again.set_epoch(1)
    assert list(sampler) == list(again)
    again.set_epoch(2)
    assert list(sampler) != list(again)


def test_recipe_checks_the_tasks() -> None:
    with pytest.raises(RecipeError, match="two or more tasks"):
        recipe_from_dict({"tasks": [{"name": "a"}]})
    with pytest.raises(RecipeError, match="not a task"):
        recipe_from_dict({"tasks": [{"name": "a"}, {"name": "b"}], "multitask": {"loss_weights": {"c": 1}}})
    with pytest.raises(RecipeError, match="letters, digits"):
        recipe_from_dict({"tasks": [{"name": "a b"}, {"name": "b"}]})


def test_two_tiny_tasks_share_one_encoder(tiny_model, tmp_path) -> None:
    sentiment = {role: write_csv(tmp_path / "s" / f"{role}.csv", make_rows(count, seed))
                 for role, count, seed in (("train", 60, 2), ("validation", 21, 3), ("test", 21, 4))}
    score = {role: write_csv(tmp_path / "r" / f"{role}.csv", make_regression_rows(count, seed))
             for role, count, seed in (("train", 30, 2), ("validation", 12, 3))}
    output = tmp_path / "run"
    recipe = {
        "model": {"name": str(tiny_model)},
        "tasks": [{"name": "sentiment", "task": "classification", "data": {k: str(v) for k, v in sentiment.items()}},
                  {"name": "score", "task": "regression",
                   "data": {**{k: str(v) for k, v in score.items()}, "label_column": "score"}}],
        "multitask": {"sampling": "temperature", "temperature": 2.0, "loss_weights": {"score": 0.5}},
        "train": {"epochs": 3, "batch_size": 8, "learning_rate": 1e-2, "max_length": 32, "warmup_ratio": 0.0},
        "output": {"dir": str(output), "tensorboard": "off"},
    }
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(recipe_file)]) == 0  # the CLI shows one results table per task
    metrics = json.loads((output / "metrics.json").read_text())
    assert set(metrics["tasks"]) == {"sentiment", "score"}
    sentiment_val = metrics["tasks"]["sentiment"]["validation"]
    score_val = metrics["tasks"]["score"]["validation"]
    assert {"accuracy", "f1_macro", "confusion_matrix"} <= set(sentiment_val) and "rmse" in score_val
    assert "test" in metrics["tasks"]["sentiment"] and "test" not in metrics["tasks"]["score"]
    assert metrics["validation"]["mean_score"] == pytest.approx((sentiment_val["f1_macro"] - score_val["rmse"]) / 2)
    assert metrics["training"]["loss_weights"] == {"sentiment": 1.0, "score": 0.5}
    assert metrics["training"]["best_metric"]["mean_score"] is not None
    logged = [json.loads(line) for line in (output / "logs.jsonl").read_text().splitlines()]
    assert any("eval_mean_score" in row and "eval_sentiment_f1_macro" in row for row in logged)
    model = output / "model"
    assert (model / "config.json").is_file() and (model / "model.safetensors").is_file()
    assert (model / "heads.safetensors").is_file() and not list(model.glob("*.bin"))
    assert sentiment_val["accuracy"] > 0.5  # three balanced classes: chance is 1/3

    with pytest.raises(TuneforgeError, match="sentiment, score"):
        tuneforge.load(output, device="cpu")
    predictor = tuneforge.load(output, device="cpu", task_name="sentiment")
    texts = pd.read_csv(sentiment["validation"])["text"].tolist()
    rows = predictor.predict(texts)
    accuracy = np.mean([r["label"] == t for r, t in zip(rows, pd.read_csv(sentiment["validation"])["label"],
                                                      strict=True)])
    assert accuracy == pytest.approx(sentiment_val["accuracy"])  # the saved encoder + head reproduce training's
    scores = tuneforge.load(output, device="cpu", task_name="score").predict(["good great bad"])
    assert isinstance(scores[0]["score"], float)

    assert main(["evaluate", str(output), "--data", str(sentiment["test"]), "--task-name", "sentiment",
                 "--device", "cpu", "--output", str(tmp_path / "e.json")]) == 0
    evaluated = json.loads((tmp_path / "e.json").read_text())
    assert evaluated["accuracy"] == pytest.approx(metrics["tasks"]["sentiment"]["test"]["accuracy"])
    assert main(["predict", str(output), "--data", str(sentiment["test"]), "--task-name", "nope"]) == 1


@pytest.mark.slow
def test_interrupted_multitask_run_resumes_to_the_same_weights(tiny_model, tmp_path) -> None:
    import torch
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from tuneforge.train.trainer import TrainingInterrupted

    class InterruptAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if state.global_step == 17:  # mid-epoch 2 (12 task-pure batches per epoch)
                raise KeyboardInterrupt

    sentiment = {role: write_csv(tmp_path / "s" / f"{role}.csv", make_rows(count, seed))
                 for role, count, seed in (("train", 60, 2), ("validation", 21, 3))}
    score = {role: write_csv(tmp_path / "r" / f"{role}.csv", make_regression_rows(count, seed))
             for role, count, seed in (("train", 30, 2), ("validation", 12, 3))}

    def recipe(output):
        return {"model": {"name": str(tiny_model)},
                "tasks": [{"name": "s", "data": {k: str(v) for k, v in sentiment.items()}},
                          {"name": "r", "task": "regression",
                           "data": {**{k: str(v) for k, v in score.items()}, "label_column": "score"}}],
                "multitask": {"sampling": "temperature"}, "early_stopping": {"enabled": False},
                "train": {"epochs": 3, "batch_size": 8, "learning_rate": 1e-2, "max_length": 32, "warmup_ratio": 0},
                "output": {"dir": str(output), "tensorboard": "off"}}

    reference = tuneforge.fine_tune(recipe(tmp_path / "reference"))
    with pytest.raises(TrainingInterrupted):
        tuneforge.fine_tune(recipe(tmp_path / "run"), callbacks=[InterruptAt()])
    resumed = tuneforge.fine_tune(recipe(tmp_path / "run"), resume=True)
    assert resumed.metrics["training"]["global_steps"] == reference.metrics["training"]["global_steps"] == 36
    for name in ("model.safetensors", "heads.safetensors"):
        ours, theirs = load_file(tmp_path / "run" / "model" / name), load_file(tmp_path / "reference" / "model" / name)
        assert all(torch.allclose(ours[key], theirs[key], atol=1e-6) for key in theirs), name
