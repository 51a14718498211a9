"""Sequential transfer: start from a checkpoint that already has a task head (an earlier run), and either keep
that head or put a freshly initialised one on its encoder (`model.head: auto | new | keep`).

`from_pretrained` alone would quietly keep an old head whose shape happens to fit (three sentiment classes
become three NLI classes) and fail on one that does not; this module decides explicitly and re-initialises
the head with the model's own `_init_weights`, so a new head starts exactly as on a plain pretrained encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tuneforge.errors import TuneforgeError

HEAD_SUFFIXES = {"ForSequenceClassification": "sequence", "ForTokenClassification": "token"}


@dataclass(frozen=True)
class CheckpointHead:
    """The task head a checkpoint was saved with, read from its config."""

    task: str
    labels: list[str] | None  # None for regression


@dataclass(frozen=True)
class HeadPlan:
    existing: CheckpointHead | None
    reinitialise: bool  # put a fresh head on the encoder (also when the old one's shape fits)


def checkpoint_head(config: Any) -> CheckpointHead | None:
    """The head in `config.architectures` (sequence or token classification), or None for a bare encoder."""
    kinds = {kind for name in getattr(config, "architectures", None) or []
             for suffix, kind in HEAD_SUFFIXES.items() if name.endswith(suffix)}
    if not kinds:
        return None
    if "token" in kinds:
        task = "token-classification"
    else:
        task = {"regression": "regression", "multi_label_classification": "multilabel"}.get(
            getattr(config, "problem_type", None) or "", "classification")
    id2label = getattr(config, "id2label", None) or {}
    labels = None if task == "regression" else [str(id2label[i]) for i in sorted(id2label, key=int)]
    return CheckpointHead(task, labels)


def plan_head(choice: str, existing: CheckpointHead | None, task: str, labels: list[str] | None,
              model_name: str) -> HeadPlan:
    """Whether the checkpoint's head is kept; `keep` that cannot work is an error that says why."""
    if existing is None:
        if choice == "keep":
            raise TuneforgeError(f"model.head is keep, but '{model_name}' has no task head to keep (it is a bare "
                                 "encoder)", fix="set model.head: auto or new")
        return HeadPlan(None, reinitialise=False)  # from_pretrained adds a fresh head as for any encoder
    same = existing.task == task and (task == "regression" or list(existing.labels or []) == list(labels or []))
    if choice == "keep" and not same:
        theirs = existing.task if existing.task == "regression" else f"{existing.task} {existing.labels}"
        ours = task if task == "regression" else f"{task} {labels}"
        raise TuneforgeError(f"model.head is keep, but '{model_name}' was trained for {theirs} and this data "
                             f"is {ours}", fix="set model.head: new to start a fresh head on its encoder, or "
                                               "use data with the same labels")
    return HeadPlan(existing, reinitialise=not (choice == "keep" or (choice == "auto" and same)))


def head_modules(model: Any) -> list[tuple[str, torch.nn.Module]]:
    """The task-specific children of a model with a head: everything but its base model (the encoder)."""
    base = getattr(model, model.base_model_prefix, None)
    return [(name, child) for name, child in model.named_children() if child is not base]


@torch.no_grad()
def reinitialise_head(model: Any) -> list[str]:
    """Fresh weights for the head, drawn as Transformers draws a new head; returns the re-initialised names.

    Transformers marks loaded tensors `_is_hf_initialized` so its init functions skip them; the marks are
    cleared on the head first, or the call would do nothing.
    """
    names = []
    for name, module in head_modules(model):
        for sub in module.modules():
            sub._is_hf_initialized = False
            for tensor in (*sub.parameters(recurse=False), *sub.buffers(recurse=False)):
                if tensor is not None and hasattr(tensor, "_is_hf_initialized"):
                    tensor._is_hf_initialized = False
            model._init_weights(sub)
        if any(True for _ in module.parameters()):
            names.append(name)
    return names
