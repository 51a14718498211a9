"""PEFT runs end to end on the tiny BERT: what trains, what is saved, and that every way of loading agrees."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback

import tuneforge
from tests.conftest import make_regression_rows, make_rows, tiny_recipe, write_csv
from tuneforge.errors import TuneforgeError
from tuneforge.models.peft import load_adapter_model
from tuneforge.run import RunLayout
from tuneforge.train.trainer import TrainingInterrupted

TEXTS = ["good food and friendly service", "the place was dirty and rude", "a table by the window", "bad"]
# 24 rows, batch 8: three steps an epoch. The after-training audit and explanations are tested elsewhere.
QUICK = {"train": {"epochs": 2, "group_by_length": False}, "early_stopping": {"enabled": False},
         "evaluation": {"explain_examples": 0}, "fairness": {"identity_categories": [], "counterfactual": False}}


class Snapshots(TrainerCallback):
    """Weights and trainable parameter names of the model the Trainer trains, at the start and at the end."""

    def __init__(self) -> None:
        self.weights: dict[str, dict[str, torch.Tensor]] = {}
        self.trainable: set[str] = set()
        self.gradient_checkpointing: bool | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.weights["begin"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        self.gradient_checkpointing = args.gradient_checkpointing

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.weights["end"] = {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("peft-data")
    return {"train": write_csv(folder / "train.csv", make_rows(24, seed=31)),
            "validation": write_csv(folder / "val.csv", make_rows(9, seed=32)),
            "test": write_csv(folder / "test.csv", make_rows(9, seed=33))}


def peft_recipe(model: Path, files: dict[str, Path], output: Path, peft: dict, **sections: dict) -> dict:
    recipe = tiny_recipe(model, files, output, peft=peft, **QUICK)
    for name, values in sections.items():
        recipe[name] = {**recipe.get(name, {}), **values}
    return recipe


_RUNS: dict[str, tuple] = {}


@pytest.fixture(scope="module")
def trained(tiny_model, files, tmp_path_factory):
    """One run per method for the whole module: (run, snapshots)."""
    def train(method: str):
        if method not in _RUNS:
            snapshots = Snapshots()
            output = tmp_path_factory.mktemp(f"run-{method}")
            recipe = peft_recipe(tiny_model, files, output, {"method": method, "r": 4, "num_virtual_tokens": 5})
            _RUNS[method] = (tuneforge.fine_tune(recipe, callbacks=[snapshots]), snapshots)
        return _RUNS[method]

    yield train
    _RUNS.clear()


def is_adapter_or_head(name: str) -> bool:
    return any(part in name for part in ("lora_", "ia3_", "prompt_encoder", ".modules_to_save."))


@pytest.mark.parametrize("method", ["lora", "ia3", "prompt_tuning"])
def test_only_adapter_and_head_weights_change(trained, method):
    run, snapshots = trained(method)
    before, after = snapshots.weights["begin"], snapshots.weights["end"]
    assert snapshots.trainable and all(is_adapter_or_head(name) for name in snapshots.trainable)
    assert any(".classifier.modules_to_save." in name for name in snapshots.trainable)
    for key, value in after.items():
        if key in snapshots.trainable:
            assert not torch.equal(value, before[key]), f"trainable {key} did not move"
        else:
            assert torch.equal(value, before[key]), f"base weight {key} changed"
    trainable = sum(before[name].numel() for name in snapshots.trainable)
    assert run.metrics["training"]["trainable_parameters"] == trainable
    assert trainable < run.metrics["training"]["parameters"] / 5


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_merged_model_predicts_like_base_plus_adapter(trained, tiny_model, method):
    run, _ = trained(method)
    layout = run.layout
    assert (layout.adapter / "adapter_model.safetensors").is_file()
    assert (layout.model / "model.safetensors").is_file()
    assert not list(layout.model.glob("adapter_*"))  # model/ is a plain Transformers model

    tokenizer = AutoTokenizer.from_pretrained(layout.model)
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    merged = AutoModelForSequenceClassification.from_pretrained(layout.model).eval()
    unmerged, _ = load_adapter_model(layout.root)
    assert isinstance(unmerged, PeftModel)
    with torch.no_grad():
        ours, theirs = merged(**encoded).logits, unmerged(**encoded).logits
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()
    predictor = tuneforge.load(layout.root, device="cpu")
    assert torch.allclose(torch.as_tensor(predictor.logits(TEXTS), dtype=ours.dtype), ours, atol=1e-5)

    # The merge changed the adapted layers only: embeddings and feed-forward input are the pretrained ones.
    base = load_file(tiny_model / "model.safetensors")
    final = load_file(layout.model / "model.safetensors")
    assert torch.equal(final["bert.embeddings.word_embeddings.weight"], base["embeddings.word_embeddings.weight"])
    key = "encoder.layer.0.intermediate.dense.weight"
    assert torch.equal(final[f"bert.{key}"], base[key])
    assert not torch.equal(final["bert.encoder.layer.0.attention.self.value.weight"],
                           base["encoder.layer.0.attention.self.value.weight"])


def test_prompt_tuning_run_predicts_from_base_plus_adapter(trained, files):
    run, _ = trained("prompt_tuning")
    layout = run.layout
    assert not layout.model.exists()  # virtual tokens cannot be merged into weights
    assert layout.has_adapter() and layout.is_finished()
    predictor = tuneforge.load(layout.root, device="cpu")
    assert isinstance(predictor.model, PeftModel)
    saved = pd.read_csv(layout.test_predictions)
    test = pd.read_csv(files["test"])
    assert [row["label"] for row in predictor.predict(test["text"].tolist())] == saved["label"].tolist()
    assert (layout.root / "report.html").is_file()


def test_resume_continues_the_adapter_to_the_uninterrupted_result(trained, tiny_model, files, tmp_path):
    reference, _ = trained("lora")

    class InterruptAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if state.global_step == 4:
                raise KeyboardInterrupt

    recipe = peft_recipe(tiny_model, files, tmp_path / "run", {"method": "lora", "r": 4, "num_virtual_tokens": 5})
    with pytest.raises(TrainingInterrupted):
        tuneforge.fine_tune(recipe, callbacks=[InterruptAt()])
    checkpoint = RunLayout(tmp_path / "run").last_checkpoint()
    assert checkpoint is not None and (checkpoint / "adapter_model.safetensors").is_file()
    assert not (checkpoint / "model.safetensors").exists()  # checkpoints hold the adapter, not the base

    resumed = tuneforge.fine_tune(recipe, resume=True)
    assert resumed.metrics["training"]["global_steps"] == reference.metrics["training"]["global_steps"] == 6
    ours = load_file(resumed.layout.adapter / "adapter_model.safetensors")
    theirs = load_file(reference.layout.adapter / "adapter_model.safetensors")
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.allclose(ours[key], theirs[key], atol=1e-5), key


def test_gradient_checkpointing_trains_a_lora_regression_head(tiny_model, tmp_path):
    folder = tmp_path / "data"
    files = {"train": write_csv(folder / "train.csv", make_regression_rows(24, seed=41)),
             "validation": write_csv(folder / "val.csv", make_regression_rows(9, seed=42))}
    snapshots = Snapshots()
    recipe = peft_recipe(tiny_model, files, tmp_path / "run", {"method": "lora", "r": 4},
                         data={"label_column": "score"}, train={"epochs": 1, "gradient_checkpointing": True})
    recipe["task"] = "regression"
    run = tuneforge.fine_tune(recipe, callbacks=[snapshots])
    assert snapshots.gradient_checkpointing is True
    moved = [k for k in snapshots.trainable if not torch.equal(snapshots.weights["begin"][k],
                                                                 snapshots.weights["end"][k])]
    assert any("lora_B" in k for k in moved) and any("modules_to_save" in k for k in moved)
    assert tuneforge.load(run.directory, device="cpu").predict(["good"])[0]["score"] is not None


def test_qlora_on_the_cpu_stops_before_training_with_the_fix(tiny_model, files, tmp_path):
    recipe = peft_recipe(tiny_model, files, tmp_path / "run", {"method": "qlora"}, train={"device": "cpu"})
    with pytest.raises(TuneforgeError) as caught:
        tuneforge.fine_tune(recipe)
    assert "peft.method: lora" in caught.value.fix
    assert not (tmp_path / "run" / "checkpoints").exists()
