"""Member predictors combined into one, with the same interface as `tuneforge.predict.Predictor`; loading an
ensemble run directory (its members by path) is `tuneforge.predict.ensemble`'s.

`evaluate`, `predict` and `serve` call `logits`, `predict`, `probabilities`, `scale_logits` and read `labels`,
`recipe`, `task` and `temperature`; this class offers exactly those, so every consumer accepts an ensemble
unchanged. Its `logits` are log-probabilities of the combined distribution, which softmax turns back into
exactly that distribution (temperature 1: each member already applies its own calibration).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.ensemble import combine
from tuneforge.errors import TuneforgeError
from tuneforge.kinds import ENSEMBLE, KINDS
from tuneforge.recipe import Recipe
from tuneforge.tasks import get_task

ENSEMBLE_FILE = "ensemble.json"
METHODS = ("mean", "vote", "weighted", "stacking")
FORMAT = 1


@dataclass
class EnsembleSpec:
    """What ensemble.json holds: members by path, the method and its fitted numbers."""

    method: str
    task: str
    labels: list[str] | None
    members: list[str]  # as written: relative to the ensemble directory where possible
    weights: list[float] | None = None
    stacker: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "method": self.method, "task": self.task, "labels": self.labels,
                "members": [{"path": path} for path in self.members], "weights": self.weights,
                "stacker": self.stacker, **self.extra}

    @classmethod
    def read(cls, path: Path) -> EnsembleSpec:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(method=data["method"], task=data["task"], labels=data.get("labels"),
                       members=[item["path"] for item in data["members"]], weights=data.get("weights"),
                       stacker=data.get("stacker"))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise TuneforgeError(f"{path} is not a readable ensemble description ({error})",
                                 fix="rebuild the ensemble with `tuneforge ensemble`") from None


def member_path(root: Path, written: str) -> Path:
    """A member as stored in ensemble.json: relative to the ensemble directory, or absolute."""
    path = Path(written)
    return path if path.is_absolute() else (root / path).resolve()


def relative_member_path(root: Path, member: Path) -> str:
    """Relative paths keep an ensemble and its members movable together; another drive stays absolute."""
    try:
        return os.path.relpath(member.resolve(), root.resolve())
    except ValueError:
        return str(member.resolve())


class EnsemblePredictor:
    """Member predictors plus the rule that combines them."""

    def __init__(self, members: Sequence[Any], spec: EnsembleSpec, recipe: Recipe) -> None:
        if spec.method not in METHODS:
            raise TuneforgeError(f"unknown ensemble method '{spec.method}'", fix=f"use one of {', '.join(METHODS)}")
        self.members = list(members)
        self.spec = spec
        self.recipe = recipe
        self.task = get_task(spec.task)
        self.labels: list[str] | None = list(spec.labels) if spec.labels is not None else None
        self.temperature = 1.0
        self.kind = KINDS[ENSEMBLE]
        self.tags = None  # whole-text tasks only, like Predictor's attributes of the same names
        self.multilabels = None
        self.thresholds = None
        self.device = getattr(self.members[0], "device", None)
        self.tokenizer = getattr(self.members[0], "tokenizer", None)
        self.weights = np.asarray(spec.weights) if spec.weights is not None else None
        self.stacker = combine.Stacker.from_json(spec.stacker) if spec.stacker is not None else None

    @property
    def model(self) -> Any:
        """There is no single network to explain or export; each member run has its own."""
        raise TuneforgeError("an ensemble has no single model (explanations, attention and export need one)",
                             fix="use it for evaluate, predict and serve; explain or export a member run instead")

    def member_outputs(self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 64
                       ) -> np.ndarray:
        """(members, rows, classes) probabilities in the ensemble's label order, or (members, rows) outputs."""
        return member_outputs(self.members, self.labels, texts, pairs, batch_size)

    def combine(self, outputs: np.ndarray) -> np.ndarray:
        """The combined probabilities (rows, classes) or regression outputs (rows,) of member outputs."""
        method = self.spec.method
        if method == "stacking":
            if self.stacker is None:
                raise TuneforgeError("this stacking ensemble has no meta-learner in ensemble.json",
                                     fix="rebuild it with `tuneforge ensemble --method stacking --validation FILE`")
            return combine.stack(outputs, self.stacker)
        if method == "vote" and self.labels is not None:
            return combine.vote(outputs, self.weights)
        return combine.mean(outputs, self.weights)

    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 64) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts; wrap a single text in a list")
        return self.as_logits(self.combine(self.member_outputs(texts, pairs, batch_size)))

    def as_logits(self, combined: np.ndarray) -> np.ndarray:
        """Combined output in the shape a Predictor's logits have: log-probabilities, or (rows, 1) scores."""
        if self.labels is None:
            return np.asarray(combined, dtype=np.float64).reshape(-1, 1)
        return combine.to_logits(combined)

    def scale_logits(self, logits: np.ndarray) -> np.ndarray:
        return logits  # every member applied its own temperature already

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 64
                ) -> list[dict[str, Any]]:
        """Same rows as Predictor.predict: label, score and probabilities, or the regression score."""
        return self.task.decode(self.logits(texts, pairs, batch_size), self.labels)

    def probabilities(self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 64
                      ) -> np.ndarray:
        if self.labels is None:
            raise TuneforgeError("probabilities exist for classification ensembles only; this one is regression",
                                 fix="use predict (or logits) for regression scores")
        return self.combine(self.member_outputs(texts, pairs, batch_size))

    predict_proba = probabilities


def member_outputs(members: Sequence[Any], labels: Sequence[str] | None, texts: Sequence[str],
                   pairs: Sequence[str] | None, batch_size: int = 64) -> np.ndarray:
    """Each member's calibrated probabilities, columns reordered by label name to `labels`; regression outputs."""
    outputs = []
    for member in members:
        if labels is None:
            outputs.append(np.asarray(member.logits(texts, pairs, batch_size), dtype=np.float64).reshape(-1))
        else:
            outputs.append(combine.align_columns(member.probabilities(texts, pairs, batch_size), member.labels,
                                                 labels))
    return np.stack(outputs)
