"""The command line end to end, as a user runs it: train, evaluate, predict, validate, init, models."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import make_rows, write_csv
from tuneforge.cli.main import main

FAST = ["--set", "train.batch_size=8", "--set", "train.learning_rate=0.01", "--set", "train.max_length=32",
        "--set", "train.warmup_ratio=0", "--set", "train.epochs=4"]


def train_flags(model: Path, files: dict[str, Path], output: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(files["train"]), "--validation", str(files["validation"]),
            "--test", str(files["test"]), "--model", str(model), "--output", str(output), *FAST, *extra]


def test_classification_train_evaluate_predict(tiny_model, classification_files, tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    assert main(train_flags(tiny_model, classification_files, run_dir)) == 0
    out = capsys.readouterr().out
    assert "f1_macro" in out and str(run_dir) in out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.5  # chance is 1/3

    assert main(["evaluate", str(run_dir), "--data", str(classification_files["test"]),
                 "--predictions", str(tmp_path / "eval.csv")]) == 0
    evaluation = json.loads((run_dir / "evaluations" / "test.json").read_text())
    assert evaluation["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert evaluation["examples"] == 30
    assert len(pd.read_csv(tmp_path / "eval.csv")) == 30

    preds = tmp_path / "preds.csv"
    assert main(["predict", str(run_dir), "--data", str(classification_files["test"]), "--output", str(preds)]) == 0
    frame = pd.read_csv(preds)
    assert list(frame.columns) == ["text", "label", "score", "prob_negative", "prob_neutral", "prob_positive"]
    assert len(frame) == 30
    assert frame[["prob_negative", "prob_neutral", "prob_positive"]].sum(axis=1).round(6).eq(1).all()

    capsys.readouterr()
    first, second = frame["text"][0], frame["text"][1]
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{first}\n\n{second}\n"))
    assert main(["predict", str(run_dir)]) == 0
    lines = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(lines["text"]) == [first, second]  # the blank line is skipped
    assert list(lines["label"]) == list(frame["label"][:2])
    assert lines["score"].tolist() == pytest.approx(frame["score"][:2].tolist(), abs=1e-6)


def test_regression_end_to_end(tiny_model, regression_files, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(train_flags(tiny_model, regression_files, run_dir, "--task", "regression", "--label-column", "score",
                            "--set", "train.epochs=10", "--set", "train.learning_rate=0.003"))
    assert code == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name in ("mse", "rmse", "mae", "r2", "pearson", "spearman"):
        assert name in metrics["test"]
    assert metrics["test"]["pearson"] > 0.5  # the target is a count of sentiment words
    assert not (run_dir / "confusion_matrix.png").exists()
    assert main(["evaluate", str(run_dir), "--data", str(regression_files["test"])]) == 0
    preds = tmp_path / "preds.csv"
    assert main(["predict", str(run_dir), "--data", str(regression_files["test"]), "--output", str(preds)]) == 0
    frame = pd.read_csv(preds)
    assert list(frame.columns) == ["text", "score"]
    assert frame["score"].dtype.kind == "f"


def test_train_from_recipe_with_set_override(tiny_model, classification_files, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"name": str(tiny_model)},
        "data": {"train": "train.csv", "validation": "val.csv"},
        "train": {"max_steps": 2, "batch_size": 8, "max_length": 32},
        "output": {"dir": str(tmp_path / "run")},
    }))
    assert main(["train", str(recipe), "--set", "train.seed=7"]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert saved["train"]["seed"] == 7
    assert saved["data"]["train"] == str(classification_files["train"])


def test_existing_run_is_not_overwritten_silently(tiny_model, classification_files, tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = train_flags(tiny_model, classification_files, run_dir, "--set", "train.max_steps=2")
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--overwrite" in err
    assert main([*args, "--overwrite"]) == 0


def test_init_writes_a_recipe_that_validates(tiny_model, classification_files, tmp_path, capsys):
    assert main(["init", "--task", "regression", "--data", "train.csv"]) == 0
    text = capsys.readouterr().out
    assert "# " in text and "task: regression" in text
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    data = yaml.safe_load(text)
    assert data["data"]["train"] == "train.csv"
    assert main(["validate", str(recipe), "--set", f"model.name={tiny_model}", "--set", "data.label_column=label",
                 "--task", "classification"]) == 0
    assert "recipe is valid" in capsys.readouterr().out


def test_validate_lists_every_problem_and_fails(tmp_path, capsys):
    train = write_csv(tmp_path / "train.csv", [*make_rows(20, seed=1), {"text": "", "label": "positive"},
                                               {"text": "lonely", "label": "rare"}])
    val = write_csv(tmp_path / "val.csv", [*make_rows(6, seed=2), {"text": "hello", "label": "unknown"}])
    code = main(["validate", "--data", str(train), "--validation", str(val)])
    assert code == 1
    err = capsys.readouterr().err
    assert "empty text" in err
    assert "'rare'" in err and "fewer than 2" in err
    assert "'unknown' never occurs" in err
    assert err.count("fix:") >= 3


def test_missing_column_names_the_fix(tmp_path, capsys):
    train = write_csv(tmp_path / "train.csv", [{"sentence": r["text"], "label": r["label"]} for r in make_rows(9, 1)])
    assert main(["train", "--data", str(train), "--output", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "column 'text' is missing" in err and "--text-column" in err
    assert not (tmp_path / "run" / "model").exists()


def test_unknown_hub_model_offline_fails_with_hint(classification_files, tmp_path, capsys):
    code = main(["train", "--data", str(classification_files["train"]), "--model", "nobody/no-such-model",
                 "--output", str(tmp_path / "run")])
    assert code == 1
    err = capsys.readouterr().err
    assert "no-such-model" in err and "tuneforge models" in err


def test_models_lists_the_bundled_and_local_models(tiny_model, capsys):
    assert main(["models", "--dir", str(tiny_model.parent)]) == 0
    out = capsys.readouterr().out
    assert "minilm" in out and "bundled" in out and "22.7 M" in out
    assert "local" in out


def test_real_entry_point_exit_codes(tmp_path):
    bad = tmp_path / "recipe.yaml"
    bad.write_text("train:\n  learning_rat: 0.1\n")
    result = subprocess.run([sys.executable, "-m", "tuneforge.cli.main", "validate", str(bad)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "learning_rat" in result.stderr and "did you mean 'learning_rate'" in result.stderr
    assert "Traceback" not in result.stderr
    ok = subprocess.run([sys.executable, "-m", "tuneforge.cli.main", "--version"], capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0 and "tuneforge" in ok.stdout


def test_leakage_between_splits_is_warned_but_training_goes_on(tiny_model, tmp_path, capsys):
    rows = make_rows(30, seed=1)
    train = write_csv(tmp_path / "train.csv", rows)
    val = write_csv(tmp_path / "val.csv", rows[:6] + make_rows(6, seed=9))
    code = main(["train", "--data", str(train), "--validation", str(val), "--model", str(tiny_model),
                 "--output", str(tmp_path / "run"), "--set", "train.max_steps=1"])
    assert code == 0
    err = capsys.readouterr().err
    assert "warning" in err and "also occur in" in err and "optimistic" in err
    assert "also occur in" in (tmp_path / "run" / "data.json").read_text()
