"""A run directory that names code (domain functions, evaluation plugins, remote model code) runs none of it when
loaded, unless the user trusts it: for one command, or by path in the user's settings file."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_recipe
from tuneforge.cli.main import main
from tuneforge.predict import Predictor
from tuneforge.recipe import recipe_from_dict
from tuneforge.train.skeleton import fine_tune
from tuneforge.trust import HOME_VARIABLE, RunCodeRefused


@pytest.fixture(scope="module")
def trained_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import make_rows, write_csv

    folder = tmp_path_factory.mktemp("trust")
    files = {"train": write_csv(folder / "train.csv", make_rows(40, seed=2)),
             "validation": write_csv(folder / "val.csv", make_rows(20, seed=3))}
    recipe = recipe_from_dict(tiny_recipe(
        tiny_model, files, folder / "run", train={"epochs": 1},
        domain={"rules": [{"pattern": r"\bzzgood\b", "replacement": "good"}]},
        calibration={"temperature_scaling": False}, evaluation={"explain_examples": 0}))
    return fine_tune(recipe).directory


@pytest.fixture()
def planted_run(trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the run whose domain_rules.json makes every prediction a shell command."""
    monkeypatch.setenv(HOME_VARIABLE, str(tmp_path / "home"))  # no user settings file
    run = tmp_path / "received-run"
    shutil.copytree(trained_run, run)
    rules = json.loads((run / "domain_rules.json").read_text())
    rules["functions"] = ["os:system"]
    (run / "domain_rules.json").write_text(json.dumps(rules))
    return run


def test_predict_refuses_a_run_that_names_functions_and_runs_nothing(planted_run: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "marker"
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"touch {marker}\n"))
    assert main(["predict", str(planted_run)]) == RunCodeRefused.exit_code
    said = " ".join(capsys.readouterr().err.split())
    assert "os:system" in said and "--trust-run-code" in said
    assert not marker.exists()
    with pytest.raises(RunCodeRefused, match="os:system"):
        Predictor.from_run(planted_run)


def test_trusting_the_run_runs_its_code(planted_run: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    predictor = Predictor.from_run(planted_run, trust_run_code=True)
    predictor.predict([f"touch {marker}"])
    assert marker.exists()  # proof that the refusal above stood between a request and a shell


def test_the_settings_allow_list_trusts_named_paths_only(planted_run: Path, tmp_path: Path) -> None:
    settings = tmp_path / "home" / "settings.yaml"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(yaml.safe_dump({"trusted_run_code": ["os.getcwd"]}))
    with pytest.raises(RunCodeRefused):
        Predictor.from_run(planted_run)
    settings.write_text(yaml.safe_dump({"trusted_run_code": ["os:system"]}))
    assert Predictor.from_run(planted_run).rules.functions == ("os:system",)


def test_serving_refuses_the_run(planted_run: Path) -> None:
    from fastapi.testclient import TestClient

    from tuneforge.lifecycle.serve import create_app

    with pytest.raises(RunCodeRefused), TestClient(create_app(planted_run)) as client:
        client.post("/predict", json={"texts": ["echo hi"]})


def _received_with(trained_run: Path, tmp_path: Path, section: str, field: str) -> tuple[Path, dict]:
    """A copy of the run whose recipe names os:system in `section.field`, as a stranger's run could."""
    run = tmp_path / "received-run"
    shutil.copytree(trained_run, run)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe.setdefault(section, {})[field] = ["os:system"]
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return run, recipe


def test_evaluate_refuses_plugins_named_by_the_run(trained_run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOME_VARIABLE, str(tmp_path / "home"))
    run, recipe = _received_with(trained_run, tmp_path, "evaluation", "plugins")
    data = Path(recipe["data"]["validation"])
    assert main(["evaluate", str(run), "--data", str(data)]) == RunCodeRefused.exit_code
    assert "evaluation.plugins: os:system" in " ".join(capsys.readouterr().err.split())


def test_resume_refuses_a_recipe_that_names_functions(trained_run: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOME_VARIABLE, str(tmp_path / "home"))
    run, _ = _received_with(trained_run, tmp_path, "domain", "functions")
    assert main(["train", "--resume", "--output", str(run)]) == RunCodeRefused.exit_code
    assert "domain.functions: os:system" in " ".join(capsys.readouterr().err.split())
