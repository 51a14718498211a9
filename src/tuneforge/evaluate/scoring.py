"""Evaluate a run on a labelled file: the same checks and metrics as training, plus calibration, error analysis
and the recipe's metric plugins."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from tuneforge.augment.identity import infer_groups, is_missing_group, load_terms
from tuneforge.data import validation as checks
from tuneforge.data.conll import tag_problems
from tuneforge.data.loading import read_table
from tuneforge.data.prepare import label_separator, multi_hot
from tuneforge.data.token_data import load_sentences
from tuneforge.errors import DataError
from tuneforge.evaluate.calibration import calibration_report, scaled_probabilities
from tuneforge.evaluate.error_analysis import error_analysis, word_counts
from tuneforge.evaluate.plugins import load_plugins, run_plugins
from tuneforge.recipe import Recipe
from tuneforge.tasks import get_task, multilabel
from tuneforge.tasks.token_classification import entity_metrics
from tuneforge.trust import RunCodeTrust


class Scorable(Protocol):
    """What evaluation reads from a loaded run: `tuneforge.load(run_dir)` returns one (a `predict.RunPredictor`
    with its task's extras). Named here rather than imported, because prediction sits above evaluation."""

    recipe: Recipe
    task: ModuleType
    labels: list[str] | None  # classes of a whole-text classifier, else None
    multilabels: list[str] | None
    thresholds: list[float] | None
    tags: list[str] | None  # token classification
    temperature: float

    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 64
               ) -> np.ndarray: ...

    def scale_logits(self, logits: np.ndarray) -> np.ndarray: ...

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 64
                ) -> list[dict[str, Any]]: ...

    def tag(self, texts: Sequence[str | Sequence[str]], batch_size: int = 64) -> list[dict[str, Any]]: ...


def error_groups(recipe: Recipe, texts: Sequence[str], columns: Mapping[str, Sequence[Any]] | None = None
                 ) -> dict[str, list[str | None]]:
    """Groups for per-group error rates: the recipe's sensitive columns where the data has them, otherwise
    groups inferred from the identity terms of `fairness.identity_categories`."""
    fairness = recipe.fairness
    present = {name: values for name, values in (columns or {}).items() if name in fairness.sensitive_columns}
    if present:
        return {name: [None if is_missing_group(v) else checks.label_key(v) for v in values]
                for name, values in present.items()}
    if not fairness.identity_categories:
        return {}
    terms = load_terms(fairness.identity_categories, fairness.identity_terms_file)
    return {category: infer_groups(texts, category, terms) for category in fairness.identity_categories}


def analyse_predictions(recipe: Recipe, label_names: list[str] | None, logits: np.ndarray, labels: np.ndarray,
                        texts: Sequence[str], pairs: Sequence[str] | None, temperature: float,
                        columns: Mapping[str, Sequence[Any]] | None = None,
                        thresholds: Sequence[float] | None = None) -> dict[str, Any]:
    """Task metrics plus calibration, error analysis and the recipe's plug-ins, for any split.


    Training (validation/test splits) and `tuneforge evaluate` both call this, so their numbers agree.
    `columns` are the split's other columns, where sensitive attributes for per-group error rates may live.
    """
    task = get_task(recipe.task)
    if recipe.task == "multilabel":
        return _analyse_multilabel(recipe, label_names or [], logits, labels, texts, thresholds)
    metrics = task.compute_metrics(logits, labels, label_names)
    metrics["examples"] = len(texts)
    if label_names is not None:
        probabilities = scaled_probabilities(logits, temperature)
        predictions = probabilities.argmax(axis=1)
        calibration = calibration_report(logits, labels, temperature, recipe.calibration.bins)
        lengths = word_counts(texts) + (word_counts(pairs) if pairs is not None else 0)
        metrics["ece"] = calibration["ece_after"]
        metrics["calibration"] = calibration
        metrics["error_analysis"] = error_analysis(texts, labels, probabilities, label_names, lengths,
                                                   groups=error_groups(recipe, texts, columns))
    else:
        probabilities = None
        predictions = np.asarray(logits, dtype=np.float64).reshape(-1)
        metrics["calibration"] = None
        metrics["error_analysis"] = None
    metrics["plugins"] = run_plugins(recipe.evaluation.plugins, texts, labels, predictions, probabilities,
                                     label_names)
    return metrics


def _analyse_multilabel(recipe: Recipe, label_names: list[str], logits: np.ndarray, labels: np.ndarray,
                        texts: Sequence[str], thresholds: Sequence[float] | None) -> dict[str, Any]:
    """Multilabel metrics at the run's thresholds; calibration and error analysis assume one class per text,
    so they are left out (None) as for regression. Plug-ins get multi-hot predictions and label probabilities."""
    metrics = multilabel.compute_metrics(logits, labels, label_names, thresholds)
    metrics["examples"] = len(texts)
    metrics["thresholds"] = dict(zip(label_names, [float(t) for t in multilabel.threshold_array(
        thresholds, len(label_names))], strict=True))
    metrics["calibration"] = None
    metrics["error_analysis"] = None
    metrics["plugins"] = run_plugins(recipe.evaluation.plugins, texts, labels,
                                     multilabel.predict_multi_hot(logits, thresholds), multilabel.probabilities(logits),
                                     label_names)
    return metrics


