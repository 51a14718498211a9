"""translate-train / translate-test: a labelled file through a real MT engine (Apertium), labels untouched."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.augment.conftest import apertium  # noqa: F401  (the fixture)
from tests.conftest import write_csv
from tuneforge.cli.main import main
from tuneforge.data.translation import translate_table
from tuneforge.errors import DataError

ROWS = [{"id": "1", "text": "The house is big.", "label": "neutral"},
        {"id": "2", "text": "I like the red car.", "label": "positive"},
        {"id": "3", "text": "", "label": "negative"}]


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_translate_train_keeps_labels_and_ids(apertium: str, tmp_path: Path) -> None:  # noqa: F811
    source = write_csv(tmp_path / "train.csv", ROWS)
    result = translate_table(source, ["text"], tmp_path / "spa.csv", "eng", "spa", keep_original=True)
    assert result.engine == "apertium:eng-spa" and result.translated_cells == 2 and result.rows == 3
    rows = read(tmp_path / "spa.csv")
    assert [r["label"] for r in rows] == ["neutral", "positive", "negative"]
    assert [r["id"] for r in rows] == ["1", "2", "3"]
    assert "casa" in rows[0]["text"].lower() and "coche" in rows[1]["text"].lower()
    assert rows[0]["text_original"] == "The house is big."
    assert rows[2]["text"] == ""  # nothing to translate stays empty


def test_cli_translate_and_missing_column(apertium: str, tmp_path: Path) -> None:  # noqa: F811
    source = write_csv(tmp_path / "train.csv", ROWS)
    assert main(["translate", "--data", str(source), "--from", "eng", "--to", "spa",
                 "--output", str(tmp_path / "out.csv")]) == 0
    assert len(read(tmp_path / "out.csv")) == 3
    with pytest.raises(DataError, match="sentence"):
        translate_table(source, ["sentence"], tmp_path / "x.csv", "eng", "spa")
    assert main(["translate", "--data", str(source), "--from", "eng", "--to", "klingon",
                 "--output", str(tmp_path / "k.csv")]) == 1
