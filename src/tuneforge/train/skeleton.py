"""One fine-tuning run, from a validated recipe to a finished run directory — the one skeleton of every run kind.

The loop itself is the Transformers Trainer. This module does what is the same for every kind, in order: decide
the kind, claim and prepare the run directory, device, precision and seed, let the kind's pipeline build data,
model and splits, choose the batch size, build the Trainer's arguments and callbacks, train (a signal stops at a
step boundary with an exact checkpoint), save, write the metrics block, merge an adapter, and run the
after-training steps. What differs between kinds lives in train/pipelines/, behind one protocol.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil
import torch
from transformers import Trainer, TrainerCallback, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from tuneforge import artifacts
from tuneforge.errors import Problem, TuneforgeError
from tuneforge.evaluate.plugins import load_plugins
from tuneforge.kinds import kind_of
from tuneforge.models.compile import compile_blocks, should_compile
from tuneforge.models.lean import plan_lean
from tuneforge.models.peft import MERGEABLE, write_merged_model
from tuneforge.predict import Predictor
from tuneforge.recipe import Recipe
from tuneforge.run import Run, RunLayout, write_kind
from tuneforge.runtime import pick_device, resolve_precision
from tuneforge.train import distributed
from tuneforge.train.arguments import run_callbacks, start_tracking, training_arguments
from tuneforge.train.finishing import finish_run
from tuneforge.train.optimizers import trainer_optimizer
from tuneforge.train.pipelines import pipeline_for
from tuneforge.train.pipelines.base import RunPipeline, RunState
from tuneforge.train.rundir import default_run_dir, prepare_run_dir, run_lock
from tuneforge.train.sizing import RAM_SHARE, BatchChoice, choose_batch_size, model_shape_of
from tuneforge.train.trainer import TrainingInterrupted, train_to_end

__all__ = ["TrainingInterrupted", "default_run_dir", "fine_tune"]

logger = logging.getLogger(__name__)


def fine_tune(recipe: Recipe, *, resume: bool = False, force: bool = False,
              callbacks: Sequence[TrainerCallback] = (),
              on_warnings: Callable[[list[Problem]], None] | None = None,
              on_progress: Callable[[str, int, int], None] | None = None) -> Run:
    """Train, evaluate and write the run directory; returns the finished `Run`.

    `on_warnings` receives the data warnings (e.g. texts shared between splits) before training starts, and the
    after-training steps that failed; `on_progress(step, number, total)` hears of each after-training step as it
    starts. `force` resumes a finished run (for example with more epochs).
    """
    kind = kind_of(recipe)
    pipeline = pipeline_for(kind)
    device = pick_device(recipe.train.device)
    if distributed.process_state(device) is not None and not kind.nproc:
        raise TuneforgeError(f"{kind.summary} ({kind.name} runs) train in one process",
                             fix="start it without torchrun or --nproc")
    recipe = recipe.model_copy(deep=True)
    with ExitStack() as held:
        layout, checkpoint = distributed.prepare_run_dir(
            functools.partial(_claim, held, recipe, resume, force), device)
        recipe.output.dir = str(layout.root)
        if distributed.writes_run(layout):
            artifacts.write_text(layout.recipe, recipe.to_yaml())
            write_kind(layout.root, kind)
        if kind.plugins:
            load_plugins(recipe.evaluation.plugins)  # a misnamed plug-in fails now, not after hours of training
        set_seed(recipe.train.seed)
        state = RunState(recipe, kind, layout, device, resolve_precision(recipe.train.precision, device),
                         checkpoint)
        return _run(pipeline, state, callbacks, on_warnings, on_progress)


def _claim(held: ExitStack, recipe: Recipe, resume: bool, force: bool) -> tuple[RunLayout, Path | None]:
    """Lock the run directory for this process (released when the run ends), then prepare it."""
    root = Path(recipe.output.dir or default_run_dir(recipe))
    held.enter_context(run_lock(root))
    recipe.output.dir = str(root)
    return prepare_run_dir(recipe, resume, force)


def _run(pipeline: RunPipeline, state: RunState, callbacks: Sequence[TrainerCallback],
         on_warnings: Callable[[list[Problem]], None] | None,
         on_progress: Callable[[str, int, int], None] | None) -> Run:
    recipe, layout = state.recipe, state.layout
    pipeline.prepare(state, on_warnings)
    if distributed.writes_run(layout):
        _record_class_weights(layout, state)
    batch = choose_batch_size(recipe, state.model, state.device, len(state.splits["train"]), state.precision,
                              state.checkpoint, pipeline.probe_inputs(state), pipeline.sizing_model(state))
    logger.info("batch size %d (%s: %s)", batch.size, batch.method, batch.reason)
    metric, greater_is_better = pipeline.target_metric(state)
    start_tracking(recipe)
    args = training_arguments(recipe, layout, state.device, state.has_eval, metric, greater_is_better, batch.size)
    pipeline.adjust_arguments(args, state)
    if recipe.train.memory == "lean":
        apply_memory_plan(state, pipeline, args, batch.size)
    if should_compile(recipe.train.compile, state.device):
        state.extras["compiled_blocks"] = len(compile_blocks(state.model))
    trainer = pipeline.build_trainer(state, args, run_callbacks(recipe, layout, state.has_eval, state.model,
                                                                state.kind.gradual_unfreeze, callbacks))
    for noisy in (ProgressCallback, PrinterCallback):  # core functions never print; the CLI shows progress
        trainer.remove_callback(noisy)

    started = time.time()
    result = train_to_end(trainer, state.checkpoint, layout.checkpoints, layout.root,
                          recipe.train.save_checkpoints)
    writes = distributed.writes_run(layout)
    if writes:  # other ranks: rank 0 saves the one model
        pipeline.save(trainer, state)
    metrics = {**pipeline.metrics_header(state),
               "training": training_block(trainer, state, pipeline, batch, result, started)}
    pipeline.evaluate(trainer, state, metrics)
    if not writes:
        return Run(layout.root, recipe, metrics)  # the merge and the finishing steps read rank 0's files
    artifacts.write_json(layout.metrics, metrics)
    pipeline.plot(trainer, state, metrics)
    del trainer  # the finishing steps reload the saved model; free the training copy first
    state.model = None
    if recipe.peft.method in MERGEABLE:  # every consumer of model/ then works unchanged (see models/peft.py)
        artifacts.write_directory(layout.model, functools.partial(write_merged_model, layout.root))
    finish_run(layout, recipe, pipeline.finishing_steps(state, _predictor(layout, recipe)), on_warnings,
               on_progress)
    _drop_checkpoints(recipe, layout)
    return Run.open(layout.root)  # with what the after-training steps added (their times)


def apply_memory_plan(state: RunState, pipeline: RunPipeline, args: Any, batch: int) -> None:
    """train.memory: lean — the cheapest savers that fit the memory free now (models/lean.py), applied to the
    Trainer's arguments (checkpointing, 8-bit or paged states) and, through state.extras, to the loss."""
    model = pipeline.sizing_model(state)
    if state.device.type == "cuda":
        budget = int(torch.cuda.mem_get_info(state.device)[0] * RAM_SHARE)
    else:
        budget = int(psutil.virtual_memory().available * RAM_SHARE)
    vocabulary = int(getattr(model.config, "vocab_size", 0) or 0)
    method = "lora" if state.recipe.peft.enabled else "full"
    plan = plan_lean(model_shape_of(model, state.recipe), batch, state.recipe.train.max_length, vocabulary, budget,
                     state.device, method=method, precision=state.precision)
    state.extras["memory_plan"] = plan
    if plan.gradient_checkpointing:
        args.gradient_checkpointing = True
        args.gradient_checkpointing_kwargs = {"use_reentrant": False}
    if plan.optimizer != state.recipe.train.optimizer and plan.optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        args.optim = trainer_optimizer(plan.optimizer, state.device)
    logger.info("memory plan: %s", plan.summary())


