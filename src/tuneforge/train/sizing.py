"""`train.batch_size: auto`: the largest micro-batch that fits the device, chosen before training starts.

On a CUDA GPU the real model is probed: forward and backward of batches of max_length random tokens, doubling the
batch until the allocator runs out of memory (with the optimiser's states held aside, since AdamW allocates them
only at its first step). The Trainer's `auto_find_batch_size` (accelerate's `find_executable_batch_size`) only
ever shrinks a batch the user gave, and it does so by restarting the whole training loop, so the growing probe is
written here with accelerate's own out-of-memory test and cache release.

On the CPU an out-of-memory error is not an exception but the kernel killing the process (or the machine
swapping), so nothing is probed: the batch is sized from `models.estimate` against the RAM available now. CPU
throughput per example stops growing beyond a few dozen examples, and a bigger batch only means fewer optimiser
steps, so the CPU choice is capped at 32.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tuneforge.errors import TuneforgeError
from tuneforge.recipe import Recipe
from tuneforge.train.optimizers import ESTIMATE_NAMES

CPU_CAP = 32
GPU_CAP = 1024
RAM_SHARE = 0.7  # of the RAM available when training starts: the evaluation, the OS and other jobs need the rest
MIN_STEPS_PER_EPOCH = 8  # a batch is never so big that an epoch has fewer optimiser steps than this
ESTIMATE_TASKS = {"multilabel": "classification", "causal-lm": "generation"}
ProbeInputs = Callable[[int, int, torch.device], dict[str, Any]]  # (batch, length, device) -> inputs
STATE_BYTES = {"adamw": 8, "adamw_8bit": 2, "sgd": 0}  # optimiser-state bytes per trainable parameter


@dataclass(frozen=True)
class BatchChoice:
    size: int
    method: str  # given, probed, estimated, checkpoint
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "method": self.method, "reason": self.reason}


def row_cap(rows: int, cap: int) -> int:
    """The largest power of two up to `cap` that still leaves MIN_STEPS_PER_EPOCH steps in an epoch of `rows`."""
    limit = max(1, min(cap, rows // MIN_STEPS_PER_EPOCH))
    return 1 << (limit.bit_length() - 1)


def largest_fitting(attempt: Callable[[int], None], cap: int, release: Callable[[], None] = lambda: None) -> int:
    """Double the batch from 1 while `attempt(batch)` succeeds, up to `cap`; the largest success, or 0.

    An exception that accelerate recognises as out-of-memory ends the search; any other propagates.
    """
    from accelerate.utils.memory import should_reduce_batch_size

    fitted, batch = 0, 1
    while batch <= cap:
        try:
            attempt(batch)
        except Exception as error:
            if not should_reduce_batch_size(error):
                raise
            release()
            break
        release()
        fitted, batch = batch, batch * 2
    return fitted


def _method(recipe: Recipe) -> str:
    if recipe.peft.method in ("lora", "ia3"):
        return "lora"  # (IA)3 trains even less than LoRA; LoRA's figure is the nearest the estimate knows
    if recipe.peft.method == "qlora":
        return "qlora"
    if recipe.peft.enabled or recipe.freeze.all_but_head:
        return "freeze"  # prompt tuning trains a few embeddings and the head
    return "full"


def model_shape_of(model: Any, recipe: Recipe) -> Any:
    """The estimate's ModelShape of a loaded model, rebuilt on the meta device from its config (no memory)."""
    from tuneforge.models.shapes import build_meta_model, shape_of

    task = ESTIMATE_TASKS.get(recipe.task, recipe.task)
    labels = int(getattr(model.config, "num_labels", 2) or 2)
    return shape_of(build_meta_model(model.config.to_dict(), task, labels), recipe.model.name, task)


