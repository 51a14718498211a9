"""Evaluate a run on a labelled file: the same checks as training, the same metrics as training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.data import validation as checks
from tuneforge.data.loading import read_table
from tuneforge.errors import DataError
from tuneforge.predict import Predictor


def score_file(predictor: Predictor, path: str | Path, batch_size: int = 64) -> tuple[dict[str, Any], list[dict]]:
    """Metrics and per-row predictions for a labelled file; raises `DataError` listing every problem."""
    spec = predictor.recipe.data
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
    metrics = predictor.task.compute_metrics(logits, labels, predictor.labels)
    metrics["examples"] = len(texts)
    rows = predictor.task.decode(logits, predictor.labels)
    return metrics, [{"text": t, "true": checks.label_key(y) if predictor.labels else float(y), **r}
                     for t, y, r in zip(texts, raw_labels, rows, strict=True)]
