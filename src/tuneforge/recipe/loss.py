"""The loss section: which loss, and its settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuneforge.recipe.section import Section


class LossSpec(Section):
    name: Literal["auto", "cross_entropy", "weighted_cross_entropy", "focal", "mse", "mae", "huber", "bce"] = Field(
        "auto", description="auto: cross_entropy for classification, mse for regression, bce (binary cross-entropy "
        "with logits, one per label) for multilabel."
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing for cross-entropy losses.")
    focal_gamma: float = Field(2.0, ge=0, description="Focusing parameter of the focal loss.")
    huber_delta: float = Field(1.0, gt=0, description="Where the Huber loss turns from quadratic to linear.")
    class_weights: Literal["balanced"] | dict[str, float] | None = Field(
        None,
        description="Per-class loss weights: 'balanced' (inverse frequency) or {label: weight}. "
        "weighted_cross_entropy uses 'balanced' when this is empty. multilabel: weights of each label's positive "
        "term (pos_weight); 'balanced' gives negatives / positives per label.",
    )
