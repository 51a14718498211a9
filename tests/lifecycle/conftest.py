"""Tiny trained runs for the service tests, trained once per session; the app under test is built over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_regression_rows, make_rows, tiny_recipe, write_csv

QUICK = {"train": {"epochs": 4}, "evaluation": {"explain_examples": 0},
         "fairness": {"counterfactual": False, "identity_categories": []}}


@pytest.fixture(autouse=True)
def _tuneforge_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI's default registry and feedback store go to a fresh folder, never the user's home."""
    home = tmp_path / "tuneforge-home"
    monkeypatch.setenv("TUNEFORGE_HOME", str(home))
    for variable in ("TUNEFORGE_REGISTRY_URI", "TUNEFORGE_FEEDBACK_URL"):
        monkeypatch.delenv(variable, raising=False)
    return home


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow database: creating one runs every schema migration (seconds), copying it does not."""
    from tuneforge.lifecycle.registry import DATABASE_FILE, Registry

    home = tmp_path_factory.mktemp("registry-template")
    Registry.local(home).client  # noqa: B018 - connecting creates and migrates the database
    return home / DATABASE_FILE


@pytest.fixture()
def make_registry(registry_template: Path):
    """A fresh local registry in a given home folder, from the migrated template."""
    import shutil

    from tuneforge.lifecycle.registry import DATABASE_FILE, Registry

    def build(home: Path):
        home.mkdir(parents=True, exist_ok=True)
        if not (home / DATABASE_FILE).exists():
            shutil.copyfile(registry_template, home / DATABASE_FILE)
        return Registry.local(home)

    return build


@pytest.fixture(scope="session")
def served_runs(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import tuneforge

    root = tmp_path_factory.mktemp("served-runs")
    # 150 rows: the tiny model then learns the task well, so a refresh has a real champion to beat.
    classification = {role: write_csv(root / "c" / f"{role}.csv", make_rows(count, seed))
                      for role, count, seed in (("train", 150, 2), ("validation", 15, 3), ("test", 15, 4))}
    regression = {role: write_csv(root / "r" / f"{role}.csv", make_regression_rows(count, seed))
                  for role, count, seed in (("train", 48, 2), ("validation", 15, 3), ("test", 15, 4))}
    classifier = tuneforge.fine_tune(tiny_recipe(tiny_model, classification, root / "classification", **QUICK))
    regressor = tuneforge.fine_tune({**tiny_recipe(tiny_model, regression, root / "regression",
                                                   data={"label_column": "score"}, **QUICK), "task": "regression"})
    return {"classification": classifier.directory, "regression": regressor.directory}
