"""Attention matrices, attention rollout and their heatmaps.

Raw attention shows where each head looks, not what decided the prediction; rollout (Abnar & Zuidema,
2020) follows attention through the layers, with the residual connection counted as attention to itself,
and is a cheap, class-independent view of which tokens the [CLS] representation draws from.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuneforge.errors import TuneforgeError
from tuneforge.explain.attributions import Attribution
from tuneforge.explain.inputs import encode, resolve_target, special_mask


@dataclass(frozen=True)
class AttentionMaps:
    """Attention weights for one text: `weights[layer, head, query, key]` over `tokens` (specials included)."""

    tokens: list[str]
    special: list[bool]
    weights: np.ndarray

    @property
    def layers(self) -> int:
        return int(self.weights.shape[0])

    @property
    def heads(self) -> int:
        return int(self.weights.shape[1])


@contextmanager
def eager_attention(model: Any) -> Iterator[Any]:
    """A model that returns attention weights.

    Transformers 5 runs attention through SDPA by default, which never materialises the weights
    (`output_attentions=True` then yields an empty tuple). Switch to the eager implementation for the
    duration, in place when the model class allows it, else by reloading the local checkpoint it came from.
    """
    current = getattr(model.config, "_attn_implementation", None)
    if current in (None, "eager"):
        yield model
        return
    setter = getattr(model, "set_attn_implementation", None)
    switched = False
    if setter is not None:
        try:
            setter("eager")
            switched = model.config._attn_implementation == "eager"
        except (ValueError, ImportError):
            switched = False
    if switched:
        try:
            yield model
        finally:
            setter(current)
        return
    source = Path(str(getattr(model.config, "_name_or_path", "") or ""))
    if not (source / "config.json").is_file():
        raise TuneforgeError("this model cannot switch to eager attention, so its attention weights are not "
                             "available", fix="use --method ig, shap or lime instead")
    from transformers import AutoModelForSequenceClassification

    reloaded = AutoModelForSequenceClassification.from_pretrained(
        source, attn_implementation="eager", use_safetensors=True).to(model.device).eval()
    yield reloaded


def attention_maps(predictor: Any, text: str, pair: str | None = None) -> AttentionMaps:
    """Per-layer, per-head attention for one text, as the model reads it (same truncation as prediction)."""
    encoded = encode(predictor, text, pair)
    with eager_attention(predictor.model) as model, torch.no_grad():
        outputs = model(**encoded, output_attentions=True)
    attentions = outputs.attentions
    if not attentions:
        raise TuneforgeError(f"{type(predictor.model).__name__} returned no attention weights",
                             fix="use --method ig, shap or lime instead")
    weights = torch.stack([layer[0] for layer in attentions]).float().cpu().numpy()
    ids = encoded["input_ids"][0].tolist()
    if weights.shape[-1] > len(ids):  # prompt tuning puts trained virtual tokens first; keep the text's positions
        weights = weights[..., -len(ids):, -len(ids):]
    return AttentionMaps(predictor.tokenizer.convert_ids_to_tokens(ids), special_mask(predictor.tokenizer, ids),
                         weights)


def attention_rollout(weights: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """Rollout over `weights[layer, head, query, key]`: average heads, mix in the identity for the residual
    stream, row-normalise, and multiply from the first layer up. Row i says how much the top-layer token i
    draws from each input token; every row sums to 1."""
    size = weights.shape[-1]
    rollout = np.eye(size)
    for layer in weights:
        mixed = (1.0 - residual) * layer.mean(axis=0) + residual * np.eye(size)
        mixed = mixed / mixed.sum(axis=-1, keepdims=True)
        rollout = mixed @ rollout
    return rollout


def rollout_attribution(predictor: Any, text: str, label: str | None = None, pair: str | None = None,
                        maps: AttentionMaps | None = None) -> Attribution:
    """The [CLS] row of the rollout as token scores (non-negative and class-independent; `label` only
    records which class the text was explained for)."""
    target = resolve_target(predictor, text, pair, label, "attention")
    maps = maps or attention_maps(predictor, text, pair)
    row = attention_rollout(maps.weights)[0]
    kept = [i for i, is_special in enumerate(maps.special) if not is_special]
    return Attribution("attention", [maps.tokens[i] for i in kept], [float(row[i]) for i in kept], target.label,
                       target.probability)


def _tick_labels(axis: Any, tokens: list[str], size: float, x: bool = True, y: bool = True) -> None:
    """Token names on the axes; left out past 48 tokens, where they would overlap into a black band."""
    positions = range(len(tokens))
    readable = len(tokens) <= 48
    if x and readable:
        axis.set_xticks(positions, tokens, rotation=90, fontsize=size)
    else:
        axis.set_xticks([])
    if y and readable:
        axis.set_yticks(positions, tokens, fontsize=size)
    else:
        axis.set_yticks([])


def plot_attention_grid(maps: AttentionMaps, path: Path, title: str = "Attention per layer and head") -> None:
    """A layers × heads grid of heatmaps (rows: layers, columns: heads; query tokens down, keys across).

    Token names go on the outer panels only: on a 12 × 12 grid, labelling every panel makes matplotlib spend
    a minute laying out text nobody can read.
    """
    from tuneforge.explain.plotting import plt, save

    cell = min(2.6, max(1.4, 0.12 * len(maps.tokens)))
    cell = min(cell, 28.0 / maps.heads, 28.0 / maps.layers)  # keep big models' grids within ~3000 pixels
    figure, axes = plt.subplots(maps.layers, maps.heads, figsize=(cell * maps.heads + 1.5, cell * maps.layers + 1.5),
                                squeeze=False)
    font = 5 if len(maps.tokens) > 20 else 6
    for layer in range(maps.layers):
        for head in range(maps.heads):
            axis = axes[layer][head]
            # Each panel has its own colour scale: a few near-one-hot heads would otherwise wash out the rest.
            axis.imshow(maps.weights[layer, head], cmap="Blues", vmin=0.0)
            _tick_labels(axis, maps.tokens, font, x=layer == maps.layers - 1, y=head == 0)
            axis.set_title(f"layer {layer + 1} head {head + 1}", fontsize=7)
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0, 1, 0.97))  # leave the top strip to the title
    save(figure, path)


def plot_rollout(maps: AttentionMaps, path: Path, title: str = "Attention rollout") -> None:
    """The rollout matrix and, beside it, the [CLS] row over the text's tokens as bars: what the prediction
    draws from. [CLS] and [SEP] are left out of the bars; [CLS]'s share of itself would dwarf the rest."""
    from tuneforge.explain.plotting import plt, save

    rollout = attention_rollout(maps.weights)
    size = min(10.0, max(4.0, 0.2 * len(maps.tokens) + 2))
    figure, (matrix_axis, bar_axis) = plt.subplots(1, 2, figsize=(2 * size + 1, size + 1))
    image = matrix_axis.imshow(rollout, cmap="Blues")
    _tick_labels(matrix_axis, maps.tokens, 7)
    matrix_axis.set_xlabel("input token")
    matrix_axis.set_ylabel("top-layer token")
    matrix_axis.set_title("rollout")
    figure.colorbar(image, ax=matrix_axis, fraction=0.046)
    kept = [i for i, special in enumerate(maps.special) if not special]
    positions = np.arange(len(kept))
    bar_axis.barh(positions, rollout[0, kept], color="tab:blue")
    bar_axis.set_yticks(positions, [maps.tokens[i] for i in kept], fontsize=7 if len(kept) <= 48 else 4)
    bar_axis.invert_yaxis()
    bar_axis.set_xlabel(f"share of {maps.tokens[0]} drawn from the token")
    bar_axis.set_title(f"{maps.tokens[0]} row (special tokens left out)")
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0, 1, 0.97))  # leave the top strip to the title
    save(figure, path)
