"""Worker processes: each opens the shared storage and runs `study.optimize` until the budget is spent.

Processes rather than threads because a trial holds the GIL for its tokenisation and Python-side training
loop; they are started with `spawn`, as forking a process that has already loaded torch is unsafe.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tuneforge.recipe import Recipe
from tuneforge.search.objective import Objective
from tuneforge.search.samplers import build_pruner, build_sampler
from tuneforge.search.storage import GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, open_storage

FINISHED = ("COMPLETE", "PRUNED")
START_TIMEOUT_S = 120


class StopAtBudget:
    """Stops a worker once finished plus running trials reach the budget, counted over every worker, so a
    shared study does not overshoot by a trial per worker (Optuna's MaxTrialsCallback counts finished only)."""

    def __init__(self, budget: int | None) -> None:
        self.budget = budget

    def __call__(self, study: Any, trial: Any) -> None:
        if self.budget is not None and used_budget(study, include_running=True) >= self.budget:
            study.stop()


def used_budget(study: Any, include_running: bool = False) -> int:
    from optuna.trial import TrialState

    states = [TrialState.COMPLETE, TrialState.PRUNED] + ([TrialState.RUNNING] if include_running else [])
    return len(study.get_trials(deepcopy=False, states=tuple(states)))


def optimize(recipe: Recipe, study_dir: Path, url: str, study_name: str, *, worker: int = 0, parallel: bool = False,
             n_trials: int | None, timeout: float | None, callbacks: Sequence[TrainerCallback] = (),
             study_callbacks: Sequence[Any] = (), heartbeat: tuple[int, int] | None = None) -> None:
    """Run trials of one study in this process until the budget, the timeout or the grid is spent."""
    import optuna

    interval, grace = heartbeat or (HEARTBEAT_INTERVAL_S, GRACE_PERIOD_S)
    storage = open_storage(url, interval, grace)
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=build_sampler(recipe.search, worker, parallel),
                              pruner=build_pruner(recipe.search))
    objective = Objective(recipe, study_dir, worker, callbacks)
    study.optimize(objective, n_trials=n_trials, timeout=timeout, gc_after_trial=True,
                   callbacks=[StopAtBudget(recipe.search.trials), *study_callbacks])


def _worker_main(recipe_json: str, study_dir: str, url: str, study_name: str, worker: int, n_trials: int | None,
                 timeout: float | None, threads: int, verbosity: int, heartbeat: tuple[int, int] | None,
                 start: Any, quiet: bool) -> None:
    import threading

    import optuna
    import torch

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(verbosity)
    if quiet:
        _quiet_like_the_parent()
    recipe = Recipe.model_validate_json(recipe_json)
    try:  # every worker asks for its first trial at once, so none runs the study alone while others import
        start.wait(timeout=START_TIMEOUT_S)
    except threading.BrokenBarrierError:
        pass  # a slow worker only delays its own start
    optimize(recipe, Path(study_dir), url, study_name, worker=worker, parallel=True, n_trials=n_trials,
             timeout=timeout, heartbeat=heartbeat)


def _quiet_like_the_parent() -> None:
    """A spawned process starts with default logging; keep it as quiet as the process that started it."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def start_workers(recipe: Recipe, study_dir: Path, url: str, study_name: str, count: int, n_trials: int | None,
                  timeout: float | None, heartbeat: tuple[int, int] | None = None) -> tuple[list[Any], Any]:
    """`count` spawned processes on one storage, and the barrier they start on (the caller keeps it alive
    until they have started); torch threads are shared out so they do not oversubscribe."""
    import optuna
    import transformers

    quiet = transformers.logging.get_verbosity() >= transformers.logging.ERROR
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // count)
    start = context.Barrier(count)
    processes = []
    for worker in range(count):
        process = context.Process(
            target=_worker_main, name=f"tuneforge-search-{worker}",
            args=(recipe.model_dump_json(), str(study_dir), url, study_name, worker, n_trials, timeout, threads,
                  optuna.logging.get_verbosity(), heartbeat, start, quiet))
        process.start()
        processes.append(process)
    return processes, start
