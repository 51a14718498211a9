"""A hyperparameter study over a recipe: open or resume it, run trials (in one or several processes), then write
the leaderboard, the best recipe and the plots.

A new study runs the recipe as it is first (trial 0, enqueued with its own values), and refuses a validation
split too small to rank trials (search/ranking.py). Re-running the same study continues it: finished trials count
against `search.trials`, a trial stopped by Ctrl-C is queued again with the same values, and one whose process
died is found by its missing heartbeat, marked failed and queued again (Optuna's
RetryHeartbeatStaleTrialCallback).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tuneforge.errors import TuneforgeError
from tuneforge.recipe import Recipe
from tuneforge.search import outputs
from tuneforge.search.outputs import TrialRow, ranked, trial_row
from tuneforge.search.ranking import check_validation_size, enqueue_default, validation_rows
from tuneforge.search.samplers import build_pruner, build_sampler
from tuneforge.search.space import grid_size
from tuneforge.search.storage import _redact, open_storage, storage_url
from tuneforge.search.workers import FINISHED, optimize, start_workers, used_budget

POLL_S = 2.0  # how often the parent looks for trials finished by worker processes


@dataclass
class StudyResult:
    directory: Path
    study_name: str
    storage: str  # without its password
    metric: str
    greater_is_better: bool
    trials: list[TrialRow]  # leaderboard order
    ran_now: int  # trials this call finished
    best: TrialRow | None
    best_recipe: Path | None
    leaderboard: Path
    plots: list[Path] = field(default_factory=list)
    skipped_plots: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # e.g. a validation split too small to rank trials well

    def count(self, state: str) -> int:
        return sum(row.state == state for row in self.trials)


def study_directory(recipe: Recipe) -> Path:
    return Path(recipe.search.dir or recipe.output.dir or Path("studies") / recipe.task)


def _check(recipe: Recipe, workers: int) -> None:
    spec = recipe.search
    if not spec.space:
        raise TuneforgeError("the recipe has no search space (search.space is empty)",
                             fix="add e.g. search: {space: {train.learning_rate: {type: float, low: 1e-5, "
                                 "high: 1e-4, log: true}}}")
    if spec.trials is None and spec.timeout_minutes is None:
        raise TuneforgeError("the study has no budget: search.trials and search.timeout_minutes are both empty",
                             fix="set search.trials (e.g. 20) or search.timeout_minutes")
    if spec.sampler == "grid":
        grid_size(spec.space)  # a continuous range fails now, with the parameter named
    if recipe.data.validation is None and recipe.data.validation_split == 0:
        raise TuneforgeError("trials are compared on validation data, and this recipe has none",
                             fix="set data.validation, or data.validation_split above 0 (e.g. 0.1)")
    if recipe.tasks:
        raise TuneforgeError("search does not cover multi-task recipes yet", fix="search a single-task recipe")
    if workers < 1:
        raise TuneforgeError(f"--workers must be at least 1, not {workers}", fix="e.g. --workers 2")


def _space_signature(recipe: Recipe) -> str:
    return json.dumps({path: param.model_dump(mode="json") for path, param in sorted(recipe.search.space.items())},
                      sort_keys=True)


def _open_study(recipe: Recipe, directory: Path, url: str, name: str, metric: str, greater: bool,
                heartbeat: tuple[int, int] | None) -> Any:
    import optuna

    storage = open_storage(url, *(heartbeat or ()))
    direction = "maximize" if greater else "minimize"
    study = optuna.create_study(study_name=name, storage=storage, direction=direction, load_if_exists=True,
                                sampler=build_sampler(recipe.search), pruner=build_pruner(recipe.search))
    signature = _space_signature(recipe)
    recorded = study.user_attrs.get("space")
    if recorded is None:
        study.set_user_attr("space", signature)
        study.set_user_attr("metric", metric)
    elif recorded != signature or study.direction.name.lower() != direction:
        raise TuneforgeError(f"the study '{name}' in {_redact(url)} was started with another search space or "
                             "objective, so its trials cannot be compared with this recipe's",
                             fix="give this recipe its own search.dir (or search.study_name), or restore the "
                                 "space the study was started with")
    return study


def _requeue_interrupted(study: Any) -> None:
    """A trial stopped by Ctrl-C failed through no fault of its values: run the same values again, once."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        if trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted") and trial.number not in retried:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def _fail_stale(study: Any) -> None:
    import optuna
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def run_study(recipe: Recipe, *, workers: int = 1, callbacks: Sequence[TrainerCallback] = (),
              on_trial: Callable[[TrialRow], None] | None = None,
              heartbeat: tuple[int, int] | None = None,
              on_warning: Callable[[str], None] | None = None) -> StudyResult:
    """Run (or resume) the study the recipe's search section describes and write its outputs.

    `callbacks` are added to every in-process trial's Trainer; `on_trial` hears of each finished trial (also
    those of worker processes); `heartbeat` = (interval, grace period) in seconds overrides the storage's;
    `on_warning` hears, before any trial, why the ranking may be unreliable.
    """
    from optuna.trial import TrialState

    _check(recipe, workers)
    rows = validation_rows(recipe)
    found = [warning for warning in [check_validation_size(rows)] if warning]  # below 30 rows: refused
    for warning in found:
        if on_warning is not None:
            on_warning(warning)
    directory = study_directory(recipe)
    directory.mkdir(parents=True, exist_ok=True)
    url = storage_url(recipe.search.storage, directory)
    name = recipe.search.study_name or directory.resolve().name
    metric, greater = recipe.early_stopping_metric()
    study = _open_study(recipe, directory, url, name, metric, greater, heartbeat)
    _fail_stale(study)
    _requeue_interrupted(study)
    if not study.get_trials(deepcopy=False):
        enqueue_default(study, recipe, recipe.search.space)

    before = {t.number for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED}
    budget = recipe.search.trials
    remaining = None if budget is None else budget - used_budget(study, include_running=True)
    timeout = recipe.search.timeout_minutes * 60 if recipe.search.timeout_minutes else None
    reported: set[int] = set(before)

    def report_new() -> None:
        if on_trial is None:
            return
        for trial in study.get_trials(deepcopy=False):
            if trial.state.name in (*FINISHED, "FAIL") and trial.number not in reported:
                reported.add(trial.number)
                on_trial(trial_row(trial))

    if remaining is None or remaining > 0:
        if workers == 1:
            optimize(recipe, directory, url, name, n_trials=remaining, timeout=timeout, callbacks=callbacks,
                     study_callbacks=[lambda _study, _trial: report_new()], heartbeat=heartbeat)
        else:
            # Queued trials (the default recipe, retries) run here first: SQLite cannot lock a row for update, so
            # two workers asking at once can both be handed the same queued trial.
            queued = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
            if queued:
                started = time.monotonic()
                optimize(recipe, directory, url, name, n_trials=min(queued, remaining or queued), timeout=timeout,
                         callbacks=callbacks, study_callbacks=[lambda _study, _trial: report_new()],
                         heartbeat=heartbeat)
                timeout = None if timeout is None else max(1.0, timeout - (time.monotonic() - started))
                remaining = None if budget is None else budget - used_budget(study, include_running=True)
                if remaining is not None and remaining <= 0:
                    return write_outputs(recipe, study, directory, name, url, metric, greater, before, found)
            count = workers if remaining is None else min(workers, remaining)
            processes, _start = start_workers(recipe, directory, url, name, count, remaining, timeout, heartbeat)
            while any(process.is_alive() for process in processes):
                time.sleep(POLL_S)
                report_new()
            for process in processes:
                process.join()
            report_new()
            failed = [p.name for p in processes if p.exitcode != 0]
            if failed:
                raise TuneforgeError(f"{len(failed)} of {len(processes)} search workers stopped with an error",
                                     fix="see the worker's error above; run the same command again to resume "
                                         "the study")
    return write_outputs(recipe, study, directory, name, url, metric, greater, before, found)


