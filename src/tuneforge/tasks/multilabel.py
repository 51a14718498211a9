"""Multi-label classification: any number of labels per text, one sigmoid per label, a tuned threshold per label.

Targets are multi-hot vectors in label order. A label is predicted when its probability reaches its threshold;
thresholds are tuned on the validation split (each label's F1 at its best cut) because 0.5 is rarely best for
rare labels, and saved with the run so every later prediction uses the same cuts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.metrics import f1_score, hamming_loss, precision_recall_fscore_support, precision_score, recall_score

from tuneforge import artifacts

NAME = "multilabel"
PRIMARY_METRICS = ("f1_micro", "f1_macro")
DEFAULT_THRESHOLD = 0.5


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Independent per-label probabilities: sigmoid of each logit."""
    return expit(np.asarray(logits, dtype=np.float64))


def threshold_array(thresholds: Sequence[float] | np.ndarray | None, width: int) -> np.ndarray:
    if thresholds is None:
        return np.full(width, DEFAULT_THRESHOLD)
    values = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if values.shape[0] != width:
        raise ValueError(f"{values.shape[0]} thresholds for {width} labels")
    return values


def predict_multi_hot(logits: np.ndarray, thresholds: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """0/1 matrix (texts, labels): probability at or above the label's threshold."""
    probs = probabilities(logits)
    return (probs >= threshold_array(thresholds, probs.shape[-1])).astype(int)


def compute_metrics(logits: np.ndarray, labels: np.ndarray, label_names: list[str],
                    thresholds: Sequence[float] | np.ndarray | None = None) -> dict[str, Any]:
    """Micro/macro/weighted F1, micro precision/recall, subset accuracy (every label of a text right), Hamming
    loss (share of wrong label decisions) and per-label P/R/F1/support, at the given thresholds (0.5 without)."""
    truth = (np.asarray(labels, dtype=np.float64) >= 0.5).astype(int)
    predicted = predict_multi_hot(logits, thresholds)
    options: dict[str, Any] = {"zero_division": 0}
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, **options)
    return {
        "f1_micro": float(f1_score(truth, predicted, average="micro", **options)),
        "f1_macro": float(f1_score(truth, predicted, average="macro", **options)),
        "f1_weighted": float(f1_score(truth, predicted, average="weighted", **options)),
        "precision_micro": float(precision_score(truth, predicted, average="micro", **options)),
        "recall_micro": float(recall_score(truth, predicted, average="micro", **options)),
        "subset_accuracy": float((truth == predicted).all(axis=1).mean()) if len(truth) else 0.0,
        "hamming_loss": float(hamming_loss(truth, predicted)),
        # Named per_class like single-label classification, so the report and CLI tables show it the same way.
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(label_names)
        },
    }


def tune_thresholds(logits: np.ndarray, labels: np.ndarray) -> list[float]:
    """Per label, the cut that maximises that label's F1 on these rows.

    Candidates are the midpoints between consecutive distinct probabilities, so the cut sits between a positive
    and a negative rather than on one. Ties keep the cut nearest 0.5; a label without positives (F1 is 0 at
    every cut) keeps 0.5.
    """
    probs = probabilities(logits)
    truth = np.asarray(labels, dtype=np.float64) >= 0.5
    tuned = []
    for column in range(probs.shape[1]):
        scores, positives = probs[:, column], truth[:, column]
        if not positives.any():
            tuned.append(DEFAULT_THRESHOLD)
            continue
        distinct = np.unique(scores)
        candidates = np.concatenate([[DEFAULT_THRESHOLD], (distinct[:-1] + distinct[1:]) / 2, distinct[:1]])
        best, best_f1 = DEFAULT_THRESHOLD, -1.0
        for cut in candidates:
            chosen = scores >= cut
            true_positives = float((chosen & positives).sum())
            f1 = 2 * true_positives / (chosen.sum() + positives.sum())
            if f1 > best_f1 + 1e-12 or (abs(f1 - best_f1) <= 1e-12 and abs(cut - 0.5) < abs(best - 0.5)):
                best, best_f1 = float(cut), f1
        tuned.append(best)
    return tuned


def decode(logits: np.ndarray, label_names: list[str], thresholds: Sequence[float] | np.ndarray | None = None
           ) -> list[dict[str, Any]]:
    """Per text: `labels` (those at or above their threshold, in label order) and `probabilities` per label."""
    probs = probabilities(logits)
    cuts = threshold_array(thresholds, probs.shape[-1]) if probs.size else np.zeros(0)
    return [{"labels": [name for name, p, cut in zip(label_names, row, cuts, strict=True) if p >= cut],
             "probabilities": {name: float(p) for name, p in zip(label_names, row, strict=True)}}
            for row in probs]


def write_thresholds(path: Path, label_names: list[str], thresholds: Sequence[float]) -> None:
    artifacts.write_json(path, {"labels": list(label_names), "thresholds": [float(t) for t in thresholds]})


def read_thresholds(path: Path, label_names: list[str]) -> list[float]:
    """The run's thresholds in label order; 0.5 for every label when the file is absent (an older run)."""
    if not path.is_file():
        return [DEFAULT_THRESHOLD] * len(label_names)
    saved = json.loads(path.read_text(encoding="utf-8"))
    by_label = dict(zip(saved.get("labels", []), saved.get("thresholds", []), strict=False))
    return [float(by_label.get(name, DEFAULT_THRESHOLD)) for name in label_names]
