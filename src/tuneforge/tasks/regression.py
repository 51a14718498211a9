"""Regression: one real-valued output per text."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

NAME = "regression"
PRIMARY_METRICS = ("rmse", "r2")


def _safe(value: float) -> float | None:
    return None if value is None or np.isnan(value) else float(value)


def compute_metrics(logits: np.ndarray, labels: np.ndarray, label_names: list[str] | None = None
                    ) -> dict[str, Any]:
    predicted = np.asarray(logits, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    mse = float(mean_squared_error(labels, predicted))
    constant = np.allclose(predicted, predicted[0]) or np.allclose(labels, labels[0])
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(mean_absolute_error(labels, predicted)),
        "r2": _safe(r2_score(labels, predicted)) if len(labels) > 1 else None,
        # Correlations are undefined for a constant series; report null rather than a warning and NaN.
        "pearson": None if constant else _safe(pearsonr(labels, predicted)[0]),
        "spearman": None if constant else _safe(spearmanr(labels, predicted)[0]),
    }


def decode(logits: np.ndarray, label_names: list[str] | None = None) -> list[dict[str, Any]]:
    return [{"score": float(v)} for v in np.asarray(logits, dtype=np.float64).reshape(-1)]
