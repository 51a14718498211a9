"""tuneforge: fine-tune a pretrained language model on your task data from one recipe.

    run = tuneforge.fine_tune("recipe.yaml")
    predictor = tuneforge.load(run.directory)
    predictor.predict(["great film", "dull plot"])
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge._version import __version__

if TYPE_CHECKING:
    from tuneforge.errors import Problem
    from tuneforge.predict import Predictor
    from tuneforge.recipe import Recipe
    from tuneforge.run import Run

__all__ = ["fine_tune", "load", "load_recipe", "__version__"]


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    from tuneforge.recipe import load_recipe as _load

    return _load(path, overrides)


def fine_tune(recipe: Recipe | dict[str, Any] | str | Path, *, overrides: list[str] | None = None,
              resume: bool = False, force: bool = False, callbacks: list[Any] | None = None,
              on_warnings: Callable[[list[Problem]], None] | None = None) -> Run:
    """Fine-tune from a `Recipe`, a dict shaped like the YAML, or a path to a recipe file.

    Warnings that do not stop training (texts shared between splits, an after-training step that failed)
    go to `on_warnings`; by default they are issued as Python `UserWarning`s, so they are never silent.
    """
    from tuneforge.recipe import Recipe, recipe_from_dict
    from tuneforge.recipe import load_recipe as _load
    from tuneforge.train.skeleton import fine_tune as _fine_tune

    if isinstance(recipe, (str, Path)):
        resolved = _load(recipe, overrides)
    elif isinstance(recipe, dict):
        resolved = recipe_from_dict(recipe, overrides)
    elif isinstance(recipe, Recipe):
        resolved = recipe_from_dict(recipe.model_dump(), overrides) if overrides else recipe
    else:
        raise TypeError("recipe must be a Recipe, a dict or a path to a YAML file")
    return _fine_tune(resolved, resume=resume, force=force, callbacks=callbacks or [],
                      on_warnings=on_warnings or _warn)


def _warn(problems: list[Problem]) -> None:
    for problem in problems:
        warnings.warn(str(problem), UserWarning, stacklevel=3)


def load(run_dir: str | Path, device: str = "auto", backend: str = "torch", task_name: str | None = None,
         trust_run_code: bool = False) -> Predictor:
    """A predictor rebuilt from a run directory alone; `backend="onnx"` runs its ONNX export with ONNX Runtime.
    An ensemble directory loads as an ensemble; a multi-task run needs `task_name` (one of its tasks).

    A run that names code (domain functions, evaluation plugins, remote model code) is refused unless
    `trust_run_code=True` or the user's settings file allows it: loading it would run that code."""
    from tuneforge.predict import Predictor

    return Predictor.from_run(run_dir, device, backend=backend, task_name=task_name, trust_run_code=trust_run_code)
