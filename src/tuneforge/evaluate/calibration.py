"""Calibration: how far predicted confidences are from observed accuracy, and temperature scaling to close the gap.

A classifier whose top probability says 0.9 should be right nine times in ten; fine-tuned transformers are usually
over-confident. Temperature scaling (Guo et al., 2017) divides the logits by one scalar T fitted on validation data:
it never changes the predicted class (argmax is invariant to T > 0), so accuracy and F1 stay as they are, and only
the probabilities become trustworthy. The fitted T is stored in the run directory as `calibration.json`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from tuneforge import artifacts
from tuneforge.errors import TuneforgeError

# Search range for T. Below 0.01 or above 100 the fit is chasing a degenerate validation set (all right with huge
# margins, or pure noise), and the bound keeps the stored value usable rather than 0 or infinity.
MIN_TEMPERATURE = 0.01
MAX_TEMPERATURE = 100.0


def _check(scores: np.ndarray, labels: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (n, k) score matrix and its n integer labels; both come back as float64 / int64 arrays."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise TuneforgeError(f"calibration needs {what} shaped (examples, classes >= 2); got shape {scores.shape}",
                             fix="pass one row per example and one column per class (classification only)")
    if labels.shape != (scores.shape[0],):
        raise TuneforgeError(f"calibration got {scores.shape[0]} rows of {what} but labels shaped {labels.shape}",
                             fix="pass one integer class id per row")
    if scores.shape[0] == 0:
        raise TuneforgeError("calibration needs at least one example", fix="evaluate on a non-empty split")
    if not np.all(np.isfinite(scores)):
        raise TuneforgeError(f"{what} contain NaN or infinite values",
                             fix="check the model's outputs; a diverged training run produces them")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise TuneforgeError("calibration labels must be class ids (integers)", fix="map label names to ids")
        labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise TuneforgeError(f"calibration labels must lie in 0..{scores.shape[1] - 1}",
                             fix="use the same label order as the model's classes")
    return scores, labels.astype(np.int64)


def scaled_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / T) in float64."""
    return softmax(np.asarray(logits, dtype=np.float64) / float(temperature), axis=-1)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean NLL of the labels under softmax(logits / T): the quantity temperature scaling minimises."""
    logits, labels = _check(logits, labels, "logits")
    log_probabilities = log_softmax(logits / float(temperature), axis=-1)
    return float(-log_probabilities[np.arange(len(labels)), labels].mean())


def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    # Bins are (lower, upper]; the edges come from linspace so a confidence equal to an edge lands where the
    # printed table says it does. A confidence of exactly 0 (impossible for a top label) joins the first bin.
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)


def reliability_table(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[dict[str, Any]]:
    """Per equal-width confidence bin: its edges, mean top-label confidence, accuracy and example count.

    Every bin is listed, empty ones with `confidence` and `accuracy` None, so the diagram and JSON always have
    `bins` rows in order.
    """
    if bins < 1:
        raise TuneforgeError(f"calibration bins must be at least 1; got {bins}", fix="set calibration.bins >= 2")
    probabilities, labels = _check(probabilities, labels, "probabilities")
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    index = _bin_index(confidence, bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    table = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        table.append({
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "confidence": float(confidence[members].mean()) if count else None,
            "accuracy": float(correct[members].mean()) if count else None,
            "count": count,
        })
    return table


def _ece_from_table(table: list[dict[str, Any]]) -> float:
    total = sum(row["count"] for row in table)
    return float(sum(row["count"] / total * abs(row["accuracy"] - row["confidence"])
                     for row in table if row["count"]))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: the example-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    return _ece_from_table(reliability_table(probabilities, labels, bins))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising validation NLL of softmax(logits / T).

    The search is over log T with bounded Brent (deterministic: no random start, no gradient noise). NLL is convex
    in 1/T, hence unimodal in log T, so a one-dimensional bracket search finds the optimum. A fit that is not
    clearly better than T = 1 returns exactly 1.0, so an already calibrated model is left untouched.
    """
    logits, labels = _check(logits, labels, "logits")
    rows = np.arange(len(labels))

    def objective(log_temperature: float) -> float:
        log_probabilities = log_softmax(logits / math.exp(log_temperature), axis=-1)
        return float(-log_probabilities[rows, labels].mean())

    result = minimize_scalar(objective, bounds=(math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)),
                             method="bounded", options={"xatol": 1e-6})
    baseline = objective(0.0)
    if not np.isfinite(result.fun) or result.fun >= baseline - 1e-12 * max(1.0, abs(baseline)):
        return 1.0
    return float(math.exp(result.x))


