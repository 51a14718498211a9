"""What the Trainer is told: its arguments from the recipe, and the callbacks every run gets.

A recipe field reaches the Trainer here, within a screen of where it is read, for every run kind alike.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import EarlyStoppingCallback, TrainerCallback, TrainingArguments

from tuneforge.errors import TuneforgeError
from tuneforge.recipe import Recipe
from tuneforge.run import RunLayout
from tuneforge.runtime import resolve_precision
from tuneforge.train import distributed
from tuneforge.train.callbacks import GradualUnfreezeCallback, JsonlLogCallback
from tuneforge.train.optimizers import trainer_optimizer
from tuneforge.train.trainer import StopOnSignal


def training_arguments(recipe: Recipe, layout: RunLayout, device: torch.device, has_eval: bool,
                        metric: str, greater_is_better: bool, batch_size: int) -> TrainingArguments:
    spec = recipe.train
    precision = resolve_precision(spec.precision, device)
    interval = "epoch" if has_eval else "no"
    save = "epoch" if spec.save_checkpoints else "no"
    early = recipe.early_stopping
    return TrainingArguments(
        output_dir=str(layout.checkpoints),
        learning_rate=spec.learning_rate,
        per_device_train_batch_size=batch_size,  # `auto` was resolved by train.sizing
        optim=trainer_optimizer(spec.optimizer, device),
        per_device_eval_batch_size=spec.eval_batch_size,
        num_train_epochs=spec.epochs,
        max_steps=spec.max_steps if spec.max_steps > 0 else -1,
        warmup_steps=spec.warmup_ratio,
        lr_scheduler_type=spec.lr_scheduler,
        weight_decay=spec.weight_decay,
        max_grad_norm=spec.max_grad_norm,
        gradient_accumulation_steps=spec.gradient_accumulation_steps,
        seed=spec.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device.type == "cpu",
        eval_strategy=interval,
        save_strategy=save if has_eval or save == "no" else "epoch",
        save_total_limit=spec.save_total_limit,
        logging_strategy="steps",
        logging_steps=spec.logging_steps,
        logging_first_step=True,
        load_best_model_at_end=has_eval and early.restore_best and save != "no",
        metric_for_best_model=metric if has_eval else None,
        greater_is_better=greater_is_better if has_eval else None,
        train_sampling_strategy="group_by_length" if spec.group_by_length else "random",
        dataloader_num_workers=spec.dataloader_workers,
        # trackers; TensorBoard is attached as a callback writing into the run directory (run_callbacks)
        report_to=[name for name in spec.report_to if name != "tensorboard"] or "none",
        run_name=layout.root.name,
        disable_tqdm=True,
        save_only_model=False,
        activation_checkpointing=spec.gradient_checkpointing,
        # Non-reentrant checkpointing also back-propagates when every input of a segment is frozen (PEFT).
        activation_checkpointing_kwargs={"use_reentrant": False} if spec.gradient_checkpointing else None,
        # Datasets hold only model inputs, labels and optional example weights, which the forward pass must
        # not receive but the loss must; dropping "unused" columns would drop the weights.
        remove_unused_columns=False,
        **distributed.trainer_arguments(spec.distributed),  # fsdp / deepspeed / backend under torchrun
    )


def tensorboard_callback(setting: str, folder: Path) -> TrainerCallback | None:
    installed = importlib.util.find_spec("tensorboard") is not None
    if setting == "off" or (setting == "auto" and not installed):
        return None
    if not installed:
        raise TuneforgeError("output.tensorboard is on but the tensorboard package is not installed",
                             fix="pip install tensorboard, or set output.tensorboard: auto")
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(folder)))


def start_tracking(recipe: Recipe) -> None:
    """Point the trackers of train.report_to where the recipe says, before the Trainer opens its runs; a tracker
    that is not installed stops the run now, not after training."""
    for tracker in recipe.train.report_to:
        if importlib.util.find_spec(tracker) is None:
            raise TuneforgeError(f"train.report_to names {tracker}, which is not installed",
                                 fix=f"pip install {tracker}, or remove it from train.report_to")
    if "mlflow" in recipe.train.report_to:
        import mlflow

        if recipe.output.tracking_uri:
            mlflow.set_tracking_uri(recipe.output.tracking_uri)
        mlflow.set_experiment(recipe.output.experiment)


def run_callbacks(recipe: Recipe, layout: RunLayout, has_eval: bool, model: Any, gradual_unfreeze: bool,
                  extra: Sequence[TrainerCallback] = ()) -> list[TrainerCallback]:
    """The log, early stopping, gradual unfreezing (where the kind supports it), TensorBoard, the clean stop on
    signals, then the caller's callbacks (progress bars)."""
    callbacks: list[TrainerCallback] = [JsonlLogCallback(layout.log), StopOnSignal()]
    if has_eval and recipe.early_stopping.enabled:
        callbacks.append(EarlyStoppingCallback(recipe.early_stopping.patience, recipe.early_stopping.min_delta))
    if gradual_unfreeze and recipe.freeze.gradual_unfreeze:
        callbacks.append(GradualUnfreezeCallback(model, recipe.freeze.embeddings))
    setting = "on" if "tensorboard" in recipe.train.report_to else recipe.output.tensorboard
    tensorboard = tensorboard_callback(setting, layout.root / "tensorboard")
    if tensorboard is not None:
        callbacks.append(tensorboard)
    return [*callbacks, *extra]
