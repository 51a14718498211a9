"""Freezing options, checked on the weights a real run leaves behind: frozen bit-identical, trainable moved."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, TrainerCallback

import tuneforge
from tests.conftest import make_rows, tiny_recipe, write_csv
from tuneforge.errors import TuneforgeError
from tuneforge.models.freezing import apply_freezing, transformer_layers, unfreeze_top_layers
from tuneforge.recipe import FreezeSpec

TRAIN_ROWS, BATCH = 24, 8  # three optimisation steps per epoch
PREFIX = "bert."  # the classification model nests the base checkpoint's weights under this name
GROUPS = {
    "embeddings": "bert.embeddings.",
    "layer0": "bert.encoder.layer.0.",
    "layer1": "bert.encoder.layer.1.",
    "pooler": "bert.pooler.",
    "head": "classifier.",
}
BODY = ("embeddings", "layer0", "layer1", "pooler")
# The attention key bias has an exactly zero gradient (softmax ignores a shift shared by all keys); whether
# rounding noise moves it says nothing about freezing, so it is not required to change when trainable.
SHIFT_INVARIANT = "attention.self.key.bias"


def group_of(key: str) -> str:
    matches = [name for name, prefix in GROUPS.items() if key.startswith(prefix)]
    assert len(matches) == 1, f"{key} is in no known group (or in several): {matches}"
    return matches[0]


class Snapshots(TrainerCallback):
    """The model's weights and trainable parameters when training starts and at the end of every epoch."""

    def __init__(self) -> None:
        self.weights: dict[str, dict[str, torch.Tensor]] = {}
        self.trainable: dict[str, set[str]] = {}

    def _take(self, when: str, model: torch.nn.Module) -> None:
        self.weights[when] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.trainable[when] = {name for name, p in model.named_parameters() if p.requires_grad}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._take("begin", model)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self._take(f"epoch{round(state.epoch)}", model)


def groups_in(names: set[str]) -> set[str]:
    return {group_of(name) for name in names}


def changed_groups(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    """Groups with at least one tensor that moved; asserts that such a group moved in every tensor."""
    moved: dict[str, list[bool]] = {}
    for key, value in after.items():
        flags = moved.setdefault(group_of(key), [])
        if not key.endswith(SHIFT_INVARIANT):
            flags.append(not torch.equal(value, before[key]))
    for group, flags in moved.items():
        assert all(flags) or not any(flags), f"{group} is partly trained: {flags}"
    return {group for group, flags in moved.items() if flags and all(flags)}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("freezing-data")
    return {"train": write_csv(folder / "train.csv", make_rows(TRAIN_ROWS, seed=21)),
            "validation": write_csv(folder / "val.csv", make_rows(6, seed=22))}


@pytest.fixture(scope="module")
def base_weights(tiny_model: Path) -> dict[str, torch.Tensor]:
    """The pretrained body as the classification model names it."""
    return {PREFIX + key: value for key, value in load_file(tiny_model / "model.safetensors").items()}


def train(tiny_model: Path, files: dict[str, Path], output: Path, freeze: dict, epochs: int = 1):
    snapshots = Snapshots()
    recipe = tiny_recipe(tiny_model, files, output, freeze=freeze,
                         train={"epochs": epochs, "batch_size": BATCH, "group_by_length": False,
                                "save_checkpoints": False},
                         early_stopping={"enabled": False})
    run = tuneforge.fine_tune(recipe, callbacks=[snapshots])
    final = load_file(run.layout.model / "model.safetensors")
    return run, snapshots, final


def initial_weights(base: dict[str, torch.Tensor], snapshots: Snapshots) -> dict[str, torch.Tensor]:
    """Body from the pretrained checkpoint, head as initialised when training started."""
    begin = snapshots.weights["begin"]
    assert set(base) < set(begin)
    for key, value in base.items():
        assert torch.equal(begin[key], value), f"{key} was not loaded from the checkpoint"
    head = {key: value for key, value in begin.items() if group_of(key) == "head"}
    assert head, "the classification head is missing"
    return {**base, **head}


@pytest.mark.parametrize(
    ("freeze", "frozen"),
    [
        pytest.param({}, set(), id="none"),
        pytest.param({"embeddings": True}, {"embeddings"}, id="embeddings"),
        pytest.param({"layers": 1}, {"layer0"}, id="layers-1"),
        pytest.param({"layers": 2}, {"layer0", "layer1"}, id="layers-all"),
        pytest.param({"embeddings": True, "layers": 1}, {"embeddings", "layer0"}, id="embeddings+layers-1"),
        pytest.param({"all_but_head": True}, set(BODY), id="all_but_head"),
    ],
)
def test_frozen_weights_stay_bit_identical_and_the_rest_train(tiny_model, files, base_weights, tmp_path,
                                                               freeze, frozen):
    run, snapshots, final = train(tiny_model, files, tmp_path / "run", freeze)
    initial = initial_weights(base_weights, snapshots)
    assert set(final) == set(initial)

    everything = set(GROUPS)
    assert groups_in(snapshots.trainable["begin"]) == everything - frozen
    assert changed_groups(initial, final) == everything - frozen
    for key in final:
        if group_of(key) in frozen:
            assert torch.equal(final[key], initial[key]), f"frozen {key} changed"

    expected_trainable = sum(initial[name].numel() for name in snapshots.trainable["begin"])
    assert run.metrics["training"]["trainable_parameters"] == expected_trainable
    assert run.metrics["training"]["parameters"] == sum(v.numel() for v in final.values())


def test_gradual_unfreeze_opens_the_top_layer_in_the_second_epoch(tiny_model, files, base_weights, tmp_path):
    run, snapshots, final = train(tiny_model, files, tmp_path / "run", {"gradual_unfreeze": True}, epochs=2)
    initial = initial_weights(base_weights, snapshots)
    assert run.metrics["training"]["epochs_completed"] == pytest.approx(2)

    # Epoch 1 trains the head only.
    assert groups_in(snapshots.trainable["begin"]) == {"head"}
    assert groups_in(snapshots.trainable["epoch1"]) == {"head"}
    assert changed_groups(initial, snapshots.weights["epoch1"]) == {"head"}
    # Epoch 2 opens the top layer and what sits above the stack (the pooler).
    assert groups_in(snapshots.trainable["epoch2"]) == {"head", "layer1", "pooler"}
    assert changed_groups(snapshots.weights["epoch1"], final) == {"head", "layer1", "pooler"}
    # The saved model: layer 0 and the embeddings open only from epoch 3, so they are the pretrained ones.
    assert changed_groups(initial, final) == {"head", "layer1", "pooler"}
    for key in final:
        if group_of(key) in ("layer0", "embeddings"):
            assert torch.equal(final[key], initial[key]), f"{key} trained before its epoch"


def test_gradual_unfreeze_trains_everything_once_every_layer_is_open(tiny_model, files, base_weights, tmp_path):
    run, snapshots, final = train(tiny_model, files, tmp_path / "run", {"gradual_unfreeze": True}, epochs=3)
    assert groups_in(snapshots.trainable["epoch3"]) == set(GROUPS)
    assert changed_groups(snapshots.weights["epoch2"], final) == set(GROUPS)
    assert run.metrics["training"]["trainable_parameters"] == sum(v.numel() for v in final.values())


# --- unit level -----------------------------------------------------------------------------------------

@pytest.fixture()
def model(tiny_model: Path):
    return AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=3)