def calibration_report(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0,
                       bins: int = 15) -> dict[str, Any]:
    """ECE and NLL before (T = 1) and after dividing the logits by `temperature`, with the reliability table after.

    Keys: temperature, bins, examples, ece_before, ece_after, nll_before, nll_after, reliability.
    """
    check_temperature(temperature, "temperature")
    logits, labels = _check(logits, labels, "logits")
    table = reliability_table(scaled_probabilities(logits, temperature), labels, bins)
    return {
        "temperature": float(temperature),
        "bins": int(bins),
        "examples": int(len(labels)),
        "ece_before": expected_calibration_error(scaled_probabilities(logits), labels, bins),
        "ece_after": _ece_from_table(table),
        "nll_before": negative_log_likelihood(logits, labels),
        "nll_after": negative_log_likelihood(logits, labels, temperature),
        "reliability": table,
    }


def reliability_diagram(table: list[dict[str, Any]], path: Path, title: str = "Reliability diagram") -> None:
    """Accuracy per confidence bin against the diagonal of perfect calibration, with the gap shaded; atomic PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    filled = [row for row in table if row["count"]]
    figure, (axis, counts) = plt.subplots(2, 1, figsize=(5.5, 6), sharex=True,
                                          gridspec_kw={"height_ratios": [3, 1]})
    axis.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    if filled:
        centres = [(row["lower"] + row["upper"]) / 2 for row in filled]
        widths = [row["upper"] - row["lower"] for row in filled]
        accuracy = [row["accuracy"] for row in filled]
        confidence = [row["confidence"] for row in filled]
        axis.bar(centres, accuracy, width=widths, color="tab:blue", edgecolor="black", alpha=0.8, label="accuracy")
        gaps = [c - a for c, a in zip(confidence, accuracy, strict=True)]
        axis.bar(centres, gaps, bottom=accuracy, width=widths, color="tab:red", alpha=0.3, hatch="//",
                 edgecolor="tab:red", label="gap to confidence")
        counts.bar(centres, [row["count"] for row in filled], width=widths, color="tab:grey", edgecolor="black")
    total = sum(row["count"] for row in table)
    ece = _ece_from_table(table) if total else float("nan")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_ylabel("accuracy")
    axis.set_title(f"{title} (ECE {ece:.4f})")
    axis.legend(loc="upper left")
    counts.set_xlabel("confidence (top-label probability)")
    counts.set_ylabel("examples")
    figure.tight_layout()
    try:
        artifacts.write_with(path, lambda target: figure.savefig(target, dpi=110))
    finally:
        plt.close(figure)


def check_temperature(value: Any, where: str) -> float:
    """A temperature must be a finite number > 0; anything else would silently corrupt every probability."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise TuneforgeError(f"{where}: temperature must be a finite number > 0; got {value!r}",
                             fix="delete the file to predict without temperature scaling, or refit it on the "
                                 "validation split")
    return float(value)


def write_temperature(path: Path, temperature: float) -> None:
    """Store `{"temperature": T}` atomically (the run directory's calibration.json)."""
    artifacts.write_json(path, {"temperature": check_temperature(temperature, str(path))})


def read_temperature(path: Path) -> float:
    """The stored temperature, or 1.0 (no scaling) when the file does not exist."""
    if not path.is_file():
        return 1.0
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise TuneforgeError(f"cannot read {path}: {error}",
                             fix="delete it to predict without temperature scaling, or retrain the run") from None
    if not isinstance(stored, dict) or "temperature" not in stored:
        raise TuneforgeError(f"{path} has no 'temperature' field",
                             fix='write it as {"temperature": T}, or delete it')
    return check_temperature(stored["temperature"], str(path))
