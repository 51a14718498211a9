"""Training-curve and confusion-matrix PNGs for the run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tuneforge.artifacts import write_with  # noqa: E402


def training_curve(history: list[dict[str, Any]], metric: str, path: Path) -> None:
    train = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    scores = [(h["step"], h[f"eval_{metric}"]) for h in history if f"eval_{metric}" in h]
    figure, loss_axis = plt.subplots(figsize=(7, 4))
    if train:
        loss_axis.plot(*zip(*train, strict=True), label="training loss", color="tab:blue", alpha=0.8)
    if evals:
        loss_axis.plot(*zip(*evals, strict=True), "o-", label="validation loss", color="tab:orange")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("loss")
    handles, labels = loss_axis.get_legend_handles_labels()
    if scores:
        metric_axis = loss_axis.twinx()
        metric_axis.plot(*zip(*scores, strict=True), "s--", label=f"validation {metric}", color="tab:green")
        metric_axis.set_ylabel(metric)
        more_handles, more_labels = metric_axis.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    if handles:
        loss_axis.legend(handles, labels, loc="best")
    loss_axis.set_title("Training curve")
    figure.tight_layout()
    write_with(path, lambda target: figure.savefig(target, dpi=110))
    plt.close(figure)


def confusion_matrix(matrix: list[list[int]], labels: list[str], path: Path, title: str) -> None:
    values = np.asarray(matrix)
    size = max(4.0, 0.6 * len(labels) + 2.5)
    figure, axis = plt.subplots(figsize=(size, size * 0.85))
    image = axis.imshow(values, cmap="Blues")
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    threshold = values.max() / 2 if values.size else 0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            axis.text(j, i, str(values[i, j]), ha="center", va="center",
                      color="white" if values[i, j] > threshold else "black")
    figure.colorbar(image, ax=axis)
    axis.set_title(title)
    figure.tight_layout()
    write_with(path, lambda target: figure.savefig(target, dpi=110))
    plt.close(figure)
