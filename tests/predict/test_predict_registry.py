"""One loader per run kind, chosen from the kind the run was written as (run_kind.json, or its recipe for an
older run), never from which files happen to lie in the folder; every predictor says its kind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import tuneforge
from tests.conftest import make_rows, tiny_recipe, write_csv
from tuneforge.errors import TuneforgeError
from tuneforge.kinds import ENSEMBLE, GENERATIVE, KINDS, MULTIMODAL, MULTITASK, TEXT, kind_of
from tuneforge.predict import LOADERS, GenerativePredictor, Predictor, RunPredictor, checks, load
from tuneforge.predict.registry import loads
from tuneforge.recipe import recipe_from_dict
from tuneforge.run import KIND_FILE
from tuneforge.trust import HOME_VARIABLE, RunCodeRefused

QUICK = {"train": {"epochs": 1, "save_checkpoints": False}, "early_stopping": {"enabled": False},
         "evaluation": {"explain_examples": 0}, "fairness": {"identity_categories": [], "counterfactual": False}}


@pytest.fixture(scope="module")
def text_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("registry")
    files = {"train": write_csv(folder / "train.csv", make_rows(30, seed=2)),
             "validation": write_csv(folder / "val.csv", make_rows(12, seed=3))}
    return tuneforge.fine_tune(tiny_recipe(tiny_model, files, folder / "run", **QUICK)).directory


@pytest.fixture()
def copy(text_run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(text_run, target)
    return target


def test_every_run_kind_has_exactly_one_loader() -> None:
    assert set(LOADERS) == set(KINDS)
    with pytest.raises(ValueError, match="already loads"):
        loads(TEXT)(lambda request: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="not a run kind"):
        loads("telepathy")(lambda request: None)  # type: ignore[arg-type,return-value]


def test_stray_files_do_not_change_what_a_run_loads_as(copy: Path) -> None:
    """features.json, multitask.json and ensemble.json made a text run load as another kind when the folder
    was sniffed; the kind file decides now."""
    (copy / "features.json").write_text("{}")
    (copy / "multitask.json").write_text("{}")
    (copy / "ensemble.json").write_text("{}")
    (copy / KIND_FILE).write_text(json.dumps({"kind": TEXT}))
    predictor = load(copy, "cpu")
    assert type(predictor) is Predictor and predictor.kind.name == TEXT
    assert isinstance(predictor, RunPredictor)
    assert predictor.predict(["good great food"])[0]["label"] in predictor.labels
    with pytest.raises(TuneforgeError, match="seq2seq or causal-lm"):
        predictor.generate(["good great food"])


def test_a_run_without_a_kind_file_is_read_as_its_recipe_says(copy: Path) -> None:
    (copy / KIND_FILE).unlink(missing_ok=True)
    predictor = Predictor.from_run(copy, "cpu")
    assert predictor.kind == kind_of(predictor.recipe) == KINDS[TEXT]
    assert tuneforge.load(copy, device="cpu").kind.name == TEXT


def test_untrusted_code_is_refused_before_any_file_is_checked(copy: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOME_VARIABLE, str(tmp_path / "home"))
    recipe = (copy / "recipe.yaml").read_text()
    (copy / "recipe.yaml").write_text(recipe.replace("functions: []", "functions:\n  - os:system"))
    (copy / "model" / "model.safetensors").unlink()
    with pytest.raises(RunCodeRefused, match="os:system"):
        load(copy, "cpu")


def test_backends_are_checked_against_the_kind() -> None:
    with pytest.raises(TuneforgeError, match="unknown backend"):
        checks.backend("tensorflow", KINDS[TEXT])
    for name in (MULTIMODAL, MULTITASK, GENERATIVE):
        with pytest.raises(TuneforgeError, match="use backend torch"):
            checks.backend("onnx", KINDS[name])
    checks.backend("onnx", KINDS[TEXT])


def test_a_generative_predictor_writes_text_and_has_no_logits(tiny_gpt2: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recipe = recipe_from_dict({"task": "causal-lm", "model": {"name": str(tiny_gpt2)},
                               "generation": {"max_new_tokens": 3}})
    predictor = GenerativePredictor(AutoModelForCausalLM.from_pretrained(tiny_gpt2),
                                    AutoTokenizer.from_pretrained(tiny_gpt2), recipe, torch.device("cpu"))
    assert predictor.kind.name == GENERATIVE and isinstance(predictor, RunPredictor)
    assert len(predictor.generate(["hello"])) == 1 and "generated" in predictor.predict(["hello"])[0]
    with pytest.raises(TuneforgeError, match="no class logits"):
        predictor.probabilities(["hello"])


def test_an_ensemble_loads_its_members_through_the_registry(text_run: Path, copy: Path, tmp_path: Path) -> None:
    from tuneforge.ensemble.build import build_ensemble

    build_ensemble([text_run, copy], "mean", tmp_path / "ensemble", device="cpu")
    predictor = load(tmp_path / "ensemble", "cpu")
    assert predictor.kind.name == ENSEMBLE and isinstance(predictor, RunPredictor)
    assert predictor.probabilities(["good great food"]).shape == (1, len(predictor.labels))
    (copy / "model" / "model.safetensors").write_bytes(b"")  # a member damaged after the ensemble was built
    with pytest.raises(TuneforgeError, match="model.safetensors"):
        load(tmp_path / "ensemble", "cpu")
    described = json.loads((tmp_path / "ensemble" / "ensemble.json").read_text())
    described["weights"] = [1.0]
    (tmp_path / "ensemble" / "ensemble.json").write_text(json.dumps(described))
    shutil.copytree(text_run, copy, dirs_exist_ok=True)
    with pytest.raises(TuneforgeError, match="1 weights for 2 members"):
        load(tmp_path / "ensemble", "cpu")
