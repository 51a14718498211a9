"""The search section: the hyperparameter study a recipe describes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tuneforge.recipe.section import Section

SearchParamType = Literal["float", "int", "categorical"]


class SearchParam(Section):
    """One searched recipe field: a float or int range, or a list of choices (Optuna's distributions)."""

    type: SearchParamType = Field("float", description="float or int (a range from low to high), or categorical.")
    low: float | None = Field(None, description="float, int: smallest value.")
    high: float | None = Field(None, description="float, int: largest value (included).")
    log: bool = Field(False, description="float, int: sample on a log scale (learning rates); low must be > 0.")
    step: float | None = Field(None, description="float, int: spacing of the values (int default 1; a float "
                                                 "range with a step is discrete, so grid search can use it).")
    choices: list[str | int | float | bool | None] | None = Field(
        None, description="categorical: the values to choose from, e.g. [8, 16, 32].")

    @model_validator(mode="after")
    def _consistent(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs choices: [a, b, ...]")
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("a categorical parameter takes only choices; remove low/high/log/step")
            return self
        if self.choices is not None:
            raise ValueError(f"choices belong to type: categorical, not to a {self.type} range; use low and high")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs low and high")
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) is above high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError("log: true needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined; drop one of them")
        if self.step is not None and self.step <= 0:
            raise ValueError("step must be > 0")
        if self.type == "int" and any(v is not None and float(v) != int(v) for v in (self.low, self.high, self.step)):
            raise ValueError("an int parameter needs whole numbers for low, high and step")
        return self


class SearchSpec(Section):
    space: dict[str, SearchParam] = Field(
        default_factory=dict,
        description="Searched recipe fields by path, e.g. {train.learning_rate: {type: float, low: 1e-5, high: 1e-4, "
        "log: true}, train.batch_size: {type: categorical, choices: [8, 16]}}. Used by `tuneforge search`.",
    )
    trials: int | None = Field(20, ge=1, description="Trial budget: finished (completed or pruned) trials of the "
                                                      "study, earlier runs of the same study included.")
    timeout_minutes: float | None = Field(None, gt=0, description="Wall-time budget of one `tuneforge search` "
                                                                  "command; a trial in flight finishes.")
    sampler: Literal["tpe", "random", "grid"] = Field(
        "tpe", description="tpe (Bayesian), random, or grid (every combination; discrete spaces only).")
    pruner: Literal["median", "hyperband", "asha", "none"] = Field(
        "median", description="Stop unpromising trials from their per-epoch validation metric: median (below the "
        "median of earlier trials), hyperband, asha (successive halving), or none.")
    pruner_startup_trials: int = Field(2, ge=0, description="median: trials that finish before any is pruned.")
    seed: int = Field(42, description="Seed of the sampler, so a study proposes the same trials again.")
    storage: str | None = Field(None, description="Study database, any SQLAlchemy URL (PostgreSQL, MySQL) so "
                                                  "workers on several machines share one study; default: SQLite "
                                                  "study.db in the study directory.")
    study_name: str | None = Field(None, description="Name of the study in the storage; default: the study "
                                                     "directory's name.")
    dir: str | None = Field(None, description="Study directory (study.db, trials/<n>/, best_recipe.yaml, "
                                              "leaderboard.csv, plots); default: output.dir, else studies/<task>.")
    keep_checkpoints: bool = Field(False, description="Keep each trial's checkpoints/ (disk-hungry); the trained "
                                                      "model of every completed trial is kept either way.")
    explain_trials: bool = Field(False, description="Run the example explanations after every trial; off saves "
                                                    "time, as only the best recipe needs them.")

    @field_validator("space")
    @classmethod
    def _paths_look_like_fields(cls, value: dict[str, SearchParam]) -> dict[str, SearchParam]:
        for path in value:
            if path.count(".") != 1:
                raise ValueError(f"'{path}' is not a recipe field path; write section.field, e.g. "
                                 "train.learning_rate")
        return value
