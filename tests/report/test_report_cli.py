"""`tuneforge report RUN_DIR [--open]`."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import pytest

from tuneforge.cli.main import main


def test_report_prints_its_path(classification_run: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    assert main(["report", str(classification_run)]) == 0
    out = capsys.readouterr().out
    report = classification_run / "report.html"
    assert str(report) in out.replace("\n", "") and report.is_file()
    assert (classification_run / "model_card.md").is_file()
    assert opened == [], "the browser opens only with --open"

    assert main(["report", str(classification_run), "--open"]) == 0
    assert opened == [report.resolve().as_uri()]


@pytest.mark.parametrize("failure", ["no browser", "browser error"])
def test_open_without_a_browser_is_not_an_error(classification_run: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    def fake_open(url: str, *args: object, **kwargs: object) -> bool:
        if failure == "browser error":
            raise webbrowser.Error("could not locate runnable browser")
        return False

    monkeypatch.setattr(webbrowser, "open", fake_open)
    assert main(["report", str(classification_run), "--open"]) == 0
    assert "no web browser found" in capsys.readouterr().out


def test_report_on_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) != 0
    assert "not a tuneforge run directory" in capsys.readouterr().err
