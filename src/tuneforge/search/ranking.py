"""Whether a study can rank its trials: the validation split's size, and the default recipe as trial 0.

A trial's score is one validation split's, so two trials are told apart only when they differ by more than that
split's noise: with n rows the standard error of an accuracy near 0.8 is sqrt(0.8 * 0.2 / n), ±0.04 at 100 rows
and ±0.07 at 30. Below `REFUSE_BELOW` rows the ranking is mostly noise, and a study there spends its budget to
pick a lucky trial; below `WARN_BELOW` it is told so with the number.
"""

from __future__ import annotations

import math
from typing import Any

from tuneforge.errors import TuneforgeError
from tuneforge.recipe import Recipe, SearchParam

WARN_BELOW = 100
REFUSE_BELOW = 30


def validation_rows(recipe: Recipe) -> int:
    """Rows of the validation split the recipe's runs will score: its file, or the share carved from train the
    way data preparation carves it (test first, then validation, both shares of the whole file)."""
    from tuneforge.data.loading import read_table

    spec = recipe.data
    if spec.validation:
        return len(read_table(spec.validation, "validation", spec.cache_dir))
    if not spec.train or spec.validation_split <= 0:
        return 0
    rows = len(read_table(spec.train, "train", spec.cache_dir))
    carved_test = spec.test_split if not spec.test and spec.test_split > 0 else 0.0
    if carved_test:
        rows -= math.ceil(carved_test * rows)
    return math.ceil(spec.validation_split / (1.0 - carved_test) * rows)


def standard_error(rows: int, score: float = 0.8) -> float:
    return math.sqrt(score * (1 - score) / max(rows, 1))


def check_validation_size(rows: int, what: str = "trials") -> str | None:
    """None when `rows` can rank trials; a warning below WARN_BELOW; an error below REFUSE_BELOW."""
    if rows >= WARN_BELOW:
        return None
    noise = (f"the validation split has {rows} rows, so a score near 0.8 is only known to about "
             f"±{standard_error(rows):.2f} and {what} closer than that are not told apart")
    if rows < REFUSE_BELOW:
        raise TuneforgeError(f"{noise}; ranking {what} on it would pick a lucky one",
                             fix=f"give the study at least {WARN_BELOW} validation rows (a data.validation file, or "
                                 "a larger data.validation_split); with too little data for that, compare a few "
                                 "recipes by k-fold cross-validation instead of searching")
    return f"{noise}; {WARN_BELOW} or more rows rank {what} reliably"


def default_params(recipe: Recipe, space: dict[str, SearchParam]) -> tuple[dict[str, Any], list[str]]:
    """The recipe's own value of each searched field, as Optuna params (for enqueue_trial), and the fields whose
    value a categorical parameter cannot take (those are sampled in trial 0 instead)."""
    params: dict[str, Any] = {}
    left_out = []
    for path, param in space.items():
        section, field = path.split(".", 1)
        value = getattr(getattr(recipe, section), field)
        if param.type == "categorical":
            if value in (param.choices or []):
                params[path] = value
            else:
                left_out.append(path)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            params[path] = int(value) if param.type == "int" else float(value)
        else:
            left_out.append(path)  # e.g. batch_size: auto in an int range
    return params, left_out


def enqueue_default(study: Any, recipe: Recipe, space: dict[str, SearchParam]) -> dict[str, Any]:
    """Queue the recipe as it is as the first trial of a new study, so the search reports whether it beat the
    starting point; returns what was queued (also kept in the trial's user attributes)."""
    params, left_out = default_params(recipe, space)
    study.enqueue_trial(params, user_attrs={"default_recipe": True, "sampled_instead": left_out})
    return {"params": params, "sampled_instead": left_out}
