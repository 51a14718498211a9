"""`tuneforge explain` end to end."""

from __future__ import annotations

import json

from tests.conftest import write_csv
from tests.explain.conftest import TRIGGER, trigger_rows
from tuneforge.cli.main import main

QUICK = ["--ig-steps", "16", "--shap-evals", "60", "--lime-samples", "60"]


def test_texts_with_all_methods_write_every_file(trigger_run, tmp_path, capsys):
    out = tmp_path / "out"
    positive, negative = (row["text"] for row in trigger_rows(2, seed=5))
    texts = [positive, negative + " <b>"]
    args = ["explain", str(trigger_run), "--text", texts[0], "--text", texts[1], "--output", str(out), *QUICK]
    assert main(args) == 0
    assert "explanations written" in capsys.readouterr().out
    names = {path.name for path in out.iterdir()}
    assert names == {"explanations.json", "explanations.html", "global_tokens.json",
                     "attention_000_heads.png", "attention_000_rollout.png",
                     "attention_001_heads.png", "attention_001_rollout.png"}
    document = json.loads((out / "explanations.json").read_text())
    assert document["methods"] == ["ig", "shap", "lime", "attention"]
    first, second = document["texts"]
    assert first["text"] == texts[0] and second["index"] == 1
    assert first["prediction"]["label"] == "positive"
    assert set(second["prediction"]["probabilities"]) == {"negative", "positive"}
    for method, entry in first["explanations"].items():
        assert set(entry) == {"tokens", "scores", "label", "probability", "level", "delta"}
        assert len(entry["tokens"]) == len(entry["scores"])
        if method != "attention":
            assert entry["tokens"][max(range(len(entry["scores"])), key=lambda i: abs(entry["scores"][i]))] == TRIGGER
    assert first["plots"] == {"attention_heads": "attention_000_heads.png",
                              "attention_rollout": "attention_000_rollout.png"}
    page = (out / "explanations.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "&lt;b&gt;" in page
    assert "Most influential tokens per class" in page
    global_tokens = json.loads((out / "global_tokens.json").read_text())
    assert set(global_tokens) == {"ig", "shap", "lime", "attention"}
    assert set(global_tokens["ig"]) == {"positive", "negative"}
    assert set(global_tokens["ig"]["positive"][0]) == {"token", "mean_score", "count"}


def test_data_file_with_limit_and_chosen_methods(trigger_run, tmp_path):
    data = write_csv(tmp_path / "new.csv", trigger_rows(6, seed=11))
    assert main(["explain", str(trigger_run), "--data", str(data), "--limit", "3", "--method", "ig,lime",
                 *QUICK]) == 0
    out = trigger_run / "explanations"  # the default place
    document = json.loads((out / "explanations.json").read_text())
    assert len(document["texts"]) == 3 and document["methods"] == ["ig", "lime"]
    assert all(set(entry["explanations"]) == {"ig", "lime"} for entry in document["texts"])
    assert not list(out.glob("*.png"))


def test_user_errors_say_how_to_fix(trigger_run, tmp_path, capsys):
    assert main(["explain", str(trigger_run)]) == 1
    err = capsys.readouterr().err
    assert "nothing to explain" in err and "--text" in err and "--data" in err
    assert main(["explain", str(trigger_run), "--text", "x", "--method", "gradcam"]) == 1
    assert "gradcam" in capsys.readouterr().err
    assert main(["explain", str(trigger_run), "--text", "x", "--label", "maybe", "--method", "ig"]) == 1
    assert "negative, positive" in capsys.readouterr().err
