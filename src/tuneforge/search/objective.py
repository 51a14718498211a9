"""One trial = one normal `fine_tune` run in trials/<n>/, reporting its validation metric to Optuna per evaluation.

Optuna's own Transformers integration is gone from recent releases, so the reporting callback is written here:
a few lines on the Trainer's `on_evaluate` hook.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from transformers import TrainerCallback

from tuneforge.errors import TuneforgeError
from tuneforge.recipe import Recipe
from tuneforge.run import RunLayout
from tuneforge.search.space import suggest, trial_recipe

TRIALS_DIR = "trials"


class SearchInterrupted(TuneforgeError):
    exit_code = 130


class ReportToOptuna(TrainerCallback):
    """Hands each validation score to the trial and stops the run when the pruner says it cannot win.

    Raising TrialPruned from the hook ends `trainer.train()` at once; Optuna marks the trial pruned and the
    study goes on with the next one.
    """

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial = trial
        self.key = f"eval_{metric}"
        self.step = 0

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    **kwargs: Any) -> None:
        if not metrics or self.key not in metrics:
            return
        self.step += 1
        self.trial.report(float(metrics[self.key]), self.step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{self.key} {metrics[self.key]:.4f} at evaluation {self.step}")


def trial_directory(study_dir: Path, number: int) -> Path:
    return study_dir / TRIALS_DIR / str(number)


def objective_value(metrics: dict[str, Any], metric: str) -> float:
    """The run's validation score of the early-stopping metric (after restoring the best checkpoint)."""
    value = (metrics.get("validation") or {}).get(metric)
    if value is None:
        value = ((metrics.get("training") or {}).get("best_metric") or {}).get(metric)
    if value is None:
        raise TuneforgeError(f"the trial's validation metrics have no '{metric}'",
                             fix="set early_stopping.metric to a metric the task reports (e.g. f1_macro, loss)")
    return float(value)


class Objective:
    """Picklable, so worker processes can receive it: builds the trial's recipe, trains, returns the score."""

    def __init__(self, recipe: Recipe, study_dir: Path, worker: int = 0,
                 callbacks: Sequence[TrainerCallback] = ()) -> None:
        self.recipe = recipe
        self.study_dir = study_dir
        self.worker = worker
        self.callbacks = list(callbacks)

    def __call__(self, trial: optuna.Trial) -> float:
        from tuneforge.train.skeleton import TrainingInterrupted, fine_tune

        with warnings.catch_warnings():  # trial 0 is the recipe as it is, even where it lies outside the space
            warnings.filterwarnings("ignore", message="Fixed parameter .* is out of range")
            params = {path: suggest(trial, path, param) for path, param in self.recipe.search.space.items()}
        folder = trial_directory(self.study_dir, trial.number)
        trial.set_user_attr("run_dir", str(folder))
        trial.set_user_attr("worker", self.worker)
        recipe = trial_recipe(self.recipe, params, str(folder))
        metric, _ = recipe.early_stopping_metric()
        try:
            run = fine_tune(recipe, callbacks=[ReportToOptuna(trial, metric), *self.callbacks])
        except optuna.TrialPruned:
            self._tidy(folder)
            raise
        except (TrainingInterrupted, KeyboardInterrupt):
            trial.set_user_attr("interrupted", True)
            raise SearchInterrupted(f"the search was interrupted during trial {trial.number}",
                                    fix="run the same command again: the study resumes and retries that trial "
                                        "with the same values") from None
        self._tidy(folder)
        return objective_value(run.metrics, metric)

    def _tidy(self, folder: Path) -> None:
        if not self.recipe.search.keep_checkpoints:
            shutil.rmtree(RunLayout(folder).checkpoints, ignore_errors=True)
