"""`tuneforge validate` lists the recipe's problems and the data's problems in one go."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import make_rows, write_csv
from tuneforge.cli.main import main


def test_recipe_and_data_problems_are_listed_together(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    train = write_csv(tmp_path / "train.csv", [*make_rows(20, seed=1), {"text": "", "label": "positive"}])
    val = write_csv(tmp_path / "val.csv", [*make_rows(6, seed=2), {"text": "hello", "label": "unknown"}])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"data:\n  train: {train.name}\n  validation: {val.name}\n"
                      "train:\n  learning_rat: 0.1\n  epochs: -1\n", encoding="utf-8")
    code = main(["validate", str(recipe)])
    err = capsys.readouterr().err
    assert code == 1
    assert "learning_rat" in err and "did you mean 'learning_rate'" in err  # the recipe's problems
    assert "train.epochs" in err
    assert "empty text" in err and "'unknown' never occurs" in err  # and the data's, in the same run


def test_a_wrong_data_field_stops_before_the_data(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    train = write_csv(tmp_path / "train.csv", make_rows(20, seed=1))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"task: clasification\ndata:\n  train: {train.name}\n", encoding="utf-8")
    assert main(["validate", str(recipe)]) == 1
    err = capsys.readouterr().err
    assert "task" in err and "recipe has 1 problem" in err
