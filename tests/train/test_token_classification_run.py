"""Token classification end to end: CoNLL files in, entity metrics, predictions, evaluate and predict out."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

import tuneforge
from tests.conftest import build_tiny_bert, tiny_recipe
from tuneforge.cli.main import main
from tuneforge.errors import DataError
from tuneforge.train.losses import build_loss

PEOPLE = ["john", "mary", "ada", "bola"]
PLACES = ["lagos", "paris", "kano", "accra"]
FILLER = ["the", "went", "to", "and", "saw", "today", "we", "food"]


def sentences(count: int, seed: int) -> list[tuple[list[str], list[str]]]:
    """Names are persons, cities are locations, whatever the context: learnable from the word alone."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        words, tags = [], []
        for _ in range(6):
            draw = rng.random()
            if draw < 0.2:
                words.append(rng.choice(PEOPLE))
                tags.append("B-PER")
            elif draw < 0.4:
                words += ["new", rng.choice(PLACES)]  # two-word locations exercise I- tags
                tags += ["B-LOC", "I-LOC"]
            else:
                words.append(rng.choice(FILLER))
                tags.append("O")
        rows.append((words, tags))
    return rows


def write_conll(path: Path, rows: list[tuple[list[str], list[str]]]) -> Path:
    path.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(*row, strict=True)) for row in rows) + "\n",
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ner")
    model = build_tiny_bert(folder / "model", [" ".join(PEOPLE + PLACES + FILLER + ["new"])] * 20)
    files = {"train": write_conll(folder / "train.txt", sentences(120, 1)),
             "validation": write_conll(folder / "dev.txt", sentences(30, 2)),
             "test": write_conll(folder / "test.txt", sentences(30, 3))}
    recipe = tiny_recipe(model, files, folder / "run", train={"epochs": 8, "learning_rate": 5e-3})
    run = tuneforge.fine_tune({**recipe, "task": "ner"})
    return run, files


def test_training_reaches_high_entity_f1_and_writes_predictions(tagger):
    run, _ = tagger
    assert run.recipe.task == "token-classification"
    assert run.metrics["labels"] == ["O", "B-LOC", "I-LOC", "B-PER"]
    test = run.metrics["test"]
    assert test["f1"] >= 0.9 and set(test["per_type"]) == {"LOC", "PER"}
    first = json.loads((run.directory / "predictions_test.jsonl").read_text().splitlines()[0])
    assert len(first["tokens"]) == len(first["tags"]) == len(first["predicted"])
    assert (run.directory / "report.html").is_file()
    assert not (run.directory / "fairness.json").exists()  # whole-text audits do not apply to tagging


def test_predictor_tags_words_and_returns_entity_spans(tagger):
    run, _ = tagger
    [result] = tuneforge.load(run.directory).predict(["mary went to new paris today"])
    assert result["tags"] == ["B-PER", "O", "O", "B-LOC", "I-LOC", "O"]
    assert result["entities"] == [{"type": "PER", "start": 0, "end": 1, "text": "mary"},
                                  {"type": "LOC", "start": 3, "end": 5, "text": "new paris"}]


def test_cli_evaluate_and_predict(tagger, tmp_path, capsys):
    run, files = tagger
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(run.directory), "--data", str(files["test"]), "--output", str(out),
                 "--predictions", str(tmp_path / "rows.jsonl")]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["f1"] == pytest.approx(run.metrics["test"]["f1"])
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == 30
    capsys.readouterr()
    assert main(["predict", str(run.directory), "--data", str(files["test"]), "--output",
                 str(tmp_path / "p.jsonl")]) == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 30


def test_bad_tags_are_reported_with_file_and_line(tmp_path, tiny_model):
    train = tmp_path / "train.conll"
    train.write_text("john PERSON\nwent O\n\nmary B-PER\n", encoding="utf-8")
    recipe = tiny_recipe(tiny_model, {"train": train}, tmp_path / "run")
    with pytest.raises(DataError) as caught:
        tuneforge.fine_tune({**recipe, "task": "token-classification"})
    [problem] = caught.value.problems
    assert problem.where == f"{train}:1" and "not in BIO form" in problem.message


def test_token_loss_is_a_mean_over_labelled_tokens_whatever_the_accumulation():
    from tuneforge.recipe import Recipe

    loss = build_loss(Recipe.model_validate({"task": "ner"}))
    torch.manual_seed(0)
    logits = torch.randn(4, 5, 3)
    labels = torch.tensor([[0, 1, -100, 2, -100]] * 4)
    whole = loss({"logits": logits}, labels, num_items_in_batch=12)
    halves = sum(loss({"logits": logits[i:i + 2]}, labels[i:i + 2], num_items_in_batch=12) for i in (0, 2))
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 3), labels.reshape(-1), ignore_index=-100)
    assert torch.allclose(whole, expected) and torch.allclose(halves, expected)


def test_validate_checks_token_data(tagger, tmp_path, capsys):
    _, files = tagger
    assert main(["validate", "--data", str(files["train"]), "--validation", str(files["validation"]),
                 "--task", "ner"]) == 0
    assert "recipe is valid: token-classification" in capsys.readouterr().out
    bad = tmp_path / "bad.txt"
    bad.write_text("john PER\nwent O\n", encoding="utf-8")
    assert main(["validate", "--data", str(bad), "--task", "ner"]) == 1
    assert "not in BIO form" in capsys.readouterr().err
