"""The CLI for generative runs: init, validate and train with the column flags, predict from a prompt file."""

from __future__ import annotations

import json

import pandas as pd
import yaml

from tests.conftest import write_csv
from tests.tiny_generative import echo_rows
from tuneforge.cli.main import main
from tuneforge.recipe import recipe_from_dict


def test_init_writes_a_valid_causal_lm_recipe(capsys):
    assert main(["init", "--task", "causal-lm"]) == 0
    recipe = recipe_from_dict(yaml.safe_load(capsys.readouterr().out))
    assert recipe.task == "causal-lm" and recipe.generation.max_new_tokens == 64 and recipe.lm.packing is False


def test_validate_names_the_missing_chat_column(tmp_path, capsys):
    path = write_csv(tmp_path / "chats.csv", [{"chat": "[]"}] * 3)
    assert main(["validate", "--task", "causal-lm", "--data", str(path), "--messages-column", "messages"]) == 1
    err = capsys.readouterr().err
    assert "column 'messages' is missing" in err and "--messages-column" in err


def test_validate_refuses_an_encoder_for_seq2seq(tmp_path, capsys):
    path = write_csv(tmp_path / "pairs.csv", [{"text": "a", "target": "b"}] * 3)
    assert main(["validate", "--task", "seq2seq", "--data", str(path), "--set", "model.name=minilm"]) == 1
    assert "has no sequence-to-sequence head" in capsys.readouterr().err


def test_train_with_flags_and_predict(tiny_gpt2, tmp_path, capsys):
    rows = [{"question": r["prompt"], "answer": r["response"]} for r in echo_rows(16, seed=1)]
    data = write_csv(tmp_path / "train.csv", rows)
    run = tmp_path / "run"
    code = main(["train", "--task", "causal-lm", "--data", str(data), "--prompt-column", "question",
                 "--response-column", "answer", "--model", str(tiny_gpt2), "--output", str(run),
                 "--set", "train.max_steps=2", "--set", "train.max_length=32", "--set", "data.validation_split=0",
                 "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "generation.max_new_tokens=3"])
    assert code == 0, capsys.readouterr().err
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    assert recipe["data"]["prompt_column"] == "question" and recipe["data"]["response_column"] == "answer"
    assert json.loads((run / "metrics.json").read_text())["training"]["global_steps"] == 2
    output = tmp_path / "out.csv"
    assert main(["predict", str(run), "--data", str(data), "--output", str(output), "--max-new-tokens", "2"]) == 0
    frame = pd.read_csv(output, keep_default_na=False)
    assert list(frame.columns) == ["text", "generated"] and len(frame) == 16
    assert list(frame["text"]) == [r["question"] for r in rows]
