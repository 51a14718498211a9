"""`tuneforge translate` advice names its own options (--model, --from/--to), not back-translation's `models`."""

from __future__ import annotations

from pathlib import Path

import pytest

import tuneforge.augment.back_translation as back_translation
from tests.conftest import write_csv
from tuneforge.cli.main import main


def test_without_apertium_the_fix_names_the_model_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys) -> None:  # noqa: ANN001
    monkeypatch.setattr(back_translation.shutil, "which", lambda name: None)
    source = write_csv(tmp_path / "train.csv", [{"text": "The house is big.", "label": "neutral"}])
    code = main(["translate", "--data", str(source), "--from", "eng", "--to", "spa",
                 "--output", str(tmp_path / "out.csv")])
    err = capsys.readouterr().err
    assert code == 1
    assert "apertium-eng-spa" in err and "--model" in err
    assert "`models`" not in err and "pivot" not in err


def test_an_unloadable_model_points_back_to_apertium(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    source = write_csv(tmp_path / "train.csv", [{"text": "The house is big.", "label": "neutral"}])
    code = main(["translate", "--data", str(source), "--from", "eng", "--to", "spa", "--model", str(folder),
                 "--output", str(tmp_path / "out.csv")])
    err = capsys.readouterr().err
    assert code == 1
    assert "`models`" not in err
    assert "--model" in err
