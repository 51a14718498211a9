"""Sequential transfer: a run's encoder under a new (or kept) task head."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from tests.conftest import make_rows, tiny_recipe, write_csv
from tuneforge.errors import TuneforgeError
from tuneforge.models.heads import checkpoint_head, head_modules, plan_head
from tuneforge.models.loading import load_sequence_model, load_trained_model
from tuneforge.recipe import ModelSpec, recipe_from_dict

THREE = ["negative", "neutral", "positive"]


@pytest.fixture(scope="module")
def earlier_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run on three labels: the 'intermediate task' a later run starts from."""
    from tuneforge.train.skeleton import fine_tune

    folder = tmp_path_factory.mktemp("earlier")
    files = {"train": write_csv(folder / "train.csv", make_rows(60, seed=5)),
             "validation": write_csv(folder / "val.csv", make_rows(15, seed=6))}
    recipe = recipe_from_dict(tiny_recipe(tiny_model, files, folder / "run", train={"epochs": 1},
                                          evaluation={"explain_examples": 0},
                                          calibration={"temperature_scaling": False}))
    return fine_tune(recipe).directory


def _encoder(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in getattr(model, model.base_model_prefix).state_dict().items()}


def _head(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.detach().clone() for name, module in head_modules(model)
            for k, v in module.state_dict().items()}


def test_the_checkpoint_head_is_read_from_the_run(earlier_run: Path, tiny_model: Path):
    from transformers import AutoConfig

    assert checkpoint_head(AutoConfig.from_pretrained(earlier_run / "model")).labels == THREE
    assert checkpoint_head(AutoConfig.from_pretrained(tiny_model)) is None  # a bare encoder has no head


def test_other_labels_get_a_fresh_head_on_the_same_encoder(earlier_run: Path):
    old, _ = load_trained_model(str(earlier_run / "model"))
    model = load_sequence_model(ModelSpec(name=str(earlier_run)), "classification", ["no", "yes"])
    for name, tensor in _encoder(old).items():
        assert torch.equal(_encoder(model)[name], tensor), name
    assert model.classifier.weight.shape[0] == 2
    assert torch.count_nonzero(model.classifier.bias) == 0  # a new head starts with zero bias; a trained one not
    assert torch.count_nonzero(old.classifier.bias) > 0
    assert model.config.id2label == {0: "no", 1: "yes"}


def test_same_labels_keep_the_head_unless_new_is_asked(earlier_run: Path):
    old, _ = load_trained_model(str(earlier_run / "model"))
    kept = load_sequence_model(ModelSpec(name=str(earlier_run)), "classification", THREE)  # auto
    for name, tensor in _head(old).items():
        assert torch.equal(_head(kept)[name], tensor), name
    fresh = load_sequence_model(ModelSpec(name=str(earlier_run), head="new"), "classification", THREE)
    assert not torch.equal(fresh.classifier.weight, old.classifier.weight)
    assert torch.count_nonzero(fresh.classifier.bias) == 0
    # with the same shape, std of a fresh head is the config's initializer range, not the trained weights'
    assert abs(float(fresh.classifier.weight.detach().std()) - fresh.config.initializer_range) < 0.01


def test_keep_with_other_labels_or_no_head_is_an_error(earlier_run: Path, tiny_model: Path):
    with pytest.raises(TuneforgeError) as caught:
        load_sequence_model(ModelSpec(name=str(earlier_run), head="keep"), "classification", ["no", "yes"])
    assert "model.head: new" in caught.value.fix
    assert "['negative', 'neutral', 'positive']" in caught.value.message
    with pytest.raises(TuneforgeError, match="no task head"):
        load_sequence_model(ModelSpec(name=str(tiny_model), head="keep"), "classification", ["no", "yes"])
    with pytest.raises(TuneforgeError, match="regression"):
        plan_head("keep", checkpoint_head_of(THREE), "regression", None, "x")


def checkpoint_head_of(labels: list[str]):
    from tuneforge.models.heads import CheckpointHead

    return CheckpointHead("classification", labels)


class _StartingWeights(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        self.encoder, self.head = _encoder(model), _head(model)


def test_a_run_starts_from_the_earlier_runs_encoder_with_a_new_head(earlier_run: Path, tmp_path: Path):
    from tuneforge.train.skeleton import fine_tune

    files = {"train": write_csv(tmp_path / "train.csv", make_rows(40, seed=7, labels=("negative", "positive"))),
             "validation": write_csv(tmp_path / "val.csv", make_rows(10, seed=8, labels=("negative", "positive")))}
    recipe = recipe_from_dict(tiny_recipe(earlier_run, files, tmp_path / "second", train={"max_steps": 2},
                                          evaluation={"explain_examples": 0}))
    seen = _StartingWeights()
    run = fine_tune(recipe, callbacks=[seen])
    old, _ = load_trained_model(str(earlier_run / "model"))
    for name, tensor in _encoder(old).items():
        assert torch.equal(seen.encoder[name], tensor), name
    assert torch.count_nonzero(seen.head["classifier.bias"]) == 0
    assert seen.head["classifier.weight"].shape[0] == 2
    assert run.metrics["labels"] == ["negative", "positive"]
