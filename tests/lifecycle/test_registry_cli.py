"""`tuneforge registry ...`, `tuneforge serve NAME@alias` and `tuneforge refresh` as thin shells: output, exit codes,
the home folder and the registry URI from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tuneforge.cli import serve as serve_cli
from tuneforge.cli.main import main


@pytest.fixture()
def home(_tuneforge_home: Path, make_registry) -> Path:
    make_registry(_tuneforge_home)  # the migrated template, so the CLI finds a ready database
    return _tuneforge_home


def test_register_list_show_diff_promote_rollback(home: Path, served_runs: dict[str, Path], capsys) -> None:
    run = str(served_runs["classification"])
    assert main(["registry", "list"]) == 0
    assert "no registered models yet" in capsys.readouterr().out
    assert main(["registry", "register", run, "--name", "shop"]) == 0
    assert "registered shop version 1 (champion)" in capsys.readouterr().out
    assert main(["registry", "register", str(served_runs["regression"]), "--name", "shop"]) == 0
    assert "registered shop version 2 (challenger)" in capsys.readouterr().out
    assert main(["registry", "list"]) == 0
    listing = capsys.readouterr().out
    assert "shop" in listing and "champion" in listing
    assert main(["registry", "show", "shop"]) == 0
    assert "versions" in capsys.readouterr().out
    assert main(["registry", "show", "shop@champion"]) == 0
    shown = capsys.readouterr().out
    assert "shop version 1" in shown and "data_fingerprint" in shown
    assert main(["registry", "diff", "shop", "1", "2"]) == 0
    diff = capsys.readouterr().out
    assert "task" in diff and "classification" in diff and "regression" in diff and "test.accuracy" in diff
    assert main(["registry", "promote", "shop@2"]) == 0
    assert "promoted shop version 2 (champion)" in capsys.readouterr().out
    assert main(["registry", "rollback", "shop"]) == 0
    assert "rolled back to shop version 1 (champion)" in capsys.readouterr().out


def test_unknown_model_is_a_clear_error(home: Path, capsys) -> None:
    assert main(["registry", "show", "nope@champion"]) == 1
    err = capsys.readouterr().err
    assert "no model named 'nope'" in err and "--register nope" in err and "Traceback" not in err


def test_a_registry_that_cannot_be_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("TUNEFORGE_REGISTRY_URI", "nosuchscheme://registry")
    assert main(["registry", "list"]) == 1
    err = capsys.readouterr().err
    assert "cannot open the model registry" in err and "--registry-uri" in err


def test_serve_a_registered_model(home: Path, served_runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                  capsys) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append({"app": app, **options}))
    for variable in (serve_cli.SETTINGS_VARIABLE, serve_cli.TOKEN_VARIABLE):
        monkeypatch.setenv(variable, "")
    assert main(["registry", "register", str(served_runs["classification"]), "--name", "shop"]) == 0
    assert main(["serve", "shop", "--port", "9125", "--reload-interval", "2"]) == 0
    out = capsys.readouterr().out
    assert "serving shop version 1, following @champion" in out and str(home / "feedback.db") in out
    service = calls[0]["app"].state.service
    assert (service.name, service.source.alias, service.settings.reload_interval) == ("shop", "champion", 2.0)
    assert service.store is not None
    # several workers: each rebuilds the same app from the environment
    assert main(["serve", "shop@1", "--workers", "2", "--no-store"]) == 0
    worker = serve_cli.worker_app().state.service
    assert (worker.name, worker.source.alias, worker.pending[1], worker.store) == ("shop", None, "1", None)
    assert main(["serve", "nope"]) == 1
    assert "no model named 'nope'" in capsys.readouterr().err


def test_refresh_without_feedback_stops_with_exit_zero(home: Path, served_runs: dict[str, Path], tmp_path: Path,
                                                       capsys) -> None:
    import yaml

    assert main(["registry", "register", str(served_runs["classification"]), "--name", "shop"]) == 0
    recipe = yaml.safe_load((served_runs["classification"] / "recipe.yaml").read_text())
    recipe["refresh"] = {"gate": recipe["data"]["test"]}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["refresh", "shop", "--recipe", str(tmp_path / "recipe.yaml")]) == 0
    assert "not promoted" in capsys.readouterr().out
    recipe["refresh"] = {}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["refresh", "shop", "--recipe", str(tmp_path / "recipe.yaml")]) == 1
    assert "no refresh.gate" in capsys.readouterr().err
