"""What every predictor offers, whatever the kind of run it was loaded from, and what a loader is given.

Consumers (evaluate, predict, serve, explain) hold a `RunPredictor` and branch on its `kind` (a `RunKind`, with
the capabilities that kind declares), never on the predictor's class or on `recipe.task`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tuneforge.kinds import RunKind
from tuneforge.recipe import Recipe
from tuneforge.run import RunLayout
from tuneforge.trust import RunCodeTrust


@runtime_checkable
class RunPredictor(Protocol):
    """A run's model ready to answer: `predict` rows for every kind; `logits` and `probabilities` where the kind
    has classes or scores (a generative run refuses them with a TuneforgeError saying what to call instead)."""

    kind: RunKind
    recipe: Recipe
    labels: list[str] | None
    temperature: float

    def predict(self, inputs: Any, pairs: Sequence[str] | None = None, batch_size: int = 64
                ) -> list[dict[str, Any]]: ...

    def logits(self, inputs: Any, pairs: Sequence[str] | None = None, batch_size: int = 64) -> np.ndarray: ...

    def probabilities(self, inputs: Any, pairs: Sequence[str] | None = None, batch_size: int = 64
                      ) -> np.ndarray: ...


@dataclass(frozen=True)
class LoadRequest:
    """What a loader needs: the run (its recipe already read and its code already trusted), its kind, and the
    caller's options. `backend` is "torch" or "onnx"; `task_name` picks one task of a multi-task run."""

    root: Path
    recipe: Recipe
    kind: RunKind
    device: str = "auto"
    backend: str = "torch"
    task_name: str | None = None
    trust: RunCodeTrust = field(default_factory=RunCodeTrust)

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.root)


class Loader(Protocol):
    """What rebuilds one kind's predictor from a run directory (the registry's entries): it checks each file it
    reads (`tuneforge.predict.checks`) before a library reads it. A predictor class need not load itself, so
    component-level predictors (the ensemble's) never import this package."""

    def __call__(self, request: LoadRequest) -> RunPredictor: ...
