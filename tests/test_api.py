"""The Python API: fine_tune from a dict, a Recipe or a file; load(run_dir).predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import tuneforge
from tests.conftest import tiny_recipe
from tuneforge.recipe import Recipe


def test_fine_tune_dict_then_load_and_predict(tiny_model, classification_files, tmp_path):
    run = tuneforge.fine_tune(tiny_recipe(tiny_model, classification_files, tmp_path / "run",
                                          ))
    assert run.metrics["test"]["accuracy"] > 0.5  # chance is 1/3; the words give the label away
    layout = run.layout
    for path in (layout.metrics, layout.recipe, layout.test_predictions, layout.training_curve,
                 layout.confusion_matrix, layout.log, layout.model / "model.safetensors",
                 layout.model / "tokenizer.json"):
        assert path.is_file(), path
    assert not list(layout.model.glob("*.bin")), "weights must be saved as safetensors only"
    saved = json.loads(layout.metrics.read_text())
    assert set(saved["test"]["per_class"]) == {"negative", "neutral", "positive"}
    assert np.asarray(saved["test"]["confusion_matrix"]["matrix"]).sum() == 30

    predictor = tuneforge.load(run.directory)
    saved_predictions = pd.read_csv(layout.test_predictions)
    rows = predictor.predict(saved_predictions["text"].tolist())
    assert [r["label"] for r in rows] == saved_predictions["label"].tolist()  # the reloaded model is the trained one
    assert [r["score"] for r in rows] == pytest.approx(saved_predictions["score"].tolist(), abs=1e-5)
    for row in rows:
        assert abs(sum(row["probabilities"].values()) - 1.0) < 1e-6
        assert row["score"] == max(row["probabilities"].values())


def test_predictions_keep_input_order(tiny_model, classification_files, tmp_path):
    run = tuneforge.fine_tune(tiny_recipe(tiny_model, classification_files, tmp_path / "run",
                                          train={"max_steps": 3}))
    predictor = tuneforge.load(run.directory)
    texts = ["good " * n for n in (9, 1, 5, 3)]
    one_by_one = [predictor.predict([t])[0]["probabilities"] for t in texts]
    batched = [r["probabilities"] for r in predictor.predict(texts, batch_size=2)]
    for single, together in zip(one_by_one, batched, strict=True):
        for label in single:
            assert abs(single[label] - together[label]) < 1e-5


def test_fine_tune_from_recipe_file_resolves_relative_paths(tiny_model, classification_files, tmp_path):
    recipe = tiny_recipe(tiny_model, classification_files, tmp_path / "run", train={"max_steps": 2})
    recipe["data"] = {role: Path(path).name for role, path in recipe["data"].items()}
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe))
    run = tuneforge.fine_tune(recipe_path, overrides=["train.learning_rate=0.002"])
    assert run.recipe.train.learning_rate == 0.002
    assert Path(run.recipe.data.train) == classification_files["train"]
    saved = Recipe.model_validate(yaml.safe_load(run.layout.recipe.read_text()))
    assert saved == run.recipe


def test_sentence_pairs_train_and_predict(tiny_model, tmp_path):
    from tests.conftest import make_rows, write_csv

    def pairs(count: int, seed: int) -> list[dict]:
        return [{"first": "the review says", "second": r["text"], "label": r["label"]} for r in make_rows(count, seed)]

    files = {"train": write_csv(tmp_path / "train.csv", pairs(60, 1)),
             "validation": write_csv(tmp_path / "val.csv", pairs(15, 2))}
    recipe = tiny_recipe(tiny_model, files, tmp_path / "run", train={"max_steps": 4},
                         data={"text_column": "first", "text_pair_column": "second"})
    run = tuneforge.fine_tune(recipe)
    predictor = tuneforge.load(run.directory)
    rows = predictor.predict(["the review says", "the review says"], pairs=["good great", "bad awful"])
    assert len(rows) == 2 and all(set(r["probabilities"]) == {"negative", "neutral", "positive"} for r in rows)
    with pytest.raises(ValueError, match="one entry per text"):
        predictor.predict(["only one"], pairs=["a", "b"])


def test_training_fits_a_temperature_and_reports_calibration(tiny_model, classification_files, tmp_path):
    from tuneforge.evaluate.calibration import read_temperature

    run = tuneforge.fine_tune(tiny_recipe(tiny_model, classification_files, tmp_path / "run",
                                          train={"max_steps": 8}))
    temperature = read_temperature(run.layout.calibration)
    assert temperature > 0 and run.metrics["training"]["temperature"] == temperature
    validation = run.metrics["validation"]["calibration"]
    assert validation["temperature"] == temperature
    assert validation["nll_after"] <= validation["nll_before"] + 1e-9  # fitted on this split to lower it
    assert run.layout.reliability_diagram.is_file()
    assert run.metrics["test"]["error_analysis"]["examples"] == 30
    predictor = tuneforge.load(run.directory)
    assert predictor.temperature == temperature
    saved = pd.read_csv(run.layout.test_predictions)
    rows = predictor.predict(saved["text"].tolist())
    assert [r["score"] for r in rows] == pytest.approx(saved["score"].tolist(), abs=1e-5)
