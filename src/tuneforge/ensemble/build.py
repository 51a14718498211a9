"""Build an ensemble run directory from finished runs: check the members agree, fit the combination on
validation data, score it, and write ensemble.json, recipe.yaml and metrics.json.

This is the ensemble's pipeline: it loads member runs through `tuneforge.predict`, so it sits above prediction,
while `predictor` and `combine` (which prediction loads ensembles with) sit below it."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge import artifacts
from tuneforge.data import validation as checks
from tuneforge.data.loading import read_table
from tuneforge.ensemble import combine
from tuneforge.ensemble.predictor import (
    ENSEMBLE_FILE,
    METHODS,
    EnsemblePredictor,
    EnsembleSpec,
    member_outputs,
    relative_member_path,
)
from tuneforge.errors import DataError, TuneforgeError
from tuneforge.evaluate.scoring import analyse_predictions
from tuneforge.predict import Predictor
from tuneforge.predict.io import predictions_frame
from tuneforge.run import Run, RunLayout

ENSEMBLE_TASKS = ("classification", "regression")
FITTED = ("weighted", "stacking")


@dataclass
class LabelledSplit:
    """A labelled file read with the ensemble's columns: texts, optional pairs, label ids (or targets)."""

    path: str
    texts: list[str]
    pairs: list[str] | None
    truth: np.ndarray
    raw: list[Any]
    columns: dict[str, list[Any]]


def check_members(runs: Sequence[Path], predictors: Sequence[Any]) -> tuple[str, list[str] | None]:
    """The shared task and (for classification) label set of the members; a mismatch names the run."""
    first, reference = runs[0], predictors[0]
    task = reference.recipe.task
    if task not in ENSEMBLE_TASKS:
        raise TuneforgeError(f"run {first} is a {task} run; ensembles combine {' and '.join(ENSEMBLE_TASKS)} runs",
                             fix="ensemble classification or regression runs")
    pair = bool(reference.recipe.data.text_pair_column)
    for run, predictor in zip(runs[1:], predictors[1:], strict=True):
        if predictor.recipe.task != task:
            raise TuneforgeError(f"run {run} is a {predictor.recipe.task} run but {first} is a {task} run",
                                 fix="ensemble runs of one task only")
        if task == "classification" and sorted(predictor.labels) != sorted(reference.labels):
            raise TuneforgeError(f"run {run} predicts the labels {sorted(predictor.labels)} but {first} predicts "
                                 f"{sorted(reference.labels)}",
                                 fix="ensemble runs trained on the same label set (the order may differ)")
        if bool(predictor.recipe.data.text_pair_column) != pair:
            raise TuneforgeError(f"run {run} {'reads text pairs' if not pair else 'reads single texts'} but "
                                 f"{first} does not", fix="ensemble runs that read the same kind of input")
    return task, list(reference.labels) if task == "classification" else None


def read_labelled(path: str | Path, reference: Any, labels: list[str] | None) -> LabelledSplit:
    """A labelled file checked the way `tuneforge evaluate` checks it, with the first member's columns."""
    spec = reference.recipe.data
    path = str(path)
    dataset = read_table(path, "test")
    required = [spec.text_column, spec.label_column] + ([spec.text_pair_column] if spec.text_pair_column else [])
    problems = checks.check_columns(path, dataset.column_names, required)
    if problems:
        raise DataError(problems)
    texts, raw = dataset[spec.text_column], dataset[spec.label_column]
    problems += checks.check_texts(path, spec.text_column, texts)
    problems += checks.check_labels_present(path, spec.label_column, raw)
    if labels is not None:
        problems += checks.check_unseen_labels(path, spec.label_column, raw, set(labels))
    else:
        problems += checks.check_regression_targets(path, spec.label_column, raw)
    if problems:
        raise DataError(problems)
    if labels is not None:
        index = {name: i for i, name in enumerate(labels)}
        truth = np.asarray([index[checks.label_key(value)] for value in raw])
    else:
        truth = np.asarray([float(value) for value in raw])
    sensitive = {name: dataset[name] for name in reference.recipe.fairness.sensitive_columns
                 if name in dataset.column_names}
    return LabelledSplit(path, [str(t) for t in texts],
                         [str(p) for p in dataset[spec.text_pair_column]] if spec.text_pair_column else None,
                         truth, list(raw), sensitive)


def _write_csv(frame: Any, target: Path) -> None:
    frame.to_csv(target, index=False)


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {key: value for key, value in metrics.items() if isinstance(value, (int, float)) and value is not None}