def estimated_batch_size(model: Any, recipe: Recipe, device: str, budget: int, cap: int,
                         precision: str = "fp32") -> BatchChoice:
    """The largest power of two up to `cap` whose estimated training peak fits `budget` bytes."""
    from tuneforge.models.estimate import TrainingSetup, memory_breakdown

    task = ESTIMATE_TASKS.get(recipe.task, recipe.task)
    shape = model_shape_of(model, recipe)
    best, peak = 0, 0
    batch = 1
    while batch <= cap:
        setup = TrainingSetup(task=task, batch_size=batch, max_length=recipe.train.max_length,
                              method=_method(recipe), lora_r=recipe.peft.r, precision=precision,  # type: ignore[arg-type]
                              optimizer=ESTIMATE_NAMES[recipe.train.optimizer],  # type: ignore[arg-type]
                              gradient_checkpointing=recipe.train.gradient_checkpointing,
                              device=device)  # type: ignore[arg-type]
        needed = memory_breakdown(shape, setup).peak
        if needed > budget:
            break
        best, peak = batch, needed
        batch *= 2
    if best == 0:
        return BatchChoice(1, "estimated", f"even batch 1 is estimated above the memory budget of "
                                           f"{budget / 2**30:.1f} GiB; training may run out of memory")
    return BatchChoice(best, "estimated", f"estimated peak {peak / 2**30:.2f} GiB within {budget / 2**30:.1f} GiB "
                                          f"({RAM_SHARE:.0%} of available RAM), capped at {cap}")


def probed_batch_size(model: Any, recipe: Recipe, device: torch.device, cap: int, precision: str,
                      inputs: ProbeInputs) -> BatchChoice:
    """Forward + backward at max_length with growing batches on the GPU; the largest that ran."""
    from accelerate.utils.memory import clear_device_cache

    model.to(device)
    was_training = model.training
    model.train()
    length = recipe.train.max_length
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        length = min(length, positions)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    states = trainable * STATE_BYTES[ESTIMATE_NAMES[recipe.train.optimizer]]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if recipe.train.gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def attempt(batch: int) -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            output = model(**inputs(batch, length, device))
        output.logits.float().mean().backward()
        model.zero_grad(set_to_none=True)

    reserve = torch.empty(states, dtype=torch.uint8, device=device) if states else None
    try:
        fitted = largest_fitting(attempt, cap, release=lambda: (model.zero_grad(set_to_none=True),
                                                                clear_device_cache(garbage_collection=True)))
    finally:
        del reserve
        clear_device_cache(garbage_collection=True)
        model.train(was_training)
    if fitted == 0:
        raise TuneforgeError(
            f"not even one example of {length} tokens fits in the GPU's memory for training",
            fix="lower train.max_length, set train.gradient_checkpointing: true, train with peft.method: lora, or "
                "choose train.optimizer: adamw_8bit",
        )
    limit = "twice that ran out of memory" if fitted * 2 <= cap else f"the cap of {cap} was reached"
    return BatchChoice(fitted, "probed", f"forward + backward of {fitted} × {length} tokens fit on the GPU; {limit}")


def checkpoint_batch_size(checkpoint: Path) -> int | None:
    """The batch size a checkpoint was trained with, so a resumed `auto` run continues exactly."""
    state = checkpoint / "trainer_state.json"
    if not state.is_file():
        return None
    value = json.loads(state.read_text(encoding="utf-8")).get("train_batch_size")
    return int(value) if value else None


def choose_batch_size(recipe: Recipe, model: Any, device: torch.device, train_rows: int, precision: str,
                      checkpoint: Path | None = None, inputs: ProbeInputs | None = None,
                      sizing_model: Any = None) -> BatchChoice:
    """The recipe's batch size, or for `auto` the checkpoint's (resume), a GPU probe with the run kind's `inputs`,
    or an estimate of `sizing_model` (default: the model) against the memory free now."""
    if recipe.train.batch_size != "auto":
        return BatchChoice(int(recipe.train.batch_size), "given", "train.batch_size in the recipe")
    if checkpoint is not None:
        size = checkpoint_batch_size(checkpoint)
        if size:
            return BatchChoice(size, "checkpoint", f"the batch size {checkpoint.name} was trained with")
    if device.type == "cuda" and inputs is not None:
        return probed_batch_size(model, recipe, device, row_cap(train_rows, GPU_CAP), precision, inputs)
    if device.type == "cuda":
        budget = int(torch.cuda.mem_get_info(device)[0] * RAM_SHARE)
        return estimated_batch_size(sizing_model or model, recipe, "cuda", budget, row_cap(train_rows, GPU_CAP),
                                    precision)
    import psutil

    budget = int(psutil.virtual_memory().available * RAM_SHARE)
    return estimated_batch_size(sizing_model or model, recipe, "cpu", budget, row_cap(train_rows, CPU_CAP))
