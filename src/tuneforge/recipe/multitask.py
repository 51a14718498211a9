"""Multi-task recipes: the tasks list and how their batches and losses combine."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from tuneforge.recipe.data import DataSpec
from tuneforge.recipe.section import Section


class TaskSpec(Section):
    """One task of a multi-task recipe: its own data and head over the shared encoder."""

    name: str = Field(description="Short name of the task (letters, digits, _ or -); it prefixes the task's metrics "
                      "and picks the task at predict time (--task-name).")
    task: Literal["classification", "regression"] = Field(
        "classification", description="classification or regression (one head per task).")
    data: DataSpec = Field(default_factory=DataSpec, description="The task's data, as the data section of a "
                           "single-task recipe.")

    @field_validator("name")
    @classmethod
    def _name_is_a_key(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", value or ""):
            raise ValueError(f"task name {value!r} must be letters, digits, '_' or '-' (it prefixes metric names)")
        return value


class MultitaskSpec(Section):
    """How batches are drawn from the tasks of a multi-task recipe and how their losses add up."""

    sampling: Literal["proportional", "temperature", "round_robin"] = Field(
        "proportional", description="Which task each batch comes from: proportional to the tasks' training rows, "
        "temperature (proportional to rows^(1/temperature), which lifts small tasks), or round_robin (tasks in "
        "turn).")
    temperature: float = Field(2.0, ge=1.0, description="temperature sampling: 1 is proportional; larger flattens "
                               "towards uniform.")
    loss_weights: dict[str, float] = Field(
        default_factory=dict, description="Loss weight per task name (default 1 each).")
