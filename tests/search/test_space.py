"""The search space: paths checked against the recipe schema, values sampled and applied."""

from __future__ import annotations

import optuna
import pytest

from tuneforge.errors import RecipeError, TuneforgeError
from tuneforge.recipe import recipe_from_dict
from tuneforge.search.space import best_recipe, grid, recipe_data, suggest, trial_recipe

LR = {"type": "float", "low": 1e-5, "high": 1e-4, "log": True}


def _problems(space: dict) -> str:
    with pytest.raises(RecipeError) as caught:
        recipe_from_dict({"search": {"space": space}})
    return " ".join(f"{p.where} {p.message}" for p in caught.value.problems)


def test_a_valid_space_loads():
    recipe = recipe_from_dict({"search": {"space": {
        "train.learning_rate": LR, "train.batch_size": {"type": "categorical", "choices": [8, 16]},
        "freeze.layers": {"type": "int", "low": 0, "high": 4}, "peft.r": {"type": "int", "low": 4, "high": 16}}}})
    assert recipe.search.space["train.learning_rate"].log
    assert recipe.search.sampler == "tpe" and recipe.search.pruner == "median"


def test_an_unknown_path_names_the_closest_field():
    assert "did you mean 'train.learning_rate'" in _problems({"train.learnig_rate": LR})
    assert "did you mean 'train.learning_rate'" in _problems({"optim.learning_rate": LR})
    assert "section.field" in _problems({"lr": LR})


def test_values_are_checked_against_the_schema():
    assert "holds whole numbers; use type: int" in _problems({"freeze.layers": {"type": "float", "low": 0,
                                                                                "high": 3}})
    assert "the value 0 does not make a valid recipe" in _problems({"train.max_length": {"type": "int", "low": 0,
                                                                                         "high": 64}})
    assert "'weird'" in _problems({"loss.name": {"type": "categorical", "choices": ["focal", "weird"]}})
    assert "cannot be searched" in _problems({"output.dir": {"type": "categorical", "choices": ["a"]}})


def test_values_are_checked_against_the_rest_of_the_recipe():
    # freezing cannot be combined with PEFT: a space that would produce such a trial fails at load time
    with pytest.raises(RecipeError, match="cannot be combined"):
        recipe_from_dict({"peft": {"method": "lora"},
                          "search": {"space": {"freeze.layers": {"type": "int", "low": 0, "high": 2}}}})


def test_parameter_definitions_are_checked():
    assert "needs choices" in _problems({"train.batch_size": {"type": "categorical"}})
    assert "log: true needs low > 0" in _problems({"train.learning_rate": {"low": 0, "high": 1, "log": True}})
    assert "low (2) is above high (1)" in _problems({"train.epochs": {"low": 2, "high": 1}})


def test_grid_needs_discrete_values():
    recipe = recipe_from_dict({"search": {"sampler": "grid", "space": {
        "train.batch_size": {"type": "categorical", "choices": [8, 16]},
        "freeze.layers": {"type": "int", "low": 0, "high": 4, "step": 2},
        "train.warmup_ratio": {"type": "float", "low": 0.0, "high": 0.1, "step": 0.05}}}})
    assert grid(recipe.search.space) == {"train.batch_size": [8, 16], "freeze.layers": [0, 2, 4],
                                         "train.warmup_ratio": [0.0, 0.05, 0.1]}
    continuous = recipe_from_dict({"search": {"space": {"train.learning_rate": LR}}})
    with pytest.raises(TuneforgeError, match="train.learning_rate is a continuous float range"):
        grid(continuous.search.space)


def test_sampled_values_land_in_the_trial_recipe(tmp_path):
    recipe = recipe_from_dict({"evaluation": {"explain_examples": 3}, "search": {"space": {
        "train.learning_rate": LR, "train.batch_size": {"type": "categorical", "choices": [8, 16]}}}})
    trial = optuna.trial.FixedTrial({"train.learning_rate": 3e-5, "train.batch_size": 16})
    params = {path: suggest(trial, path, param) for path, param in recipe.search.space.items()}
    assert params == {"train.learning_rate": 3e-5, "train.batch_size": 16}
    run = trial_recipe(recipe, params, str(tmp_path / "trials" / "0"))
    assert run.train.learning_rate == 3e-5 and run.train.batch_size == 16
    assert run.output.dir == str(tmp_path / "trials" / "0") and not run.search.space
    assert run.evaluation.explain_examples == 0  # trials skip explanations unless search.explain_trials
    best = best_recipe(recipe, params)
    assert best.output.dir is None and best.evaluation.explain_examples == 3
    assert "search" not in recipe_data(best)
