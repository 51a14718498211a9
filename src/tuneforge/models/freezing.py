"""Which parameters train: frozen embeddings, the first N layers, linear probing, gradual unfreezing.

Transformers has no generic freezing API, so the layer stack is found by shape: the `nn.ModuleList` inside
the model body whose length is the config's layer count (BERT `encoder.layer`, GPT-2 `h`, Llama `layers`).
"""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel

from tuneforge.errors import TuneforgeError
from tuneforge.recipe import FreezeSpec


def body(model: PreTrainedModel) -> nn.Module:
    return getattr(model, model.base_model_prefix, model)


def transformer_layers(model: PreTrainedModel) -> nn.ModuleList:
    expected = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)
    candidates = [m for m in body(model).modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    for module in candidates:
        if expected is None or len(module) == expected:
            return module
    raise TuneforgeError(f"could not find the layer stack of {type(model).__name__} to freeze layers",
                         fix="use freeze.all_but_head or freeze.embeddings, which work for any model")


def embeddings(model: PreTrainedModel) -> nn.Module:
    module = getattr(body(model), "embeddings", None)
    return module if isinstance(module, nn.Module) else model.get_input_embeddings()


def set_trainable(module: nn.Module, trainable: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad = trainable


def apply_freezing(model: PreTrainedModel, spec: FreezeSpec) -> None:
    """Set `requires_grad` from the recipe; gradual unfreezing starts from the linear-probe state."""
    set_trainable(model, True)
    if spec.all_but_head or spec.gradual_unfreeze:
        set_trainable(body(model), False)
        return
    if spec.embeddings:
        set_trainable(embeddings(model), False)
    if spec.layers:
        layers = transformer_layers(model)
        if spec.layers > len(layers):
            raise TuneforgeError(f"freeze.layers is {spec.layers} but the model has {len(layers)} layers",
                                 fix=f"use a value from 0 to {len(layers)}, or freeze.all_but_head")
        for layer in layers[: spec.layers]:
            set_trainable(layer, False)


def unfreeze_top_layers(model: PreTrainedModel, count: int, embeddings_stay_frozen: bool = False) -> int:
    """Gradual unfreezing step: make the top `count` layers trainable (all of the body past the stack).

    Returns the number of top layers this call opened (`count`, capped at the layer count). Once every layer
    is open the embeddings follow, unless the recipe froze them for good.
    """
    layers = transformer_layers(model)
    count = min(count, len(layers))
    for layer in layers[len(layers) - count:]:
        set_trainable(layer, True)
    # Modules after the layer stack (pooler, final norm) belong to the top and open with the first layer.
    if count > 0:
        stack_ids = {id(p) for p in layers.parameters()} | {id(p) for p in embeddings(model).parameters()}
        for parameter in body(model).parameters():
            if id(parameter) not in stack_ids:
                parameter.requires_grad = True
    if count >= len(layers) and not embeddings_stay_frozen:
        set_trainable(embeddings(model), True)
    return count


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable). A peft model counts itself: 4-bit weights pack two values per stored element."""
    counter = getattr(model, "get_nb_trainable_parameters", None)
    if callable(counter):
        trainable, total = counter()
        return int(total), int(trainable)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
