"""Multilabel end to end: a CSV with 'a|b' labels in, tuned thresholds, predictions, evaluate and predict out."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest
import torch

import tuneforge
from tests.conftest import FILLER, WORDS, tiny_recipe, write_csv
from tuneforge.cli.main import main
from tuneforge.errors import DataError, RecipeError
from tuneforge.recipe import Recipe
from tuneforge.train.losses import build_loss

# Each label is signalled by its own words: "food" texts say tasty/bland, "service" texts say friendly/rude.
SIGNALS = {"food": ["tasty", "bland", "lovely"], "service": ["friendly", "rude", "happy"]}


def rows(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    result = []
    for index in range(count):
        labels = [["food"], ["service"], ["food", "service"], []][index % 4]
        words = rng.sample(FILLER, 3) + rng.sample(WORDS["neutral"], 1)
        for label in labels:
            words += rng.sample(SIGNALS[label], 2)
        rng.shuffle(words)
        result.append({"text": " ".join(words), "label": "|".join(labels)})
    return result


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("multilabel-data")
    return {"train": write_csv(folder / "train.csv", rows(96, 1)),
            "validation": write_csv(folder / "val.csv", rows(24, 2)),
            "test": write_csv(folder / "test.csv", rows(24, 3))}


@pytest.fixture(scope="module")
def trained(tiny_model, files, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("multilabel-run") / "run"
    settings = {"train.epochs": 10, "train.batch_size": 8, "train.learning_rate": 2e-3, "train.max_length": 32,
                "train.warmup_ratio": 0, "train.save_checkpoints": "false", "early_stopping.enabled": "false"}
    args = ["train", "--task", "multilabel", "--model", str(tiny_model), "--data", str(files["train"]),
            "--validation", str(files["validation"]), "--test", str(files["test"]), "--output", str(output)]
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    assert main(args) == 0
    return output


def test_training_tunes_and_saves_thresholds(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["task"] == "multilabel" and metrics["labels"] == ["food", "service"]
    test = metrics["test"]
    assert test["f1_micro"] >= 0.85
    assert {"f1_macro", "f1_weighted", "precision_micro", "recall_micro", "subset_accuracy", "hamming_loss",
            "per_class"} <= set(test)
    assert test["calibration"] is None and test["error_analysis"] is None
    saved = json.loads((trained / "thresholds.json").read_text())
    assert saved["labels"] == ["food", "service"] and len(saved["thresholds"]) == 2
    assert all(0 < t < 1 for t in saved["thresholds"])
    frame = pd.read_csv(trained / "predictions_test.csv", keep_default_na=False)
    assert list(frame.columns) == ["text", "true", "labels", "prob_food", "prob_service"]
    assert set(frame["true"]) == {"food", "service", "food|service", ""}
    assert (frame["labels"] == frame["true"]).mean() >= 0.7
    report = (trained / "report.html").read_text()
    assert all(name in report for name in ("F1 micro", "Subset accuracy", "Hamming loss"))  # metrics table
    assert not (trained / "fairness.json").exists() and not (trained / "explanations").exists()


def test_predictor_applies_the_saved_thresholds(trained):
    predictor = tuneforge.load(trained)
    saved = json.loads((trained / "thresholds.json").read_text())["thresholds"]
    assert predictor.thresholds == pytest.approx(saved)
    texts = [row["text"] for row in rows(24, 3)]  # the test split
    results = predictor.predict(texts)
    assert set(results[0]["probabilities"]) == {"food", "service"}
    for result in results:
        probabilities = [result["probabilities"][name] for name in ("food", "service")]
        expected = [name for name, p, cut in zip(("food", "service"), probabilities, saved, strict=True) if p >= cut]
        assert result["labels"] == expected
    # Moving every threshold above the probabilities drops every label: the decisions follow the thresholds.
    predictor.thresholds = [1.0, 1.0]
    assert all(result["labels"] == [] for result in predictor.predict(texts))


def test_cli_evaluate_and_predict(trained, files, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(trained), "--data", str(files["test"]), "--output", str(out),
                 "--predictions", str(tmp_path / "rows.csv")]) == 0
    evaluation = json.loads(out.read_text())
    reference = json.loads((trained / "metrics.json").read_text())["test"]
    assert evaluation["f1_micro"] == pytest.approx(reference["f1_micro"])
    assert "f1_micro" in capsys.readouterr().out
    assert main(["predict", str(trained), "--data", str(files["test"]), "--output", str(tmp_path / "p.csv")]) == 0
    predicted = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert list(predicted.columns) == ["text", "labels", "prob_food", "prob_service"]
    assert len(predicted) == 24


def test_data_errors_name_file_row_and_fix(tiny_model, tmp_path):
    unlabelled = write_csv(tmp_path / "none.csv", [{"text": f"text {i}", "label": ""} for i in range(8)])
    recipe = tiny_recipe(tiny_model, {"train": unlabelled}, tmp_path / "run1")
    with pytest.raises(DataError) as caught:
        tuneforge.fine_tune({**recipe, "task": "multilabel"})
    assert any("no row of the training data has a label" in p.message for p in caught.value.problems)

    train = write_csv(tmp_path / "train.csv", rows(16, 1))
    val = write_csv(tmp_path / "val.csv", [{"text": "tasty drinks", "label": "food|drinks"}])
    recipe = tiny_recipe(tiny_model, {"train": train, "validation": val}, tmp_path / "run2")
    with pytest.raises(DataError) as caught:
        tuneforge.fine_tune({**recipe, "task": "multilabel"})
    [problem] = [p for p in caught.value.problems if "never occurs" in p.message]
    assert "'drinks'" in problem.message and "row 1 (line 2)" in problem.message and str(val) in problem.where
    assert "training labels: food, service" in problem.fix


def test_labels_from_jsonl_lists_and_auto_detected_separator(data_recipe, tmp_path):
    from tuneforge.data.prepare import prepare_data

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": f"t{i}", "label": [["b", "a"], ["a"], [], ["c"]][i % 4]}) + "\n"
                             for i in range(12)))
    prepared = prepare_data(data_recipe("multilabel", train=train, validation_split=0.0))
    assert prepared.labels == ["a", "b", "c"]
    assert prepared.train["labels"][:4] == [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    assert prepared.class_counts() == {"a": 6, "b": 3, "c": 3}
    semicolons = write_csv(tmp_path / "semi.csv", [{"text": f"t{i}", "label": "x;y" if i % 2 else "y"}
                                                   for i in range(6)])
    prepared = prepare_data(data_recipe("multilabel", train=semicolons, validation_split=0.0))
    assert prepared.labels == ["x", "y"] and prepared.train["labels"][1] == [1.0, 1.0]


def test_bce_loss_is_invariant_to_gradient_accumulation():
    """Micro-batches divided by the whole batch's examples sum to the full-batch loss, example weights kept."""
    loss = build_loss(Recipe.model_validate({"task": "multilabel"}), class_weights=[2.0, 0.5, 1.0])
    torch.manual_seed(0)
    logits = torch.randn(6, 3, requires_grad=True)
    labels = torch.randint(0, 2, (6, 3)).float()
    weights = torch.tensor([1.0, 2.0, 0.5, 1.0, 1.5, 1.0])
    whole = loss({"logits": logits}, labels, num_items_in_batch=6, weights=weights)
    (full_grad,) = torch.autograd.grad(whole, logits)
    parts = sum(loss({"logits": logits[i:i + 2]}, labels[i:i + 2], num_items_in_batch=6, weights=weights[i:i + 2])
                for i in (0, 2, 4))
    (part_grad,) = torch.autograd.grad(parts, logits)
    per_label = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, labels, pos_weight=torch.tensor([2.0, 0.5, 1.0]), reduction="none")
    expected = (per_label.mean(dim=1) * weights).sum() / 6
    assert torch.allclose(whole, expected) and torch.allclose(parts, expected)
    assert torch.allclose(full_grad, part_grad)
    unweighted = build_loss(Recipe.model_validate({"task": "multilabel"}))
    assert torch.allclose(unweighted({"logits": logits}, labels),
                          torch.nn.functional.binary_cross_entropy_with_logits(logits, labels))


