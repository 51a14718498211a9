"""Task losses, normalised by the number of examples (labelled tokens for tagging) in the whole accumulated batch.

The Trainer hands `num_items_in_batch` (examples across all gradient-accumulation micro-batches) to a
`compute_loss_func`; dividing summed losses by it makes the update independent of how a batch is split,
so changing `gradient_accumulation_steps` does not change the loss or the gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from tuneforge.recipe import Recipe

LossFunction = Callable[..., torch.Tensor]


def _normaliser(labels: torch.Tensor, num_items_in_batch: Any) -> torch.Tensor | float:
    if num_items_in_batch is None:  # one micro-batch alone: examples, or labelled tokens for tagging
        return float((labels != -100).sum()) if labels.dim() > 1 else float(labels.shape[0])
    return num_items_in_batch


def _weighted_sum(per_example: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return per_example.sum()
    return (per_example * weights.to(per_example.device, per_example.dtype)).sum()


def build_loss(recipe: Recipe, class_weights: list[float] | None = None) -> LossFunction:
    name = recipe.loss_name()
    spec = recipe.loss
    weight_list = class_weights

    def logits_of(outputs: Any) -> torch.Tensor:
        return outputs["logits"] if isinstance(outputs, dict) else outputs.logits

    def weights_for(logits: torch.Tensor) -> torch.Tensor | None:
        if weight_list is None:
            return None
        return torch.tensor(weight_list, dtype=torch.float32, device=logits.device)

    def cross_entropy(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None,
                      weights: torch.Tensor | None = None) -> torch.Tensor:
        logits = logits_of(outputs).float()
        if logits.dim() == 3:  # token classification: one prediction per token, -100 marks unlabelled pieces
            per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).long(),
                                        weight=weights_for(logits), label_smoothing=spec.label_smoothing,
                                        ignore_index=-100, reduction="none")
            return per_token.sum() / _normaliser(labels, num_items_in_batch)
        per_example = F.cross_entropy(logits, labels.long(), weight=weights_for(logits),
                                      label_smoothing=spec.label_smoothing, reduction="none")
        return _weighted_sum(per_example, weights) / _normaliser(labels, num_items_in_batch)

    def focal(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None,
              weights: torch.Tensor | None = None) -> torch.Tensor:
        logits = logits_of(outputs).float()
        labels = labels.long()
        log_p = F.log_softmax(logits, dim=-1).gather(1, labels.unsqueeze(1)).squeeze(1)
        per_example = -((1.0 - log_p.exp()) ** spec.focal_gamma) * log_p
        example_weights = weights
        weights = weights_for(logits)
        if weights is not None:
            per_example = per_example * weights[labels]
        return _weighted_sum(per_example, example_weights) / _normaliser(labels, num_items_in_batch)

    def regression(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
        predicted = logits_of(outputs).float().reshape(-1)
        target = labels.float().reshape(-1)
        if name == "mse":
            per_example = F.mse_loss(predicted, target, reduction="none")
        elif name == "mae":
            per_example = F.l1_loss(predicted, target, reduction="none")
        else:
            per_example = F.huber_loss(predicted, target, delta=spec.huber_delta, reduction="none")
        return _weighted_sum(per_example, weights) / _normaliser(labels, num_items_in_batch)

    def binary_cross_entropy(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None,
                             weights: torch.Tensor | None = None) -> torch.Tensor:
        # Averaged over labels into one term per example (the scale of PyTorch's mean BCE, whatever the label
        # count), then summed and divided by the examples of the accumulated batch like the other losses.
        logits = logits_of(outputs).float()
        per_label = F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weights_for(logits),
                                                       reduction="none")
        return _weighted_sum(per_label.mean(dim=-1), weights) / _normaliser(labels[:, 0], num_items_in_batch)

    if name == "bce":
        return binary_cross_entropy
    if name in ("cross_entropy", "weighted_cross_entropy"):
        return cross_entropy
    if name == "focal":
        return focal
    return regression
