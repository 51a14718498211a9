"""Domain adaptation that suits the model: TSDAE / SimCSE for encoders without an LM head, MLM for those with one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import make_rows, tiny_recipe
from tuneforge.models.resolve import resolve_model
from tuneforge.predict import Predictor
from tuneforge.recipe import recipe_from_dict
from tuneforge.train.sentence_adaptation import choose_objective, has_language_model_head
from tuneforge.train.skeleton import fine_tune

QUIET = {"calibration": {"temperature_scaling": False}, "evaluation": {"explain_examples": 0},
         "fairness": {"identity_categories": []}}


@pytest.fixture(scope="module")
def tiny_mlm(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT saved with its masked-LM head, as a checkpoint that ships one."""
    from transformers import BertConfig, BertForMaskedLM

    folder = tmp_path_factory.mktemp("tiny-bert-mlm")
    for name in tiny_model.iterdir():
        if name.name not in ("model.safetensors", "config.json"):
            shutil.copy(name, folder / name.name)
    BertForMaskedLM(BertConfig.from_pretrained(tiny_model)).save_pretrained(folder)
    return folder


def _corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(r["text"] + " cardiomyopathy" for r in make_rows(120, seed=9)), encoding="utf-8")
    return corpus


def _objective(model: Path, objective: str = "auto") -> tuple[str, str | None]:
    recipe = recipe_from_dict({"model": {"name": str(model)}, "pretrain": {"objective": objective}})
    return choose_objective(recipe, resolve_model(str(model)))


def test_auto_picks_tsdae_without_an_lm_head_and_the_models_own_objective_with_one(tiny_model, tiny_mlm, tiny_gpt2):
    from transformers import AutoConfig

    assert not has_language_model_head(AutoConfig.from_pretrained(tiny_model), tiny_model)
    assert has_language_model_head(AutoConfig.from_pretrained(tiny_mlm), tiny_mlm)
    assert _objective(tiny_model) == ("tsdae", None)
    assert _objective(tiny_mlm) == ("mlm", None)
    assert _objective(tiny_gpt2) == ("clm", None)
    assert _objective(tiny_model, "simcse") == ("simcse", None)


def test_mlm_on_an_encoder_without_its_head_warns_and_names_the_alternative(tiny_model, tiny_mlm):
    objective, warning = _objective(tiny_model, "mlm")
    assert objective == "mlm" and "no masked-LM head" in warning and "tsdae" in warning
    assert _objective(tiny_mlm, "mlm") == ("mlm", None)


@pytest.mark.parametrize("objective", ["auto", "simcse"])
def test_sentence_objectives_adapt_the_base_the_task_head_is_put_on(objective, tiny_model, classification_files,
                                                                   tmp_path):
    recipe = recipe_from_dict(tiny_recipe(
        tiny_model, classification_files, tmp_path / "run", train={"epochs": 1, "stages": ["pretrain", "finetune"]},
        domain={"extend_vocabulary": True, "min_term_frequency": 3, "min_term_pieces": 3},
        pretrain={"corpus": str(_corpus(tmp_path)), "objective": objective, "epochs": 2, "batch_size": 16,
                  "learning_rate": 1e-3}, **QUIET))
    run = fine_tune(recipe)
    pretraining = run.metrics["domain"]["pretraining"]
    assert pretraining["objective"] == ("tsdae" if objective == "auto" else "simcse")
    assert pretraining["steps"] > 0 and pretraining["held_out_texts"] >= 1 and "warning" not in pretraining
    assert pretraining["held_out_loss_after"] < pretraining["held_out_loss_before"]
    pretrained = run.directory / "pretrained"
    assert (pretrained / "model.safetensors").is_file() and (pretrained / "pretraining.json").is_file()
    predictor = Predictor.from_run(run.directory)
    assert predictor.tokenizer.tokenize("cardiomyopathy") == ["cardiomyopathy"]  # new words reach the base
    assert len(predictor.predict(["the food was great"])) == 1


def test_an_explicit_mlm_without_the_head_trains_and_keeps_the_warning(tiny_model, classification_files, tmp_path):
    recipe = recipe_from_dict(tiny_recipe(
        tiny_model, classification_files, tmp_path / "run", train={"epochs": 1, "stages": ["pretrain", "finetune"]},
        pretrain={"corpus": str(_corpus(tmp_path)), "objective": "mlm", "max_steps": 2}, **QUIET))
    pretraining = fine_tune(recipe).metrics["domain"]["pretraining"]
    assert pretraining["objective"] == "mlm" and "tsdae" in pretraining["warning"]
