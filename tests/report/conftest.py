"""Tiny trained runs (one classification, one regression), trained once and copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import make_regression_rows, make_rows, tiny_recipe, write_csv

LIGHT = shutil.ignore_patterns("checkpoints", "model", "tensorboard")  # the report reads neither


def with_pronouns(rows: list[dict]) -> list[dict]:
    """Every other text names a gender, so the fairness audit that ends training has groups to compare."""
    return [{**row, "text": f"{('she', 'he')[i % 4 // 2]} said {row['text']}" if i % 2 == 0 else row["text"]}
            for i, row in enumerate(rows)]


@pytest.fixture(scope="session")
def trained_runs(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import tuneforge

    root = tmp_path_factory.mktemp("report-runs")
    classification = {role: write_csv(root / "c" / f"{role}.csv", with_pronouns(make_rows(count, seed)))
                      for role, count, seed in (("train", 60, 2), ("validation", 30, 3), ("test", 30, 4))}
    regression = {role: write_csv(root / "r" / f"{role}.csv", make_regression_rows(count, seed))
                  for role, count, seed in (("train", 60, 2), ("validation", 20, 3), ("test", 20, 4))}
    classifier = tuneforge.fine_tune(tiny_recipe(tiny_model, classification, root / "classification"))
    regressor = tuneforge.fine_tune({**tiny_recipe(tiny_model, regression, root / "regression",
                                                   data={"label_column": "score"}), "task": "regression"})
    runs = {"classification": classifier.directory, "regression": regressor.directory}
    return runs


@pytest.fixture()
def classification_run(trained_runs: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_runs["classification"], tmp_path / "classification-run", ignore=LIGHT))


@pytest.fixture()
def regression_run(trained_runs: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_runs["regression"], tmp_path / "regression-run", ignore=LIGHT))