def write_outputs(recipe: Recipe, study: Any, directory: Path, name: str, url: str, metric: str, greater: bool,
                  before: set[int] = frozenset(), warnings_found: list[str] | None = None) -> StudyResult:
    rows = ranked([trial_row(t) for t in study.get_trials(deepcopy=False)], greater)
    best = next((row for row in rows if row.state == "COMPLETE"), None)
    leaderboard = directory / outputs.LEADERBOARD
    outputs.write_leaderboard(leaderboard, rows, metric)
    best_path = None
    if best is not None:
        best_path = directory / outputs.BEST_RECIPE
        outputs.write_best_recipe(best_path, recipe, best.params)
    plots = outputs.write_plots(study, directory)
    ran_now = sum(row.state in FINISHED and row.number not in before for row in rows)
    result = StudyResult(directory, name, _redact(url), metric, greater, rows, ran_now, best, best_path, leaderboard,
                         plots.files, plots.skipped, list(warnings_found or []))
    outputs.write_summary(directory / outputs.SUMMARY, {
        "study_name": name, "storage": result.storage, "metric": metric,
        "direction": "maximize" if greater else "minimize",
        "trials": {state.lower(): result.count(state) for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")},
        "best": outputs.row_dict(best) if best else None,
        "best_recipe": str(best_path) if best_path else None,
        "plots": [str(path) for path in plots.files], "skipped_plots": plots.skipped,
        "default_trial": next((t.number for t in study.get_trials(deepcopy=False)
                               if t.user_attrs.get("default_recipe")), None),
        "warnings": result.warnings,
    })
    return result
