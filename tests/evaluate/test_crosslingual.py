"""Cross-lingual evaluation: one run, one row per language, and the data-language warning."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.conftest import make_rows, tiny_recipe, write_csv
from tuneforge.cli.main import main
from tuneforge.data.language import language_mismatch
from tuneforge.evaluate.crosslingual import evaluate_languages
from tuneforge.predict import Predictor
from tuneforge.recipe import recipe_from_dict
from tuneforge.train.skeleton import fine_tune

# A made-up "language": every word of the training data replaced by an unrelated word, labels kept.
CIPHER = {word: "zz" + word[::-1] for word in "good great excellent lovely happy wonderful tasty friendly bad awful "
          "terrible rude sad horrible bland dirty table street monday paper window train number office the a food "
          "service was place and very it we really today".split()}


def ciphered(rows: list[dict]) -> list[dict]:
    return [{"text": " ".join(CIPHER[w] for w in row["text"].split()), "label": row["label"]} for row in rows]


@pytest.fixture(scope="module")
def english_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("crosslingual")
    files = {"train": write_csv(folder / "train.csv", make_rows(120, seed=2)),
             "validation": write_csv(folder / "val.csv", make_rows(30, seed=3))}
    recipe = recipe_from_dict(tiny_recipe(tiny_model, files, folder / "run", calibration={"temperature_scaling": False},
                                          evaluation={"explain_examples": 0},
                                          train={"epochs": 30, "learning_rate": 2e-3, "warmup_ratio": 0.1},
                                          early_stopping={"enabled": False}))
    return fine_tune(recipe).directory


def test_one_row_per_language_and_transfer_gap(english_run: Path, tmp_path: Path) -> None:
    test_rows = make_rows(60, seed=7)
    files = {"english": write_csv(tmp_path / "en.csv", test_rows),
             "cipher": write_csv(tmp_path / "zz.csv", ciphered(test_rows))}
    rows = evaluate_languages(Predictor.from_run(english_run), files)
    assert [r["language"] for r in rows] == ["english", "cipher"] and all(r["rows"] == 60 for r in rows)
    by_language = {r["language"]: r for r in rows}
    assert by_language["english"]["f1_macro"] > 0.8
    assert by_language["cipher"]["f1_macro"] < by_language["english"]["f1_macro"] - 0.3  # nothing transfers
    assert by_language["english"]["detected_language"] == "en"

    output = tmp_path / "table.json"
    assert main(["crosslingual", str(english_run), "--eval", f"english={files['english']}",
                 "--eval", f"cipher={files['cipher']}", "--output", str(output)]) == 0
    assert [r["language"] for r in json.loads(output.read_text())["languages"]] == ["english", "cipher"]
    assert main(["crosslingual", str(english_run), "--eval", "english"]) == 1


def test_language_mismatch_warns_only_when_sure() -> None:
    indonesian = ["saya tidak suka makanan ini karena sangat asin", "ini yang terbaik dan saya akan datang lagi"] * 5
    warning = language_mismatch("en", "train.csv", indonesian)
    assert warning and warning[0].severity == "warning" and "'id'" in warning[0].message
    assert language_mismatch("id", "train.csv", indonesian) == []
    assert language_mismatch("xx", "train.csv", indonesian) == []  # a language the heuristic does not know
    rng = random.Random(0)
    assert language_mismatch("en", "t.csv", ["".join(rng.choice("qxz") for _ in range(9))]) == []