def build_ensemble(runs: Sequence[str | Path], method: str, output: str | Path, *,
                   validation: str | Path | None = None, test: str | Path | None = None, device: str = "auto",
                   overwrite: bool = False, batch_size: int = 64, trust_run_code: bool = False) -> Run:
    """Combine finished runs into an ensemble run directory and return it as a `Run`.

    mean and vote need no data (validation and test, when given, are scored); weighted fits member weights and
    stacking a logistic-regression (ridge for regression) meta-learner on the validation file's predictions.
    """
    if method not in METHODS:
        raise TuneforgeError(f"unknown ensemble method '{method}'", fix=f"use one of {', '.join(METHODS)}")
    paths = [Path(run) for run in runs]
    if len(paths) < 2:
        raise TuneforgeError("an ensemble needs at least two member runs", fix="name two or more run directories")
    if len({path.resolve() for path in paths}) != len(paths):
        raise TuneforgeError("a member run is listed twice", fix="list each run once (use --method weighted to "
                                                                 "give a member more say)")
    if method in FITTED and validation is None:
        raise TuneforgeError(f"--method {method} fits on validation predictions and needs a validation file",
                             fix="pass --validation FILE (labelled, with the runs' text and label columns)")
    root = Path(output)
    if any(path.resolve() == root.resolve() for path in paths):
        raise TuneforgeError(f"the output {root} is one of the members", fix="write the ensemble to a new folder")
    for path in paths:
        if not RunLayout(path).is_finished():
            raise TuneforgeError(f"run {path} is not a finished run directory (no model or no metrics.json)",
                                 fix="pass folders written by `tuneforge train` (finish or resume them first)")
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise TuneforgeError(f"{root} already exists and is not empty",
                                 fix="pass --overwrite to replace it, or choose another --output")
        shutil.rmtree(root)

    predictors = [Predictor.from_run(path, device, trust_run_code=trust_run_code) for path in paths]
    task, labels = check_members(paths, predictors)
    reference = predictors[0]
    splits = {role: read_labelled(path, reference, labels)
              for role, path in (("validation", validation), ("test", test)) if path is not None}
    outputs = {role: member_outputs(predictors, labels, split.texts, split.pairs, batch_size)
               for role, split in splits.items()}

    weights: list[float] | None = None
    stacker: dict[str, Any] | None = None
    if method == "weighted":
        weights = combine.fit_weights(outputs["validation"], splits["validation"].truth).tolist()
    elif method == "stacking":
        try:
            stacker = combine.fit_stacker(outputs["validation"], splits["validation"].truth).to_json()
        except ValueError as error:
            raise TuneforgeError(f"stacking could not be fitted on {validation}: {error}",
                                 fix="use a validation file with examples of several classes") from None

    recipe = reference.recipe.model_copy(deep=True)
    recipe.model.name = f"ensemble ({method}) of {len(paths)} runs"
    recipe.output.dir = str(root)
    root.mkdir(parents=True, exist_ok=True)
    spec = EnsembleSpec(method=method, task=task, labels=labels,
                        members=[relative_member_path(root, path) for path in paths], weights=weights,
                        stacker=stacker, extra={"validation": str(Path(validation).resolve()) if validation else None})
    ensemble = EnsemblePredictor(predictors, spec, recipe)

    metrics: dict[str, Any] = {
        "task": task,
        "model": recipe.model.name,
        "labels": labels,
        "ensemble": {"method": method, "members": [str(path.resolve()) for path in paths], "weights": weights,
                     "fitted_on": str(Path(validation).resolve()) if method in FITTED else None},
        "members": {str(path): {} for path in paths},
    }
    for role, split in splits.items():
        logits = ensemble.as_logits(ensemble.combine(outputs[role]))
        metrics[role] = analyse_predictions(recipe, labels, logits, split.truth, split.texts, split.pairs, 1.0,
                                            split.columns)
        for path, member in zip(paths, outputs[role], strict=True):
            member_logits = combine.to_logits(member) if labels is not None else member.reshape(-1, 1)
            metrics["members"][str(path)][role] = _scalars(ensemble.task.compute_metrics(member_logits, split.truth,
                                                                                         labels))
        if role == "test":
            rows = ensemble.task.decode(logits, labels)
            truths = [checks.label_key(v) if labels is not None else float(v) for v in split.raw]
            frame = predictions_frame(split.texts, rows, truths)
            artifacts.write_with(RunLayout(root).test_predictions, functools.partial(_write_csv, frame))

    layout = RunLayout(root)
    artifacts.write_text(layout.recipe, recipe.to_yaml())
    artifacts.write_json(root / ENSEMBLE_FILE, spec.to_json())
    artifacts.write_json(layout.metrics, metrics)  # last: its presence marks the ensemble finished
    return Run(root, recipe, metrics)
