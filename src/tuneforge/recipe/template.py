"""The commented template behind `tuneforge init`: every field with its default, choices and help text."""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel

from tuneforge.recipe.loading import recipe_from_dict
from tuneforge.recipe.schema import Recipe


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, BaseModel):  # a nested section (train.distributed) is written inline
        value = value.model_dump(mode="json")
    if isinstance(value, Enum):
        value = value.value
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _choices(annotation: Any) -> list[Any]:
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [member.value for member in annotation]
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    choices: list[Any] = []
    for arg in get_args(annotation):
        choices += _choices(arg)
    return choices


def commented_template(task: str = "classification", **top: Any) -> str:
    """A complete recipe with every field, its default and its help text as comments."""
    recipe = recipe_from_dict({"task": task}, source="--task")
    for dotted, value in top.items():
        section, _, key = dotted.partition("__")
        setattr(getattr(recipe, section), key, value)
    lines = [
        "# tuneforge recipe: every field with its default. Delete what you do not change.",
        "# Check it with `tuneforge validate recipe.yaml`, run it with `tuneforge train recipe.yaml`.",
    ]
    for name, field in Recipe.model_fields.items():
        value = getattr(recipe, name)
        if isinstance(value, BaseModel):
            lines.append("")
            lines.append(f"{name}:")
            for sub_name, sub_field in type(value).model_fields.items():
                choices = _choices(sub_field.annotation)
                note = sub_field.description or ""
                if choices and len(choices) > 1:
                    note += f" [{' | '.join(str(c) for c in choices)}]"
                lines.append(f"  # {note}")
                lines.append(f"  {sub_name}: {_yaml_scalar(getattr(value, sub_name))}")
        else:
            lines.append(f"# {field.description}")
            lines.append(f"{name}: {_yaml_scalar(value)}")
    return "\n".join(lines) + "\n"
