"""`tuneforge export`: a merged adapter loads with plain Transformers and predicts like the run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import tuneforge
from tests.conftest import make_rows, tiny_recipe, write_csv
from tuneforge.cli.main import main

TEXTS = ["good food and friendly service", "the place was dirty and rude", "a table by the window"]
QUICK = {"train": {"epochs": 1, "group_by_length": False, "save_checkpoints": False},
         "early_stopping": {"enabled": False}, "evaluation": {"explain_examples": 0},
         "fairness": {"identity_categories": [], "counterfactual": False}}


@pytest.fixture(scope="module")
def train_run(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    files = {"train": write_csv(folder / "train.csv", make_rows(24, seed=51)),
             "validation": write_csv(folder / "val.csv", make_rows(6, seed=52))}
    runs: dict[str, Path] = {}

    def train(method: str) -> Path:
        if method not in runs:
            recipe = tiny_recipe(tiny_model, files, folder / method, peft={"method": method, "num_virtual_tokens": 4},
                                 **QUICK)
            runs[method] = tuneforge.fine_tune(recipe).directory
        return runs[method]

    return train


def test_export_merge_writes_a_model_that_predicts_like_the_run(train_run, tmp_path, capsys):
    run_dir = train_run("lora")
    output = tmp_path / "merged"
    assert main(["export", str(run_dir), "--merge", "--output", str(output)]) == 0
    assert str(output.resolve()) in capsys.readouterr().out
    assert (output / "model.safetensors").is_file() and not (output / "adapter_config.json").exists()

    model = AutoModelForSequenceClassification.from_pretrained(output).eval()
    tokenizer = AutoTokenizer.from_pretrained(output)
    with torch.no_grad():
        exported = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    predictor = tuneforge.load(run_dir, device="cpu")
    assert torch.allclose(exported, torch.as_tensor(predictor.logits(TEXTS), dtype=exported.dtype), atol=1e-5)
    assert model.config.id2label == predictor.model.config.id2label


def test_export_without_merge_copies_the_adapter(train_run, tmp_path):
    output = tmp_path / "adapter"
    assert main(["export", str(train_run("lora")), "--output", str(output)]) == 0
    assert (output / "adapter_config.json").is_file() and (output / "adapter_model.safetensors").is_file()


def test_prompt_tuning_cannot_be_merged(train_run, tmp_path, capsys):
    output = tmp_path / "merged"
    assert main(["export", str(train_run("prompt_tuning")), "--merge", "--output", str(output)]) == 1
    err = capsys.readouterr().err
    assert "cannot be merged" in err and "peft.method: lora" in err
    assert not output.exists()


def test_a_run_without_adapter_cannot_be_merged(tiny_model, tmp_path, capsys):
    files = {"train": write_csv(tmp_path / "train.csv", make_rows(24, seed=53))}
    recipe = tiny_recipe(tiny_model, files, tmp_path / "full", **QUICK)
    recipe["data"]["validation_split"] = 0.25
    run_dir = tuneforge.fine_tune(recipe).directory
    assert main(["export", str(run_dir), "--merge", "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "no adapter" in err and "without --merge" in err
    assert main(["export", str(run_dir), "--output", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_export_refuses_a_non_empty_output_without_overwrite(train_run, tmp_path, capsys):
    output = tmp_path / "taken"
    output.mkdir()
    (output / "notes.txt").write_text("keep me", encoding="utf-8")
    assert main(["export", str(train_run("lora")), "--merge", "--output", str(output)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (output / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert main(["export", str(train_run("lora")), "--merge", "--output", str(output), "--overwrite"]) == 0
    assert (output / "model.safetensors").is_file() and not (output / "notes.txt").exists()
