"""Domain adaptation inside a run: rules at training and prediction, new words, continued pretraining."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import make_rows, tiny_recipe, write_csv
from tuneforge.errors import RecipeError
from tuneforge.predict import Predictor
from tuneforge.recipe import recipe_from_dict
from tuneforge.train.skeleton import fine_tune


def test_rules_vocabulary_and_pretraining_in_one_run(tiny_model: Path, classification_files: dict[str, Path],
                                                     tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(r["text"] + " cardiomyopathy" for r in make_rows(80, seed=9)), encoding="utf-8")
    recipe = recipe_from_dict(tiny_recipe(
        tiny_model, classification_files, tmp_path / "run",
        train={"epochs": 1, "stages": ["pretrain", "finetune"]},
        domain={"rules": [{"pattern": r"\bzzgood\b", "replacement": "good"}], "extend_vocabulary": True,
                "min_term_frequency": 3, "min_term_pieces": 3},
        pretrain={"corpus": str(corpus), "epochs": 3, "batch_size": 16, "learning_rate": 5e-3},
        calibration={"temperature_scaling": False}, evaluation={"explain_examples": 0},
    ))
    run = fine_tune(recipe)
    domain = run.metrics["domain"]
    assert domain["rules"]["rules"] == 1
    assert "cardiomyopathy" in domain["vocabulary"]["tokens"]
    pretraining = domain["pretraining"]
    # auto: the tiny BERT is saved without its masked-LM head, so TSDAE adapts it (test_sentence_adaptation.py)
    assert pretraining["objective"] == "tsdae" and pretraining["steps"] > 0
    assert pretraining["held_out_loss_after"] < pretraining["held_out_loss_before"]
    assert (run.directory / "domain_rules.json").is_file()
    assert (run.directory / "pretrained" / "model.safetensors").is_file()

    predictor = Predictor.from_run(run.directory)
    assert predictor.tokenizer.tokenize("cardiomyopathy") == ["cardiomyopathy"]
    # The rule rewrites the unseen spelling at prediction time exactly as at training time.
    raw = predictor.probabilities(["the food zzgood was very"])
    rewritten = predictor.probabilities(["the food good was very"])
    assert raw == pytest.approx(rewritten)


def test_resume_reuses_the_pretrained_base(tiny_model: Path, classification_files: dict[str, Path],
                                           tmp_path: Path) -> None:
    corpus = write_csv(tmp_path / "corpus.csv", make_rows(40, seed=5))
    output = tmp_path / "run"
    recipe = recipe_from_dict(tiny_recipe(
        tiny_model, classification_files, output,
        train={"epochs": 1, "stages": ["pretrain", "finetune"], "keep_checkpoints": True},
        pretrain={"corpus": str(corpus), "max_steps": 2}, calibration={"temperature_scaling": False},
        evaluation={"explain_examples": 0},
    ))
    fine_tune(recipe)
    stamp = (output / "pretrained" / "pretraining.json").stat().st_mtime_ns
    fine_tune(recipe, resume=True, force=True)  # a finished run resumes only when forced
    assert (output / "pretrained" / "pretraining.json").stat().st_mtime_ns == stamp
    assert json.loads((output / "metrics.json").read_text())["domain"]["pretraining"]["steps"] == 2


def test_stage_plan_and_corpus_are_checked() -> None:
    with pytest.raises(RecipeError, match="pretrain.corpus"):
        recipe_from_dict({"train": {"stages": ["pretrain", "finetune"]}})
    with pytest.raises(RecipeError, match="not a plan"):
        recipe_from_dict({"train": {"stages": ["finetune", "pretrain"]}, "pretrain": {"corpus": "c.txt"}})


def test_domain_options_refused_where_they_would_be_skipped() -> None:
    with pytest.raises(RecipeError, match="tags"):
        recipe_from_dict({"task": "ner", "domain": {"rule_packs": ["legal"]}})
    recipe_from_dict({"task": "ner", "domain": {"extend_vocabulary": True}})  # new words are fine for tagging
    with pytest.raises(RecipeError, match="task seq2seq"):
        recipe_from_dict({"task": "seq2seq", "domain": {"extend_vocabulary": True}})
