"""The bundled demo needs nothing but the package: its data and model ship with it."""

from __future__ import annotations

import json

import pytest

from tuneforge.cli.main import main
from tuneforge.data.prepare import load_and_check
from tuneforge.demo import demo_data_dir, demo_recipe
from tuneforge.models.resolve import resolve_model


def test_demo_recipe_is_valid_with_packaged_data_and_model(tmp_path):
    recipe = demo_recipe(tmp_path / "demo")
    loaded, problems = load_and_check(recipe)
    assert [p for p in problems if p.severity == "error"] == []
    assert {role: len(ds) for role, (_, ds) in loaded.items()} == {"train": 500, "validation": 100, "test": 400}
    assert (demo_data_dir() / "SOURCE.md").is_file() and (demo_data_dir() / "LICENSE").is_file()
    assert resolve_model(recipe.model.name).source == "bundled"


@pytest.mark.slow
def test_demo_trains_the_real_model_above_chance(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path / "demo"), "--set", "train.epochs=1"]) == 0
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["test"]["f1_macro"] > 0.6  # three balanced-ish classes: chance is about 0.33
    assert "run directory" in capsys.readouterr().out
