"""Single-label classification: metrics from logits and decoding into labels with probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

NAME = "classification"
PRIMARY_METRICS = ("accuracy", "f1_macro")


def compute_metrics(logits: np.ndarray, labels: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    predicted = np.asarray(logits).argmax(axis=-1)
    labels = np.asarray(labels).astype(int)
    ids = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=ids, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1_macro": float(f1_score(labels, predicted, labels=ids, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(labels, predicted, labels=ids, average="weighted", zero_division=0)),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": {
            "labels": list(label_names),
            "matrix": confusion_matrix(labels, predicted, labels=ids).tolist(),
        },
    }


def decode(logits: np.ndarray, label_names: list[str]) -> list[dict[str, Any]]:
    probabilities = softmax(np.asarray(logits, dtype=np.float64), axis=-1)
    rows = []
    for row in probabilities:
        best = int(row.argmax())
        rows.append({
            "label": label_names[best],
            "score": float(row[best]),
            "probabilities": {name: float(p) for name, p in zip(label_names, row, strict=True)},
        })
    return rows
