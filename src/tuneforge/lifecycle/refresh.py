"""`refresh`: the maintenance loop. Build the next training set (the recipe's data plus accepted feedback,
de-duplicated), fine-tune a challenger (from the champion or the base model), score both versions on the fixed
gate set and on held-out recent feedback, and promote the challenger only if it is not worse by the recipe's
margin. Every step is recorded in the registry: one MLflow run of kind `refresh` with the counts, scores and
decision (and the training set as an artifact), the challenger as a new version whose parent is the champion.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from tuneforge import artifacts
from tuneforge.errors import TuneforgeError
from tuneforge.lifecycle.feedback import Correction, FeedbackStore
from tuneforge.lifecycle.registry import CHALLENGER, TAG, Registry, VersionInfo
from tuneforge.recipe import Recipe
from tuneforge.run import RunLayout

LOWER_IS_BETTER = {"rmse", "mse", "mae", "loss", "ece", "nll", "hamming_loss"}


@dataclass(frozen=True)
class TrainingSet:
    """The next training file and where its rows came from."""

    path: Path
    original: int
    feedback: int
    replaced: int  # original rows whose text a correction relabelled (the correction wins)
    duplicates: int  # repeated texts dropped (first kept)
    holdout: list[Correction] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.original + self.feedback - self.replaced - self.duplicates


@dataclass(frozen=True)
class RefreshResult:
    """What a refresh did; `promoted` is False both when the challenger lost and when nothing was trained."""

    model: str
    champion: int
    challenger: int | None
    promoted: bool
    reason: str
    metric: str
    gate: tuple[float, float] | None = None  # (champion, challenger)
    feedback: tuple[float, float] | None = None
    refresh_run_id: str | None = None
    challenger_dir: Path | None = None
    training_set: TrainingSet | None = None


def metric_direction(recipe: Recipe) -> tuple[str, bool]:
    """(metric name, greater is better) for the refresh comparison."""
    if recipe.refresh.metric == "auto":
        return recipe.early_stopping_metric()
    name = recipe.refresh.metric.removeprefix("eval_").removeprefix("test_")
    return name, not (name in LOWER_IS_BETTER or name.endswith("loss"))


def build_training_set(recipe: Recipe, corrections: Sequence[Correction], folder: Path) -> TrainingSet:
    """The recipe's training rows plus the corrections (the newest `feedback_holdout` share held out), one row per
    distinct text: a correction replaces an original row with the same text, then repeated texts are dropped."""
    from tuneforge.data.loading import read_table

    spec = recipe.data
    if not spec.train:
        raise TuneforgeError("the refresh recipe names no training data (data.train)",
                             fix="pass the recipe the model was trained with, whose data.train is the original data")
    holdout_count = math.floor(len(corrections) * recipe.refresh.feedback_holdout)
    holdout = list(corrections[len(corrections) - holdout_count:]) if holdout_count else []
    used = list(corrections[:len(corrections) - holdout_count])
    original = read_table(spec.train, "train").to_pandas()
    columns = [spec.text_column] + ([spec.text_pair_column] if spec.text_pair_column else []) + [spec.label_column]
    missing = [column for column in columns if column not in original.columns]
    if missing:
        raise TuneforgeError(f"{spec.train} has no column {', '.join(missing)}",
                             fix="pass the recipe the model was trained with (its data.text_column/label_column)")
    original = original[columns].copy()
    original[spec.label_column] = original[spec.label_column].astype(str)
    feedback = pd.DataFrame({spec.text_column: [c.text for c in used], spec.label_column: [c.label for c in used],
                             **({spec.text_pair_column: [c.pair for c in used]} if spec.text_pair_column else {})},
                            columns=columns)
    keys = [spec.text_column] + ([spec.text_pair_column] if spec.text_pair_column else [])
    corrected = set(map(tuple, feedback[keys].astype(str).itertuples(index=False)))
    replaced_mask = original[keys].astype(str).apply(tuple, axis=1).isin(corrected) if len(original) else []
    replaced = int(sum(replaced_mask))
    kept = original[~replaced_mask] if replaced else original
    combined = pd.concat([kept, feedback], ignore_index=True)
    before = len(combined)
    combined = combined.drop_duplicates(subset=keys, keep="first")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.csv"
    artifacts.write_text(path, combined.to_csv(index=False))
    return TrainingSet(path, len(original), len(feedback), replaced, before - len(combined), holdout)


def _write_corrections(recipe: Recipe, corrections: Sequence[Correction], path: Path) -> Path:
    spec = recipe.data
    frame = pd.DataFrame({spec.text_column: [c.text for c in corrections],
                          spec.label_column: [c.label for c in corrections],
                          **({spec.text_pair_column: [c.pair for c in corrections]} if spec.text_pair_column else {})})
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def score(run_dir: Path, data: Path, metric: str, device: str = "auto") -> float:
    """One metric of a run on a labelled file, through the same scoring as `tuneforge evaluate`."""
    from tuneforge.evaluate.scoring import score_file
    from tuneforge.predict import Predictor

    metrics, _ = score_file(Predictor.from_run(run_dir, device), data)
    if metric not in metrics or not isinstance(metrics[metric], (int, float)):
        known = ", ".join(sorted(k for k, v in metrics.items() if isinstance(v, (int, float))))
        raise TuneforgeError(f"metric '{metric}' is not among the scores of {data}",
                             fix=f"set refresh.metric to one of: {known}")
    return float(metrics[metric])


def not_worse(champion: float, challenger: float, margin: float, greater_is_better: bool) -> bool:
    return challenger >= champion - margin if greater_is_better else challenger <= champion + margin


def refresh(registry: Registry, store: FeedbackStore, name: str, recipe: Recipe, output: Path,
            device: str = "auto", train: Callable[[Recipe], Any] | None = None,
            now: datetime | None = None) -> RefreshResult:
    """Run one maintenance cycle for model `name`; see the module docstring. `train` defaults to `fine_tune`.

    Raises TuneforgeError when a step fails (the refresh run is marked FAILED with the error); a challenger that
    is worse is a successful refresh with `promoted=False`.
    """
    settings = recipe.refresh
    if not settings.gate:
        raise TuneforgeError("the recipe has no refresh.gate: the fixed labelled file both versions are judged on",
                             fix="add `refresh: {gate: gate.csv}` to the recipe (same columns as the data, kept out "
                                 "of training)")
    gate = Path(settings.gate)
    if not gate.is_file():
        raise TuneforgeError(f"refresh.gate file '{gate}' does not exist", fix="check the path in the recipe")
    metric, greater_is_better = metric_direction(recipe)
    champion, champion_dir = registry.run_dir(name, "champion")
    run_id = registry.start_run(name, f"refresh-{(now or datetime.now(timezone.utc)):%Y%m%d-%H%M%S}",
                                {TAG + "kind": "refresh", TAG + "champion_version": str(champion.version),
                                 TAG + "status": "running"})
    registry.log_values(run_id, params={"metric": metric, "margin": settings.margin,
                                        "start_from": settings.start_from, "gate": str(gate),
                                        "feedback_holdout": settings.feedback_holdout, "output": str(output),
                                        "data.train": recipe.data.train})
    try:
        result = _cycle(registry, store, name, recipe, output, device, train or _fine_tune, champion,
                        champion_dir, gate, metric, greater_is_better, run_id)
    except BaseException as error:
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        registry.log_values(run_id, tags={TAG + "status": "failed", TAG + "error": message[:4000]})
        registry.end_run(run_id, failed=True)
        raise
    registry.log_values(run_id, tags={TAG + "status": "promoted" if result.promoted else "kept",
                                      TAG + "reason": result.reason})
    registry.end_run(run_id)
    return result


def _fine_tune(recipe: Recipe) -> Any:
    from tuneforge.train.skeleton import fine_tune

    return fine_tune(recipe)


def _cycle(registry: Registry, store: FeedbackStore, name: str, recipe: Recipe, output: Path, device: str,
           train: Callable[[Recipe], Any], champion: VersionInfo, champion_dir: Path, gate: Path, metric: str,
           greater_is_better: bool, run_id: str) -> RefreshResult:
    settings = recipe.refresh
    corrections = store.corrections(model=name)
    new = [c for c in corrections if c.time >= champion.created]
    registry.log_values(run_id, metrics={"feedback.accepted": len(corrections), "feedback.new": len(new)})
    if len(new) < settings.min_feedback:
        reason = (f"{len(new)} new accepted correction(s) since version {champion.version} was registered; "
                  f"refresh.min_feedback is {settings.min_feedback}: nothing trained")
        return RefreshResult(name, champion.version, None, False, reason, metric, refresh_run_id=run_id)

    # 1. the next training set
    data_folder = output.parent / f"{output.name}-data"
    training_set = build_training_set(recipe, corrections, data_folder)
    holdout_file = _write_corrections(recipe, training_set.holdout, data_folder / "feedback_holdout.csv") \
        if training_set.holdout else None
    registry.log_values(run_id, metrics={"data.original": training_set.original, "data.feedback": training_set.feedback,
                                         "data.replaced": training_set.replaced,
                                         "data.duplicates": training_set.duplicates, "data.rows": training_set.rows,
                                         "data.feedback_holdout": len(training_set.holdout)})
    registry.client.log_artifacts(run_id, str(data_folder), "training_set")

    # 2. the challenger
    next_recipe = recipe.model_copy(deep=True)
    next_recipe.data.train = str(training_set.path)
    next_recipe.output.dir = str(output)
    if settings.start_from == "champion":
        if not RunLayout(champion_dir).has_model():
            raise TuneforgeError(f"version {champion.version} of '{name}' has no full model to continue from "
                                 "(an adapter-only run)", fix="set refresh.start_from: base")
        next_recipe.model.name = str(champion_dir / "model")
    run = train(next_recipe)
    challenger = registry.register(run.directory, name, alias=CHALLENGER, parent_version=champion.version)
    # The training recipe names the champion's folder as its model; the lineage is what a reader needs.
    registry.set_version_tags(name, challenger.version, {
        TAG + "base_model": champion.base_model if settings.start_from == "champion" else recipe.model.name,
        TAG + "started_from": f"version {champion.version}" if settings.start_from == "champion" else "base",
        TAG + "refresh_run": run_id})
    registry.log_values(run_id, tags={TAG + "challenger_version": str(challenger.version),
                                      TAG + "challenger_run": challenger.run_id})

    # 3. the comparison
    gate_scores = (score(champion_dir, gate, metric, device), score(run.directory, gate, metric, device))
    scores = {f"gate.champion.{metric}": gate_scores[0], f"gate.challenger.{metric}": gate_scores[1]}
    feedback_scores = None
    if holdout_file is not None:
        feedback_scores = (score(champion_dir, holdout_file, metric, device),
                           score(run.directory, holdout_file, metric, device))
        scores.update({f"feedback.champion.{metric}": feedback_scores[0],
                       f"feedback.challenger.{metric}": feedback_scores[1]})
    registry.log_values(run_id, metrics=scores)

    # 4. the decision
    margin = settings.margin
    checks = [("gate set", gate_scores)] + ([("recent feedback", feedback_scores)] if feedback_scores else [])
    worse = [f"{where}: {metric} {pair[1]:.4f} vs champion {pair[0]:.4f}" for where, pair in checks
             if not not_worse(pair[0], pair[1], margin, greater_is_better)]
    shown = "; ".join(f"{where} {metric} {pair[1]:.4f} vs {pair[0]:.4f}" for where, pair in checks)
    if worse:
        reason = f"challenger v{challenger.version} is worse than v{champion.version} by more than {margin} on " + \
                 "; ".join(worse)
        registry.set_version_tags(name, challenger.version, {TAG + "refresh_decision": "not promoted"})
        promoted = False
    else:
        registry.promote(name, challenger.version)
        registry.set_version_tags(name, challenger.version, {TAG + "refresh_decision": "promoted"})
        reason = f"challenger v{challenger.version} promoted to champion ({shown}; margin {margin})"
        promoted = True
    return RefreshResult(name, champion.version, challenger.version, promoted, reason, metric, gate_scores,
                         feedback_scores, run_id, Path(run.directory), training_set)
