"""`--set section.field=value` overrides: read each value the way the recipe field expects it, then apply it."""

from __future__ import annotations

import re
from typing import Any, get_args, get_origin

import yaml

from tuneforge.errors import Problem, RecipeError
from tuneforge.recipe.schema import section_at

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def parse_override(assignment: str) -> tuple[list[str], Any]:
    """`train.epochs=5` -> (["train", "epochs"], 5); the value is read as YAML (numbers, booleans, lists).

    Text fields keep the raw text, so `--set data.label_column=1` names column "1" rather than the number 1;
    `3e-5`, which YAML 1.1 leaves a string, is read as a number.
    """
    if "=" not in assignment:
        raise RecipeError(
            [Problem(where=f"--set {assignment}", message="an override needs KEY=VALUE",
                     fix="e.g. --set train.epochs=5")]
        )
    key, raw = assignment.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)
    path = [part for part in key.strip().split(".") if part]
    if path and not isinstance(value, str) and value is not None and _is_text_field(path):
        value = raw.strip()
    return path, value


def _is_text_field(path: list[str]) -> bool:
    model = section_at(tuple(path))
    field = model.model_fields.get(path[-1]) if model is not None else None
    if field is None:
        return False
    annotation = field.annotation
    if get_origin(annotation) in (list, dict):  # list[str] holds texts but is written as a YAML list
        return False
    allowed = set(get_args(annotation)) or {annotation}
    return str in allowed and not allowed & {int, float, bool}


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    problems: list[Problem] = []
    for assignment in overrides or []:
        path, value = parse_override(assignment)
        if not path:
            problems.append(Problem(where=f"--set {assignment}", message="empty key", fix="e.g. --set train.epochs=5"))
            continue
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                problems.append(Problem(where=f"--set {assignment}", message=f"'{part}' is not a section"))
                break
            node = child
        else:
            node[path[-1]] = value
    if problems:
        raise RecipeError(problems)
    return data

