"""`tuneforge serve` as a thin shell: checks before starting, then hands the app to uvicorn (stubbed here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from tuneforge.cli import serve as serve_cli
from tuneforge.cli.main import main


@pytest.fixture()
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """uvicorn.run replaced by a recorder, so nothing listens; the environment it may touch is restored."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append({"app": app, **options}))
    for variable in (serve_cli.SETTINGS_VARIABLE, serve_cli.TOKEN_VARIABLE):
        monkeypatch.setenv(variable, "")  # recorded, so whatever the command sets is undone
    return calls


def test_exposed_host_without_token_is_refused(served_runs: dict[str, Path], started: list, capsys) -> None:
    assert main(["serve", str(served_runs["classification"]), "--host", "0.0.0.0"]) == 1
    err = capsys.readouterr().err
    assert "without a token" in err and "--token" in err and "TUNEFORGE_TOKEN" in err
    assert "Traceback" not in err
    assert started == []


def test_loopback_starts_one_worker(served_runs: dict[str, Path], started: list) -> None:
    assert main(["serve", str(served_runs["classification"]), "--port", "9123"]) == 0
    [call] = started
    assert isinstance(call["app"], FastAPI)
    assert (call["host"], call["port"]) == ("127.0.0.1", 9123)
    assert call.get("workers", 1) == 1


def test_token_from_the_environment_and_several_workers(served_runs: dict[str, Path], started: list,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEFORGE_TOKEN", "from-env")
    code = main(["serve", str(served_runs["classification"]), "--host", "0.0.0.0", "--port", "9124",
                 "--workers", "2", "--max-batch", "8"])
    assert code == 0
    [call] = started
    assert call["app"] == "tuneforge.cli.serve:worker_app" and call["factory"] is True
    assert (call["host"], call["port"], call["workers"]) == ("0.0.0.0", 9124, 2)
    assert call["timeout_worker_healthcheck"] >= 60  # workers load torch and the model before answering pings
    worker = serve_cli.worker_app()  # what each worker process builds
    settings = worker.state.service.settings
    assert (settings.token, settings.max_batch, settings.host) == ("from-env", 8, "0.0.0.0")


def test_a_folder_that_is_not_a_run_is_refused(tmp_path: Path, started: list, capsys) -> None:
    assert main(["serve", str(tmp_path)]) == 1
    assert "not a tuneforge run directory" in capsys.readouterr().err
    assert started == []