def trainable_groups(model) -> set[str]:
    return groups_in({name for name, p in model.named_parameters() if p.requires_grad})


def test_transformer_layers_finds_the_encoder_stack(model):
    layers = transformer_layers(model)
    assert layers is model.bert.encoder.layer
    assert len(layers) == model.config.num_hidden_layers


def test_unfreeze_top_layers_opens_layers_from_the_top(model):
    apply_freezing(model, FreezeSpec(gradual_unfreeze=True))
    assert trainable_groups(model) == {"head"}
    assert unfreeze_top_layers(model, 0) == 0
    assert trainable_groups(model) == {"head"}
    assert unfreeze_top_layers(model, 1) == 1
    assert trainable_groups(model) == {"head", "layer1", "pooler"}
    total = len(transformer_layers(model))
    assert unfreeze_top_layers(model, total) == total
    assert trainable_groups(model) == set(GROUPS)


def test_unfreeze_top_layers_caps_the_count_at_the_layer_count(model):
    apply_freezing(model, FreezeSpec(all_but_head=True))
    total = len(transformer_layers(model))
    assert unfreeze_top_layers(model, total + 3) == total
    assert all(p.requires_grad for p in model.parameters())


def test_gradual_unfreeze_keeps_embeddings_frozen_when_the_recipe_says_so(model):
    apply_freezing(model, FreezeSpec(gradual_unfreeze=True, embeddings=True))
    total = len(transformer_layers(model))
    unfreeze_top_layers(model, total, embeddings_stay_frozen=True)
    assert trainable_groups(model) == set(GROUPS) - {"embeddings"}


def test_apply_freezing_starts_from_a_fully_trainable_model(model):
    apply_freezing(model, FreezeSpec(all_but_head=True))
    apply_freezing(model, FreezeSpec(layers=1))
    assert trainable_groups(model) == set(GROUPS) - {"layer0"}
    assert not any(p.requires_grad for p in model.bert.encoder.layer[0].parameters())


def test_freezing_more_layers_than_the_model_has_is_an_error_with_a_fix(model):
    total = len(transformer_layers(model))
    with pytest.raises(TuneforgeError) as caught:
        apply_freezing(model, FreezeSpec(layers=total + 1))
    assert f"{total} layers" in caught.value.message
    assert f"0 to {total}" in caught.value.fix


def test_fine_tune_rejects_too_many_frozen_layers_before_training(tiny_model, files, tmp_path):
    recipe = tiny_recipe(tiny_model, files, tmp_path / "run", freeze={"layers": 3}, train={"max_steps": 1})
    with pytest.raises(TuneforgeError) as caught:
        tuneforge.fine_tune(recipe)
    assert "freeze.layers" in str(caught.value)
    assert caught.value.fix
    assert not (tmp_path / "run" / "model").exists()
