"""`tuneforge search`: the verb over run_study, its flags and its errors."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import make_rows, tiny_recipe, write_csv
from tuneforge.cli.main import main


def _recipe_file(tmp_path: Path, tiny_model: Path, search: dict) -> Path:
    files = {"train": write_csv(tmp_path / "train.csv", make_rows(45, seed=2)),
             "validation": write_csv(tmp_path / "val.csv", make_rows(30, seed=3))}
    data = tiny_recipe(tiny_model, files, tmp_path / "unused", train={"epochs": 1},
                       evaluation={"explain_examples": 0}, search=search)
    del data["output"]
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_search_runs_a_study_and_prints_the_leaderboard(tmp_path, tiny_model, capsys):
    path = _recipe_file(tmp_path, tiny_model, {"pruner": "none", "space": {
        "train.learning_rate": {"type": "categorical", "choices": [0.01, 0.001]}}})
    study = tmp_path / "study"
    assert main(["search", str(path), "--output", str(study), "--trials", "2", "--sampler", "grid"]) == 0
    out = capsys.readouterr().out
    assert "Leaderboard (validation f1_macro)" in out and "best recipe:" in out
    assert "2 trials (2 complete); 2 run by this command" in out
    best = yaml.safe_load((study / "best_recipe.yaml").read_text(encoding="utf-8"))
    assert best["train"]["learning_rate"] in (0.01, 0.001) and "search" not in best
    assert sorted(p.name for p in (study / "trials").iterdir()) == ["0", "1"]

    # Run again: the budget is spent, so nothing trains and the same study is reported.
    assert main(["search", str(path), "--output", str(study), "--trials", "2"]) == 0
    assert "0 run by this command" in capsys.readouterr().out


def test_search_errors_are_clear_and_train_nothing(tmp_path, tiny_model, capsys):
    path = _recipe_file(tmp_path, tiny_model, {})
    assert main(["search", str(path), "--output", str(tmp_path / "s")]) == 1
    assert "no search space" in capsys.readouterr().err
    path = _recipe_file(tmp_path, tiny_model, {"space": {"train.learning_rate": {"low": 1e-5, "high": 1e-4}}})
    assert main(["search", str(path), "--sampler", "grid", "--output", str(tmp_path / "s")]) == 1
    assert "grid search needs discrete values" in capsys.readouterr().err
    path = _recipe_file(tmp_path, tiny_model, {"space": {"train.lr": {"low": 1e-5, "high": 1e-4}}})
    assert main(["search", str(path)]) == 1
    assert "did you mean 'train.learning_rate'" in capsys.readouterr().err
    assert not (tmp_path / "s" / "trials").exists()
