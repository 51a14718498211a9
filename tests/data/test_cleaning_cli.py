"""`tuneforge clean`: the cleaned CSV (masked, flags column) and the JSON report with every row's reason."""

from __future__ import annotations

import json

import pandas as pd

from tests.conftest import write_csv
from tuneforge.cli.main import main

ROWS = [
    {"text": "the food was great", "label": "pos"},
    {"text": "The food  was GREAT", "label": "pos"},
    {"text": "write to me at jane@example.com", "label": "neu"},
    {"text": "??!!", "label": "neg"},
    {"text": "what the fuck is this", "label": "neg"},
    {"text": "lovely staff", "label": "pos"},
    {"text": "cold coffee", "label": "neg"},
    {"text": "an ordinary table", "label": "neu"},
]


def test_clean_writes_rows_and_report(tmp_path, capsys) -> None:
    source = write_csv(tmp_path / "in.csv", ROWS)
    out, report = tmp_path / "out.csv", tmp_path / "report.json"
    assert main(["clean", "--data", str(source), "--label-column", "label", "--output", str(out), "--report",
                 str(report), "--set", "clean.mislabelled=off", "--set", f"data.cache_dir={tmp_path / 'c'}"]) == 0
    frame = pd.read_csv(out, keep_default_na=False)
    assert frame["text"].tolist() == ["the food was great", "write to me at [EMAIL]", "what the fuck is this",
                                      "lovely staff", "cold coffee", "an ordinary table"]
    assert frame["clean_flags"].tolist()[2] == "toxicity: profanity word list: fuck"
    assert frame["clean_flags"].tolist()[0] == ""
    written = json.loads(report.read_text())
    assert written["rows_before"] == 8 and written["rows_after"] == 6
    reasons = {(r["where"], r["step"], r["action"]) for r in written["rows"]}
    assert reasons == {("row 2 (line 3)", "duplicates", "drop"), ("row 4 (line 5)", "garbage", "drop"),
                       ("row 3 (line 4)", "pii", "mask"), ("row 5 (line 6)", "toxicity", "flag")}
    assert "jane@example.com" not in report.read_text()
    assert "8 rows, 6 kept" in capsys.readouterr().out


def test_a_wrong_action_is_a_recipe_error(tmp_path, capsys) -> None:
    source = write_csv(tmp_path / "in.csv", ROWS)
    assert main(["clean", "--data", str(source), "--set", "clean.toxicity=mask"]) == 1
    assert "clean.toxicity" in capsys.readouterr().err