def test_multilabel_recipe_rules():
    assert Recipe.model_validate({"task": "multi-label"}).early_stopping_metric() == ("f1_micro", True)
    from tuneforge.recipe import recipe_from_dict

    with pytest.raises(RecipeError, match="does not apply to multilabel"):
        recipe_from_dict({"task": "multilabel", "loss": {"name": "focal"}})
    with pytest.raises(RecipeError, match="oversample"):
        recipe_from_dict({"task": "multilabel", "imbalance": {"oversample": True}})


def test_pair_classification_is_classification_with_a_required_pair_column(tmp_path, capsys):
    from tuneforge.recipe import recipe_from_dict

    recipe = recipe_from_dict({"task": "pair-classification", "data": {"text_pair_column": "hypothesis"}})
    assert recipe.task == "classification" and recipe.data.text_pair_column == "hypothesis"
    with pytest.raises(RecipeError) as caught:
        recipe_from_dict({"task": "pair-classification"})
    assert "data.text_pair_column" in caught.value.problems[0].message
    assert main(["validate", "--data", str(tmp_path / "x.csv"), "--task", "pair-classification"]) != 0
    err = capsys.readouterr().err
    assert "needs data.text_pair_column" in err and "Traceback" not in err


def test_validate_checks_multilabel_data(files, tmp_path, capsys):
    assert main(["validate", "--data", str(files["train"]), "--validation", str(files["validation"]),
                 "--task", "multilabel"]) == 0
    assert "recipe is valid: multilabel" in capsys.readouterr().out
    bad = write_csv(tmp_path / "val.csv", [{"text": "tasty", "label": "food|drinks"}])
    assert main(["validate", "--data", str(files["train"]), "--validation", str(bad), "--task", "multilabel"]) == 1
    assert "label 'drinks' never occurs in the training data" in capsys.readouterr().err
