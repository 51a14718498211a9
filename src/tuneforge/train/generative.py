"""The fine-tuning path of the generative tasks (seq2seq, causal-lm), from a recipe to a finished run directory.

Same loop (the Transformers Trainer, through TuneforgeTrainer), run directory, checkpoints, resume and finishing
steps as the classifiers; what differs is the data (token ids with -100 on every token that is not a target),
the loss (token cross-entropy normalised by the target tokens of the whole accumulated batch, so gradient
accumulation changes nothing), optional packing (causal_lm.PackRows: examples end to end in rows of at most
max_length tokens, positions restarting per example, next to no padding), and the evaluation (the loss on every
row, generated text scored with BLEU, chrF and ROUGE, or accuracy for classification as text).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import (
    DataCollatorForSeq2Seq,
    EarlyStoppingCallback,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from tuneforge import artifacts
from tuneforge.data.generative_data import GenerativeData, prepare_generative_data
from tuneforge.errors import Problem
from tuneforge.models.freezing import apply_freezing, count_parameters
from tuneforge.models.loading import check_generative_model, load_generative_model, load_tokenizer
from tuneforge.models.peft import MERGEABLE, apply_peft, quantized_loading, write_merged_model
from tuneforge.models.resolve import resolve_model
from tuneforge.predict.generative import evaluate_split
from tuneforge.recipe import Recipe
from tuneforge.report import plots
from tuneforge.run import Run, RunLayout
from tuneforge.runtime import pick_device, resolve_precision
from tuneforge.tasks import causal_lm, seq2seq
from tuneforge.tasks.generation import SAMPLE_COUNT, apply_to_generation_config
from tuneforge.train.callbacks import JsonlLogCallback
from tuneforge.train.finishing import finish_run
from tuneforge.train.runner import (
    TrainingInterrupted,
    TuneforgeTrainer,
    _prepare_run_dir,
    _training_arguments,
    save_trained,
    tensorboard_callback,
    trainer_trainable,
)

IGNORE = -100


class GenerativeTrainer(TuneforgeTrainer):
    """TuneforgeTrainer that counts target tokens (not rows) across the accumulated micro-batches, shifted by
    one for decoders, whose logits at position t predict the token at t + 1."""

    def __init__(self, *args: Any, shift_labels: bool, **kwargs: Any) -> None:
        super().__init__(*args, count_tokens=True, **kwargs)
        self._loss_shifts_labels = shift_labels  # read by the stock token count (Trainer._get_num_items_in_batch)


def token_loss(shift: bool) -> Callable[..., torch.Tensor]:
    """Summed token cross-entropy over the labelled tokens divided by the labelled tokens of the whole optimiser
    step (`num_items_in_batch`), so micro-batches of any size add up to the same mean; a plain mean per batch when
    no count is given (evaluation)."""
    def compute(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None, weights: Any = None
                ) -> torch.Tensor:
        logits = outputs.logits
        if logits.size(1) > labels.size(1):  # prompt tuning: logits of the virtual tokens come first
            logits = logits[:, logits.size(1) - labels.size(1):]
        if shift:
            logits, labels = logits[..., :-1, :], labels[..., 1:]
        labels = labels.to(logits.device)
        total = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                                ignore_index=IGNORE, reduction="sum")
        if num_items_in_batch is None:
            return total / (labels != IGNORE).sum().clamp(min=1)
        count = num_items_in_batch.to(total.device) if torch.is_tensor(num_items_in_batch) else num_items_in_batch
        return total / count
    return compute


# ------------------------------------------------------------------------------------------------------
# Tokenizer, tokenised data and collator
# ------------------------------------------------------------------------------------------------------

def prepare_tokenizer(recipe: Recipe, tokenizer: Any) -> None:
    """Decoders: an EOS token to end every response with, and a chat template (the recipe's, the tokenizer's or
    the default), saved with the model."""
    if recipe.task == "causal-lm":
        causal_lm.require_eos(tokenizer, recipe.model.name)
        causal_lm.ensure_chat_template(tokenizer, recipe.lm.chat_template)


def tokenize_splits(recipe: Recipe, tokenizer: Any, data: GenerativeData) -> dict[str, Any]:
    """input_ids and labels per split (plus `truncated`, dropped before training), cached by `datasets`."""
    max_length = recipe.train.max_length
    if recipe.task == "seq2seq":
        function: Any = seq2seq.TokenizeSeq2Seq(tokenizer, max_length, max_length)
    else:
        function = causal_lm.TokenizeCausal(tokenizer, max_length, data.chat)
    splits = (("train", data.train), ("validation", data.validation), ("test", data.test))
    return {role: split.map(function, batched=True, remove_columns=split.column_names, desc=f"tokenizing {role}")
            for role, split in splits if split is not None}


def build_collator(recipe: Recipe, tokenizer: Any, model: Any, device: torch.device) -> Any:
    """Packing: examples end to end in rows of at most max_length tokens, position ids restarting per example
    (which the attention reads as block boundaries). Otherwise dynamic padding, labels padded with -100;
    seq2seq gets its decoder inputs from the labels here (the model's own shift), so the forward pass needs no
    labels."""
    if recipe.task == "causal-lm" and recipe.lm.packing:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return causal_lm.PackRows(recipe.train.max_length, pad)
    return DataCollatorForSeq2Seq(tokenizer, model=model if recipe.task == "seq2seq" else None,
                                  label_pad_token_id=IGNORE, pad_to_multiple_of=8 if device.type == "cuda" else None)


def without_truncation_flags(tokenized: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    shares = {role: float(np.mean(split["truncated"])) if len(split) else 0.0 for role, split in tokenized.items()}
    return {role: split.remove_columns(["truncated"]) for role, split in tokenized.items()}, shares


def build_trainer(recipe: Recipe, model: Any, tokenizer: Any, train: Any, validation: Any, args: TrainingArguments,
                  collator: Any, callbacks: Sequence[TrainerCallback] = ()) -> GenerativeTrainer:
    trainer = GenerativeTrainer(
        model=model, args=args, train_dataset=train, eval_dataset=validation, processing_class=tokenizer,
        data_collator=collator, compute_loss_func=token_loss(recipe.task == "causal-lm"),
        callbacks=list(callbacks), shift_labels=recipe.task == "causal-lm",
    )
    for noisy in (ProgressCallback, PrinterCallback):  # core functions never print; the CLI shows progress
        trainer.remove_callback(noisy)
    return trainer


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    frame = pd.DataFrame.from_records(rows)
    artifacts.write_with(path, lambda target: frame.to_csv(target, index=False))


# ------------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------------

def fine_tune_generative(recipe: Recipe, *, resume: bool = False, callbacks: Sequence[TrainerCallback] = (),
                         on_warnings: Callable[[list[Problem]], None] | None = None) -> Run:
    """Train a seq2seq or causal-lm run, evaluate it and write the run directory; returns the finished `Run`."""
    recipe = recipe.model_copy(deep=True)
    layout, checkpoint = _prepare_run_dir(recipe, resume)
    recipe.output.dir = str(layout.root)
    artifacts.write_text(layout.recipe, recipe.to_yaml())

    device = pick_device(recipe.train.device)
    quantization = quantized_loading(recipe.peft, device)
    set_seed(recipe.train.seed)
    resolved = resolve_model(recipe.model.name)
    check_generative_model(recipe.model, recipe.task, resolved)  # a classifier's model fails now, not after data
    data = prepare_generative_data(recipe)
    if on_warnings is not None and data.warnings:
        on_warnings(data.warnings)
    tokenizer = load_tokenizer(recipe.model, resolved)
    model = load_generative_model(recipe.model, recipe.task, resolved, **quantization)
    prepare_tokenizer(recipe, tokenizer)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    apply_to_generation_config(model, recipe.generation, tokenizer)
    # No key/value cache in training: it is useless there, and Transformers reads packed position ids as example
    # boundaries only without one. generate() still caches (generation_config.use_cache).
    model.config.use_cache = False
    collator = build_collator(recipe, tokenizer, model, device)
    if recipe.peft.enabled:
        model = apply_peft(model, tokenizer, recipe.peft, recipe.train.gradient_checkpointing, task=recipe.task)
    else:
        apply_freezing(model, recipe.freeze)
    total_parameters, trainable_parameters = count_parameters(model)

    tokenized, truncated = without_truncation_flags(tokenize_splits(recipe, tokenizer, data))
    _write_data_summary(layout, data, tokenized, truncated)

    has_eval = "validation" in tokenized
    metric, greater_is_better = recipe.early_stopping_metric()
    batch_size = _batch_size(recipe, model, device, len(tokenized["train"]), checkpoint)
    args = _training_arguments(recipe, layout, device, has_eval, metric, greater_is_better, batch_size)
    args.prediction_loss_only = True  # evaluation during training is the loss; logits of a vocabulary are huge
    if recipe.lm.packing:
        args.train_sampling_strategy = "random"  # a packed batch has no padding for length grouping to save
    run_callbacks: list[TrainerCallback] = [JsonlLogCallback(layout.log)]
    if has_eval and recipe.early_stopping.enabled:
        run_callbacks.append(EarlyStoppingCallback(recipe.early_stopping.patience, recipe.early_stopping.min_delta))
    tensorboard = tensorboard_callback(recipe.output.tensorboard, layout.root / "tensorboard")
    if tensorboard is not None:
        run_callbacks.append(tensorboard)
    run_callbacks.extend(callbacks)
    trainer = build_trainer(recipe, model, tokenizer, tokenized["train"], tokenized.get("validation"), args,
                            collator, run_callbacks)

    started = time.time()
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except KeyboardInterrupt:
        if recipe.train.save_checkpoints and trainer.state.global_step > 0:
            trainer._save_checkpoint(trainer.model, trial=None)  # exact-step checkpoint so nothing is lost
        raise TrainingInterrupted(
            f"training was interrupted at step {trainer.state.global_step}; checkpoints are in {layout.checkpoints}",
            fix=f"resume with the same command plus --resume (output: {layout.root})",
        ) from None

    trained = trainer.accelerator.unwrap_model(trainer.model)
    trained.config.use_cache = True
    save_trained(trainer, tokenizer, recipe, layout)

    metrics: dict[str, Any] = {
        "task": recipe.task,
        "model": recipe.model.name,
        "labels": data.labels,
        "training": {
            "runtime_seconds": round(time.time() - started, 2),
            "train_samples_per_second": result.metrics.get("train_samples_per_second"),
            "train_tokens": int(sum(len(ids) for ids in tokenized["train"]["input_ids"])),
            "global_steps": trainer.state.global_step,
            "epochs_completed": trainer.state.epoch,
            "stopped_early": trainer.state.global_step < trainer.state.max_steps,
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "best_metric": {metric: trainer.state.best_metric} if has_eval else None,
            "parameters": total_parameters,
            "trainable_parameters": trainer_trainable(trainer) or trainable_parameters,
            "device": device.type,
            "precision": resolve_precision(recipe.train.precision, device),
            "train_examples": len(data.train),
            "packing": recipe.lm.packing,
        },
    }
    for role, split in (("validation", data.validation), ("test", data.test)):
        if split is None or not len(split):
            continue
        loss = trainer.evaluate(tokenized[role], metric_key_prefix=role).get(f"{role}_loss")
        scores, rows = evaluate_split(recipe, trained, tokenizer, split, data.labels, device)
        metrics[role] = {**scores, "loss": loss, "perplexity": math.exp(min(loss, 50.0)) if loss is not None else None}
        if role == "test":
            _write_rows(layout.test_predictions, rows)
        metrics["samples"] = rows[:SAMPLE_COUNT]
    artifacts.write_json(layout.metrics, metrics)
    plots.training_curve(trainer.state.log_history, metric, layout.training_curve)
    del trainer, model, trained
    if recipe.peft.method in MERGEABLE:
        artifacts.write_directory(layout.model, functools.partial(write_merged_model, layout.root))
    finish_run(layout, recipe, data.test, on_warnings)
    return Run(layout.root, recipe, metrics)


def _batch_size(recipe: Recipe, model: Any, device: torch.device, rows: int, checkpoint: Path | None) -> int:
    """The recipe's batch size; for `auto`, the sizing module's choice, except its GPU probe, which feeds
    classification inputs: a generative run on a GPU starts from 8 (raise it with train.batch_size)."""
    from tuneforge.train.sizing import choose_batch_size

    if recipe.train.batch_size == "auto" and device.type == "cuda" and checkpoint is None:
        return 8
    return choose_batch_size(recipe, model, device, rows, resolve_precision(recipe.train.precision, device),
                             checkpoint).size


def _write_data_summary(layout: RunLayout, data: GenerativeData, tokenized: dict[str, Any],
                        truncated: dict[str, float]) -> None:
    lengths = {}
    for role, split in tokenized.items():
        sizes = np.asarray([len(ids) for ids in split["input_ids"]])
        targets = np.asarray([sum(1 for label in labels if label != IGNORE) for labels in split["labels"]])
        lengths[role] = {"mean": float(sizes.mean()), "p50": float(np.percentile(sizes, 50)),
                         "p95": float(np.percentile(sizes, 95)), "max": int(sizes.max()),
                         "target_tokens_mean": float(targets.mean()), "truncated_share": truncated.get(role, 0.0)}
    summary = {
        "sources": data.sources,
        "rows": {role: len(split) for role, split in (("train", data.train), ("validation", data.validation),
                                                       ("test", data.test)) if split is not None},
        "labels": data.labels,
        "format": "chat" if data.chat else ("source/target" if "source" in data.train.column_names
                                            else "prompt/response"),
        "text_lengths": lengths,
        "warnings": [str(w) for w in data.warnings],
    }
    artifacts.write_json(layout.data_summary, summary)
