"""A study ranks trials on validation: trial 0 is the recipe as it is, and a split too small to rank is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import make_rows, tiny_recipe, write_csv
from tuneforge.errors import TuneforgeError
from tuneforge.recipe import recipe_from_dict
from tuneforge.search import run_study
from tuneforge.search.ranking import check_validation_size, default_params, validation_rows

QUIET = {"evaluation": {"explain_examples": 0}, "calibration": {"temperature_scaling": False},
         "fairness": {"identity_categories": []}}


def test_validation_rows_follow_the_file_or_the_carved_share(tmp_path):
    train = write_csv(tmp_path / "train.csv", make_rows(200, seed=1))
    validation = write_csv(tmp_path / "val.csv", make_rows(40, seed=2))
    assert validation_rows(recipe_from_dict({"data": {"train": str(train), "validation": str(validation)}})) == 40
    assert validation_rows(recipe_from_dict({"data": {"train": str(train), "validation_split": 0.1}})) == 20
    # test carved first, validation a share of the whole file: 10% of 200 either way
    assert validation_rows(recipe_from_dict({"data": {"train": str(train), "validation_split": 0.1,
                                                      "test_split": 0.2}})) == 20
    assert validation_rows(recipe_from_dict({"data": {"train": str(train), "validation_split": 0.0}})) == 0


def test_small_validation_splits_warn_with_the_number_and_tiny_ones_are_refused():
    assert check_validation_size(100) is None
    warning = check_validation_size(64)
    assert "64 rows" in warning and "±0.05" in warning
    with pytest.raises(TuneforgeError, match="29 rows") as refused:
        check_validation_size(29)
    assert "cross-validation" in refused.value.fix and "data.validation_split" in refused.value.fix


def test_default_params_take_the_recipes_values_where_the_space_can_hold_them():
    recipe = recipe_from_dict({"train": {"learning_rate": 3e-5, "batch_size": 16}, "search": {"space": {
        "train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True},
        "train.batch_size": {"type": "categorical", "choices": [8, 32]},
        "train.epochs": {"type": "int", "low": 1, "high": 5}}}})
    params, left_out = default_params(recipe, recipe.search.space)
    assert params == {"train.learning_rate": 3e-5, "train.epochs": 3}  # outside the range is still the default
    assert left_out == ["train.batch_size"]  # 16 is not a choice: sampled in trial 0


def _files(tmp_path: Path, validation_rows: int) -> dict[str, Path]:
    return {"train": write_csv(tmp_path / "train.csv", make_rows(60, seed=2)),
            "validation": write_csv(tmp_path / "val.csv", make_rows(validation_rows, seed=3))}


def test_trial_0_is_the_recipe_as_it_is_and_small_splits_are_reported(tiny_model, tmp_path):
    recipe = recipe_from_dict(tiny_recipe(
        tiny_model, _files(tmp_path, 36), tmp_path / "study", train={"epochs": 1, "learning_rate": 0.02}, **QUIET,
        search={"trials": 2, "pruner": "none", "sampler": "random",
                "space": {"train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True}}}))
    heard: list[str] = []
    result = run_study(recipe, on_warning=heard.append)
    rows = {row.number: row for row in result.trials}
    assert rows[0].params == {"train.learning_rate": 0.02}  # the default, although outside the searched range
    assert 1e-4 <= rows[1].params["train.learning_rate"] <= 1e-3
    assert len(heard) == 1 and "36 rows" in heard[0] and result.warnings == heard
    summary = json.loads((tmp_path / "study" / "study.json").read_text())
    assert summary["default_trial"] == 0 and summary["warnings"] == heard


def test_a_study_on_a_validation_split_too_small_to_rank_trains_nothing(tiny_model, tmp_path):
    recipe = recipe_from_dict(tiny_recipe(
        tiny_model, _files(tmp_path, 12), tmp_path / "study", **QUIET,
        search={"trials": 2, "space": {"train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3}}}))
    with pytest.raises(TuneforgeError, match="12 rows"):
        run_study(recipe)
    assert not (tmp_path / "study" / "trials").exists()
