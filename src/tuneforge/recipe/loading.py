"""Reading a recipe: from a YAML file or a dict, with overrides, validation problems and relative paths resolved.

Every validation error becomes a `Problem` naming the field and the fix, all of them reported at once.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tuneforge.errors import Problem, RecipeError
from tuneforge.recipe.overrides import apply_overrides
from tuneforge.recipe.schema import CAPABILITY_ERROR, Recipe, section_at


def _problems_from_validation(error: ValidationError, source: str) -> list[Problem]:
    problems = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"]) or "(top level)"
        context = item.get("ctx", {})
        if item["type"] == CAPABILITY_ERROR:  # settings the run kind does not support: one problem each
            problems += [Problem(where=f"{source}: {refusal['fields']}", message=refusal["message"],
                                 fix=refusal["fix"]) for refusal in context["refusals"]]
            continue
        fix = ""
        if item["type"] == "extra_forbidden":
            fix = _suggest_field(item["loc"])
        elif item["type"] in ("literal_error", "enum"):
            fix = f"use one of {context.get('expected', '')}"
        msg = item["msg"].removeprefix("Value error, ")
        problems.append(Problem(where=f"{source}: {path}", message=msg, fix=fix))
    return problems


def _suggest_field(loc: tuple[Any, ...]) -> str:
    model = section_at(loc)
    if model is None:
        return "remove this key"
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"remove it; known keys here: {', '.join(model.model_fields)}"


def _resolve_data_paths(recipe: Recipe, base_dir: Path) -> Recipe:
    """Relative data and identity-term paths in a recipe are relative to its file, as a reader of the YAML expects."""
    for split in ("train", "validation", "test"):
        value = getattr(recipe.data, split)
        if value and not Path(value).is_absolute() and not value.startswith(("hf://", "http://", "https://")):
            setattr(recipe.data, split, str((base_dir / value).resolve()))
    gate = recipe.refresh.gate
    if gate and not Path(gate).is_absolute():
        recipe.refresh.gate = str((base_dir / gate).resolve())
    corpus = recipe.pretrain.corpus
    if corpus and not Path(corpus).is_absolute():
        recipe.pretrain.corpus = str((base_dir / corpus).resolve())
    for spec in recipe.tasks:
        for split in ("train", "validation", "test"):
            value = getattr(spec.data, split)
            if value and not Path(value).is_absolute() and not value.startswith(("hf://", "http://", "https://")):
                setattr(spec.data, split, str((base_dir / value).resolve()))
    for kind in ("image_encoder", "audio_encoder"):  # a folder beside the recipe; otherwise a hub id
        value = getattr(recipe.features, kind)
        if value and not Path(value).is_absolute() and (base_dir / value).is_dir():
            setattr(recipe.features, kind, str((base_dir / value).resolve()))
    terms = recipe.fairness.identity_terms_file
    if terms and not Path(terms).is_absolute():
        recipe.fairness.identity_terms_file = str((base_dir / terms).resolve())
    return recipe


def recipe_from_dict(
    data: dict[str, Any], overrides: list[str] | None = None, source: str = "recipe", base_dir: Path | None = None
) -> Recipe:
    data = apply_overrides(dict(data or {}), overrides)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as error:
        raise RecipeError(_problems_from_validation(error, source)) from None
    return _resolve_data_paths(recipe, base_dir) if base_dir is not None else recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(
            [Problem(where=str(path), message="recipe file not found", fix="check the path, or write one with "
                     "`tuneforge init > recipe.yaml`")]
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise RecipeError(
            [Problem(where=where, message=f"not valid YAML ({getattr(error, 'problem', error)})",
                     fix="check indentation and quoting on that line")]
        ) from None
    if not isinstance(data, dict):
        raise RecipeError([Problem(where=str(path), message="a recipe must be a YAML mapping of sections",
                                   fix="start from `tuneforge init`")])
    return recipe_from_dict(data, overrides, source=str(path), base_dir=path.parent)
