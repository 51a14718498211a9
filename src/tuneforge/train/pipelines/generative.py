"""The pipeline of the generative tasks (seq2seq, causal-lm): a model that writes text.

What differs from the classifiers: the data (token ids with -100 on every token that is not a target), the loss
(token cross-entropy normalised by the target tokens of the whole accumulated batch, so gradient accumulation
changes nothing), optional packing (causal_lm.PackRows: examples end to end in rows of at most max_length
tokens, positions restarting per example, next to no padding), and the evaluation (the loss on every row,
generated text scored with BLEU, chrF and ROUGE, or accuracy for classification as text).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

from tuneforge import artifacts
from tuneforge.data.generative_data import GenerativeData, prepare_generative_data
from tuneforge.models.freezing import apply_freezing, count_parameters
from tuneforge.models.liger import apply_liger
from tuneforge.models.loading import check_generative_model, load_generative_model, load_tokenizer
from tuneforge.models.peft import apply_peft, quantized_loading
from tuneforge.models.resolve import resolve_model
from tuneforge.predict.generative import evaluate_split
from tuneforge.recipe import Recipe
from tuneforge.run import RunLayout
from tuneforge.tasks import causal_lm, seq2seq
from tuneforge.tasks.chunked_loss import lm_loss_without_logits
from tuneforge.tasks.generation import SAMPLE_COUNT, apply_to_generation_config
from tuneforge.train import distributed
from tuneforge.train.pipelines.base import RunPipeline, RunState, Warnings

IGNORE = -100


CHUNKED_VOCABULARY = 32_000  # from this vocabulary size the logits of a batch dominate a decoder's memory


def uses_chunked_loss(state: RunState) -> bool:
    """train.chunked_loss, with `auto` on for large vocabularies or when the lean memory plan asks for it.

    Not under several processes (the loss calls the model's body, which DDP's forward would have to wrap) and not
    with prompt-based PEFT (its virtual tokens come in through the forward pass it bypasses).
    """
    recipe = state.recipe
    setting = recipe.train.chunked_loss
    if setting == "off" or recipe.peft.method in ("prompt_tuning", "prefix_tuning") or \
            distributed.process_state(state.device) is not None:
        return False
    if setting == "on":
        return True
    plan = state.extras.get("memory_plan")
    vocabulary = int(getattr(state.model.config, "vocab_size", 0) or 0)
    return vocabulary >= CHUNKED_VOCABULARY or bool(plan is not None and plan.chunked_loss)


class GenerativePipeline(RunPipeline):
    """seq2seq and causal-lm runs."""

    def prepare(self, state: RunState, on_warnings: Warnings) -> None:
        recipe = state.recipe
        quantization = quantized_loading(recipe.peft, state.device)
        resolved = resolve_model(recipe.model.name)
        check_generative_model(recipe.model, recipe.task, resolved)  # a classifier's model fails before the data
        state.data = prepare_generative_data(recipe)
        if on_warnings is not None and state.data.warnings:
            on_warnings(state.data.warnings)
        tokenizer = load_tokenizer(recipe.model, resolved)
        model = load_generative_model(recipe.model, recipe.task, resolved, **quantization)
        prepare_tokenizer(recipe, tokenizer)
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        apply_to_generation_config(model, recipe.generation, tokenizer)
        # No key/value cache in training: it is useless there, and Transformers reads packed position ids as
        # example boundaries only without one. generate() still caches (generation_config.use_cache).
        model.config.use_cache = False
        state.extras["collator"] = build_collator(recipe, tokenizer, model, state.device)
        if recipe.peft.enabled:
            model = apply_peft(model, tokenizer, recipe.peft, recipe.train.gradient_checkpointing, task=recipe.task)
        else:
            apply_freezing(model, recipe.freeze)
        if recipe.train.kernels == "auto":  # before PEFT wraps the modules Liger patches
            state.extras["kernels"] = apply_liger(model, fused_linear_cross_entropy=False)
        state.model, state.tokenizer = model, tokenizer
        state.parameters = count_parameters(model)
        state.splits, truncated = without_truncation_flags(tokenize_splits(recipe, tokenizer, state.data))
        write_data_summary(state.layout, state.data, state.splits, truncated)

    def collator(self, state: RunState) -> Any:
        return state.extras["collator"]

    def loss(self, state: RunState) -> Callable[..., torch.Tensor]:
        return token_loss(state.recipe.task == "causal-lm")

    def compute_metrics(self, state: RunState) -> None:
        return None  # evaluation during training is the loss; logits over a vocabulary are huge

    def trainer_options(self, state: RunState) -> dict[str, Any]:
        shift = state.recipe.task == "causal-lm"
        options: dict[str, Any] = {"count_tokens": True, "shift_labels": shift}
        if uses_chunked_loss(state):
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(state.precision)
            options["loss_from_model"] = functools.partial(lm_loss_without_logits, shift=shift, autocast_dtype=dtype)
            state.extras["chunked_loss"] = True
        return options

    def adjust_arguments(self, args: TrainingArguments, state: RunState) -> None:
        args.prediction_loss_only = True
        if state.recipe.lm.packing:
            args.train_sampling_strategy = "random"  # a packed batch has no padding for length grouping to save

    def probe_inputs(self, state: RunState) -> Callable[[int, int, torch.device], dict[str, Any]] | None:
        plain = super().probe_inputs(state)
        assert plain is not None

        def inputs(batch: int, length: int, device: torch.device) -> dict[str, Any]:
            made = plain(batch, length, device)
            return {**made, "labels": made["input_ids"]}  # seq2seq needs decoder inputs; decoders take them too
        return inputs

    def save(self, trainer: Trainer, state: RunState) -> None:
        trained = trainer.accelerator.unwrap_model(trainer.model)
        trained.config.use_cache = True
        super().save(trainer, state)

    def training_metrics(self, trainer: Trainer, state: RunState) -> dict[str, Any]:
        return {"train_tokens": int(sum(len(ids) for ids in state.splits["train"]["input_ids"])),
                "packing": state.recipe.lm.packing, "chunked_loss": state.extras.get("chunked_loss", False),
                "kernels": state.extras.get("kernels", [])}

    def evaluate(self, trainer: Trainer, state: RunState, metrics: dict[str, Any]) -> None:
        trained = trainer.accelerator.unwrap_model(trainer.model)
        for role in ("validation", "test"):
            split = getattr(state.data, role)
            if split is None or not len(split):
                continue
            loss = trainer.evaluate(state.splits[role], metric_key_prefix=role).get(f"{role}_loss")
            scores, rows = evaluate_split(state.recipe, trained, state.tokenizer, split, state.labels, state.device)
            metrics[role] = {**scores, "loss": loss,
                             "perplexity": math.exp(min(loss, 50.0)) if loss is not None else None}
            if role == "test":
                _write_rows(state.layout.test_predictions, rows)
            metrics["samples"] = rows[:SAMPLE_COUNT]


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



def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    frame = pd.DataFrame.from_records(rows)
    artifacts.write_with(path, lambda target: frame.to_csv(target, index=False))



def write_data_summary(layout: RunLayout, data: GenerativeData, tokenized: dict[str, Any],
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