def score_file(predictor: Scorable, path: str | Path, batch_size: int = 64) -> tuple[dict[str, Any], list[dict]]:
    """Metrics and per-row predictions for a labelled file; raises `DataError` listing every problem.

    Besides the task metrics the dict holds `calibration` (ECE/NLL before and after the run's stored temperature,
    reliability table), `ece` (after), `error_analysis` (both None for regression) and `plugins` (one entry per
    `evaluation.plugins` path). Rows carry temperature-scaled probabilities, like `Predictor.predict`.
    """
    spec = predictor.recipe.data
    plugin_paths = predictor.recipe.evaluation.plugins
    if plugin_paths:  # a loaded run's plugins are its code: run them only when trusted (tuneforge.trust)
        where = getattr(predictor, "run_dir", None) or "being scored"
        RunCodeTrust.resolve(getattr(predictor, "trust", False)).check(
            where, [("evaluation.plugins", str(plugin)) for plugin in plugin_paths])
    load_plugins(plugin_paths)  # a misnamed plugin is a configuration error: stop before any inference
    path = str(path)
    dataset = read_table(path, "test")
    required = [spec.text_column, spec.label_column] + ([spec.text_pair_column] if spec.text_pair_column else [])
    problems = checks.check_columns(path, dataset.column_names, required)
    if problems:
        raise DataError(problems)
    texts = dataset[spec.text_column]
    pairs = dataset[spec.text_pair_column] if spec.text_pair_column else None
    raw_labels = dataset[spec.label_column]
    problems += checks.check_texts(path, spec.text_column, texts)
    if predictor.multilabels is not None:
        return _score_multilabel(predictor, path, dataset, texts, pairs, raw_labels, problems, batch_size)
    problems += checks.check_labels_present(path, spec.label_column, raw_labels)
    if predictor.labels is not None:
        problems += checks.check_unseen_labels(path, spec.label_column, raw_labels, set(predictor.labels))
    else:
        problems += checks.check_regression_targets(path, spec.label_column, raw_labels)
    if problems:
        raise DataError(problems)

    logits = predictor.logits(texts, pairs, batch_size)
    if predictor.labels is not None:
        index = {name: i for i, name in enumerate(predictor.labels)}
        labels = np.asarray([index[checks.label_key(v)] for v in raw_labels])
    else:
        labels = np.asarray([float(v) for v in raw_labels])
    sensitive = {name: dataset[name] for name in predictor.recipe.fairness.sensitive_columns
                 if name in dataset.column_names}
    metrics = analyse_predictions(predictor.recipe, predictor.labels, logits, labels, texts, pairs,
                                  predictor.temperature, sensitive)
    rows = predictor.task.decode(predictor.scale_logits(logits), predictor.labels)
    return metrics, [{"text": t, "true": checks.label_key(y) if predictor.labels else float(y), **r}
                     for t, y, r in zip(texts, raw_labels, rows, strict=True)]


def _score_multilabel(predictor: Scorable, path: str, dataset: Any, texts: list[Any], pairs: list[Any] | None,
                      raw_labels: list[Any], problems: list[Any], batch_size: int
                      ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`score_file` for a multilabel run: labels split like training's, unseen labels an error."""
    spec = predictor.recipe.data
    names = predictor.multilabels or []
    rows = [checks.split_labels(v, label_separator(predictor.recipe, raw_labels)) for v in raw_labels]
    problems += checks.check_unseen_multilabels(path, spec.label_column, rows, set(names))
    if problems:
        raise DataError(problems)
    logits = predictor.logits(texts, pairs, batch_size)
    index = {name: i for i, name in enumerate(names)}
    labels = np.asarray([multi_hot(row, index) for row in rows], dtype=np.float64).reshape(len(rows), len(names))
    metrics = analyse_predictions(predictor.recipe, names, logits, labels, texts, pairs, 1.0,
                                  thresholds=predictor.thresholds)
    decoded = predictor.task.decode(logits, names, predictor.thresholds)
    return metrics, [{"text": t, "true": "|".join(row), **r} for t, row, r in zip(texts, rows, decoded, strict=True)]


def score_tagged_file(predictor: Scorable, path: str | Path, batch_size: int = 64
                      ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Entity-level metrics and per-sentence predictions of a token-classification run on a tagged file."""
    problems: list[Any] = []
    sentences = load_sentences(str(path), "test", predictor.recipe, problems)
    if sentences is not None:
        problems += tag_problems(str(path), sentences, set(predictor.tags or []))
    if sentences is None or any(p.severity == "error" for p in problems):
        raise DataError(problems)
    rows = predictor.tag(sentences.tokens, batch_size)
    metrics = entity_metrics(sentences.tags, [row["tags"] for row in rows])
    metrics["plugins"] = {}
    return metrics, [{**row, "true": tags} for row, tags in zip(rows, sentences.tags, strict=True)]
