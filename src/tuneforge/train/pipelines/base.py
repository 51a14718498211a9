"""The protocol every run kind's pipeline follows, and the defaults most kinds share.

The skeleton (train/skeleton.py) owns everything that is the same for every kind — run directory, lock, device,
seed, batch size, Trainer arguments, callbacks, interrupt and resume, the metrics block, merging, finishing — and
asks the kind's pipeline only for what differs: its data, model and model-ready splits, its collator and loss,
how it is saved, how it is evaluated and which after-training steps it has.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainingArguments

from tuneforge import artifacts
from tuneforge.data.class_weights import ClassWeights
from tuneforge.errors import Problem
from tuneforge.kinds import RunKind
from tuneforge.models.peft import save_adapter
from tuneforge.recipe import Recipe
from tuneforge.run import RunLayout
from tuneforge.tasks import get_task
from tuneforge.train.trainer import TuneforgeTrainer

Warnings = Callable[[list[Problem]], None] | None
Step = tuple[str, str, Callable[[], Any]]  # (name, command that redoes it, the step)


@dataclass
class RunState:
    """What the skeleton and a pipeline build together, in the order they build it."""

    recipe: Recipe
    kind: RunKind
    layout: RunLayout
    device: torch.device
    precision: str
    checkpoint: Path | None
    data: Any = None  # the prepared data: .train / .validation / .test, .labels, .warnings
    model: Any = None
    tokenizer: Any = None  # the Trainer's processing_class (tokenizer, or None)
    splits: dict[str, Any] = field(default_factory=dict)  # model-ready train / validation / test
    class_weights: ClassWeights | None = None
    parameters: tuple[int, int] = (0, 0)  # (total, trainable) before training
    extras: dict[str, Any] = field(default_factory=dict)  # what one kind keeps for its own later steps

    @property
    def labels(self) -> list[str] | None:
        return getattr(self.data, "labels", None)

    @property
    def has_eval(self) -> bool:
        return "validation" in self.splits


class RunPipeline:
    """Defaults fit a Transformers model trained on tokenised splits; each kind overrides what differs."""

    trainer_class: type[Trainer] = TuneforgeTrainer

    def prepare(self, state: RunState, on_warnings: Warnings) -> None:
        """Fill state.data, model, tokenizer, splits, class_weights, parameters; write data.json."""
        raise NotImplementedError

    def collator(self, state: RunState) -> Any:
        raise NotImplementedError

    def loss(self, state: RunState) -> Callable[..., torch.Tensor] | None:
        return None

    def compute_metrics(self, state: RunState) -> Callable[[Any], dict[str, float]] | None:
        task = get_task(state.recipe.task)
        labels = state.labels

        def compute(prediction: Any) -> dict[str, float]:
            metrics = task.compute_metrics(prediction.predictions, prediction.label_ids, labels)
            return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None}
        return compute

    def trainer_options(self, state: RunState) -> dict[str, Any]:
        """Keyword arguments of `trainer_class` beyond the stock ones."""
        return {}

    def adjust_arguments(self, args: TrainingArguments, state: RunState) -> None:
        """Kind-specific changes to the Trainer's arguments (the skeleton built them from the recipe)."""

    def sizing_model(self, state: RunState) -> Any:
        """The Transformers model `batch_size: auto` estimates (or probes) against."""
        return state.model

    def probe_inputs(self, state: RunState) -> Callable[[int, int, torch.device], dict[str, Any]] | None:
        """Random model inputs of (batch, length) for the GPU batch-size probe; None: estimate instead."""
        vocab = int(getattr(state.model.config, "vocab_size", 1000) or 1000)

        def inputs(batch: int, length: int, device: torch.device) -> dict[str, Any]:
            ids = torch.randint(min(5, vocab - 1), vocab, (batch, length), device=device)
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        return inputs

    def build_trainer(self, state: RunState, args: TrainingArguments, callbacks: list[Any]) -> Trainer:
        return self.trainer_class(
            model=state.model, args=args, train_dataset=state.splits["train"],
            eval_dataset=state.splits.get("validation"), processing_class=state.tokenizer,
            data_collator=self.collator(state), compute_metrics=self.compute_metrics(state),
            compute_loss_func=self.loss(state), callbacks=callbacks, **self.trainer_options(state))

    def save(self, trainer: Trainer, state: RunState) -> None:
        """The trained weights into the run: the adapter alone for PEFT runs, otherwise the whole model."""
        trained = trainer.accelerator.unwrap_model(trainer.model)
        if state.recipe.peft.enabled:
            artifacts.write_directory(state.layout.adapter, functools.partial(
                save_adapter, trained, state.tokenizer, state.recipe.task))
        else:
            artifacts.write_directory(state.layout.model, functools.partial(save_model, trained, state.tokenizer))

    def metrics_header(self, state: RunState) -> dict[str, Any]:
        return {"task": state.recipe.task, "model": state.recipe.model.name, "labels": state.labels}

    def training_metrics(self, trainer: Trainer, state: RunState) -> dict[str, Any]:
        """What this kind adds to metrics.json's training block."""
        return {}

    def evaluate(self, trainer: Trainer, state: RunState, metrics: dict[str, Any]) -> None:
        """Validation and test metrics into `metrics`, predictions and fitted calibration into the run."""
        raise NotImplementedError

    def target_metric(self, state: RunState) -> tuple[str, bool]:
        """(metric, greater_is_better) that early stopping and best-model restore watch."""
        return state.recipe.early_stopping_metric()

    def curve_metric(self, state: RunState) -> str:
        return self.target_metric(state)[0]

    def plot(self, trainer: Trainer, state: RunState, metrics: dict[str, Any]) -> None:
        from tuneforge.report import plots

        plots.training_curve(trainer.state.log_history, self.curve_metric(state), state.layout.training_curve)

    def finishing_steps(self, state: RunState, predictor: Callable[[], Any]) -> list[Step]:
        """After-training steps before the report (fairness audit, explanations); `predictor()` loads the run."""
        return []


def save_model(model: Any, tokenizer: Any, folder: Path) -> None:
    """The Transformers layout (config, safetensors, tokenizer) and nothing pickled, so any tool can load it."""
    model.save_pretrained(str(folder), safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))


def length_statistics(splits: dict[str, Any], max_length: int, extra: Callable[[Any], dict[str, float]] | None = None
                      ) -> dict[str, dict[str, float]]:
    """Tokens per text per split, how many texts hit max_length and were cut, and what `extra` adds."""
    stats = {}
    for role, split in splits.items():
        lengths = np.asarray([len(ids) for ids in split["input_ids"]])
        stats[role] = {"mean": float(lengths.mean()), "p50": float(np.percentile(lengths, 50)),
                       "p95": float(np.percentile(lengths, 95)), "max": int(lengths.max()),
                       "truncated_share": float((lengths >= max_length).mean()), **(extra(split) if extra else {})}
    return stats


def split_rows(data: Any) -> dict[str, int]:
    return {role: len(split) for role, split in (("train", data.train), ("validation", data.validation),
                                                  ("test", data.test)) if split is not None}