def training_block(trainer: Trainer, state: RunState, pipeline: RunPipeline, batch: BatchChoice, result: Any,
                   started: float) -> dict[str, Any]:
    """metrics.json's `training` section: the same keys for every kind, then the kind's own."""
    metric = pipeline.target_metric(state)[0]
    total, trainable = state.parameters
    return {
        "runtime_seconds": round(time.time() - started, 2),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "batch_size": batch.size,
        "batch_size_choice": batch.to_json(),
        "global_steps": trainer.state.global_step,
        "epochs_completed": trainer.state.epoch,
        "stopped_early": trainer.state.global_step < trainer.state.max_steps,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_metric": {metric: trainer.state.best_metric} if state.has_eval else None,
        "parameters": total,
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad) or trainable,
        "device": state.device.type,
        "processes": trainer.args.world_size,
        "precision": state.precision,
        "train_examples": len(state.splits["train"]),
        "class_weights": state.class_weights.to_json() if state.class_weights else None,
        "compiled_blocks": state.extras.get("compiled_blocks", 0),
        "memory_plan": state.extras["memory_plan"].to_json() if "memory_plan" in state.extras else None,
        **pipeline.training_metrics(trainer, state),
    }


def _record_class_weights(layout: RunLayout, state: RunState) -> None:
    """The one class-weights decision into data.json, the same object metrics.json's training block prints."""
    summary = json.loads(layout.data_summary.read_text(encoding="utf-8")) if layout.data_summary.is_file() else {}
    decision = state.class_weights
    summary["class_weights"] = decision.to_json() if decision else None
    summary["class_weights_reason"] = decision.reason if decision else f"{state.kind.name} runs have no class weights"
    artifacts.write_json(layout.data_summary, summary)


def _predictor(layout: RunLayout, recipe: Recipe) -> Callable[[], Any]:
    """Loads the saved run once, on first use by an after-training step."""
    loaded: list[Any] = []

    def load() -> Any:
        if not loaded:
            # the run this process just trained from the user's recipe: its code is the user's own
            loaded.append(Predictor.from_run(layout.root, recipe.train.device, trust_run_code=True))
        return loaded[0]
    return load


def _drop_checkpoints(recipe: Recipe, layout: RunLayout) -> None:
    """A finished run keeps its model, not the optimiser states of every epoch (most of a run's size)."""
    if not recipe.train.keep_checkpoints and layout.checkpoints.is_dir():
        shutil.rmtree(layout.checkpoints, ignore_errors=True)
