"""The one class-weights decision of a run, made once from the recipe and the training split's class counts.

The loss reads it, and data.json, metrics.json and the report print it, so they cannot disagree. Explicit weights
(loss.class_weights: {label: weight}) win; `balanced`, the weighted cross-entropy loss and the imbalance switch
(imbalance.class_weights: on, or auto above imbalance.ratio_threshold unless rows are oversampled) ask for
inverse-frequency weights — for multilabel, each label's pos_weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ClassWeights:
    """`weights` in label order, or None when the loss is unweighted; `reason` says which rule decided."""

    labels: tuple[str, ...]
    weights: tuple[float, ...] | None
    reason: str

    @property
    def on(self) -> bool:
        return self.weights is not None

    def as_list(self) -> list[float] | None:
        return list(self.weights) if self.weights is not None else None

    def to_json(self) -> dict[str, float] | None:
        """{label: weight}, or None: the form data.json and metrics.json both write."""
        return dict(zip(self.labels, self.weights, strict=True)) if self.weights is not None else None


def balanced_class_weights(counts: Sequence[int]) -> list[float]:
    """Inverse-frequency weights with mean 1 over examples (scikit-learn's 'balanced')."""
    counts_array = np.asarray(counts, dtype=np.float64)
    total, classes = counts_array.sum(), len(counts_array)
    return (total / (classes * np.maximum(counts_array, 1))).tolist()


def positive_weights(counts: Sequence[int], rows: int) -> list[float]:
    """Multilabel pos_weight: negatives / positives per label, so each label's positives weigh as much as its
    negatives in the binary cross-entropy (PyTorch's recommended pos_weight)."""
    positives = np.maximum(np.asarray(counts, dtype=np.float64), 1)
    return (np.maximum(rows - positives, 1) / positives).tolist()


def decide_class_weights(recipe: Any, labels: Sequence[str], counts: Sequence[int], rows: int | None = None,
                         auto_switch: bool = True) -> ClassWeights:
    """The decision for one training split; `rows` (training rows) makes multilabel weights pos_weights;
    `auto_switch=False` leaves imbalance.class_weights: auto out (tags, whose imbalance is their nature)."""
    labels = tuple(labels)
    explicit = recipe.loss.class_weights
    if isinstance(explicit, dict):
        return ClassWeights(labels, tuple(float(explicit.get(label, 1.0)) for label in labels),
                            "loss.class_weights lists them")
    reason = ""
    if explicit == "balanced":
        reason = "loss.class_weights: balanced"
    elif recipe.loss_name() == "weighted_cross_entropy":
        reason = "loss.name: weighted_cross_entropy"
    switch = recipe.imbalance.class_weights
    if switch == "on":
        reason = reason or "imbalance.class_weights: on"
    elif switch == "auto" and auto_switch and not recipe.imbalance.oversample and counts and min(counts) > 0:
        ratio = max(counts) / min(counts)
        if ratio >= recipe.imbalance.ratio_threshold:
            reason = reason or (f"imbalance ratio {ratio:.2f} ≥ imbalance.ratio_threshold "
                                f"{recipe.imbalance.ratio_threshold}")
    if not reason or not counts:
        return ClassWeights(labels, None, "no rule asks for class weights" if counts else "no class counts")
    weights = positive_weights(counts, rows) if recipe.task == "multilabel" and rows else \
        balanced_class_weights(counts)
    return ClassWeights(labels, tuple(weights), reason)


def resolve_class_weights(recipe: Any, labels: Sequence[str], counts: Sequence[int], rows: int | None = None
                          ) -> list[float] | None:
    """The weights alone, in label order (None: unweighted)."""
    return decide_class_weights(recipe, labels, counts, rows).as_list()
