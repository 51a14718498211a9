"""The search space: recipe field paths checked against the schema, sampled through Optuna, applied to a recipe.

Optuna's `suggest_*` API does the sampling; what it cannot know is the recipe, so this module checks that a path
names a real field, that every value the space can produce passes the schema, and turns sampled values back
into a validated Recipe for a trial.
"""

from __future__ import annotations

import copy
import difflib
import math
from typing import TYPE_CHECKING, Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from tuneforge.errors import TuneforgeError

if TYPE_CHECKING:
    import optuna

    from tuneforge.recipe import Recipe, SearchParam

# A study cannot change where it writes or search its own settings; the task decides what the data means.
UNSEARCHABLE_SECTIONS = ("search", "auto", "output")
GRID_LIMIT = 10_000  # a discrete float range finer than this is a typo, not a grid


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def searchable_fields() -> dict[str, Any]:
    """`section.field` -> the pydantic FieldInfo, for every scalar-ish field a trial may set."""
    from tuneforge.recipe import Recipe

    fields = {}
    for section_name, section in Recipe.model_fields.items():
        if section_name in UNSEARCHABLE_SECTIONS or not _is_model(section.annotation):
            continue
        for name, field in section.annotation.model_fields.items():
            nested = [arg for arg in get_args(field.annotation) or (field.annotation,) if _is_model(arg)]
            if nested or (get_origin(field.annotation) is list and any(_is_model(a) for a in
                                                                       get_args(field.annotation))):
                continue
            fields[f"{section_name}.{name}"] = field
    return fields


def _initials(name: str) -> str:
    return "".join(part[0] for part in name.split("_") if part)


def closest_field(path: str) -> str | None:
    known = list(searchable_fields())
    section, _, leaf = path.rpartition(".")
    # Abbreviations first (lr -> learning_rate, bs -> batch_size), in the section named, then anywhere.
    for scope in ([name for name in known if name.startswith(section + ".")], known):
        short = [name for name in scope if len(leaf) > 1 and leaf.lower() in (_initials(name.rsplit(".", 1)[-1]),)]
        if short:
            return short[0]
    close = difflib.get_close_matches(path, known, n=1, cutoff=0.6)
    if close:
        return close[0]
    same_leaf = [name for name in known if name.rsplit(".", 1)[-1] == leaf]
    if same_leaf:
        return same_leaf[0]
    close = difflib.get_close_matches(leaf, [name.rsplit(".", 1)[-1] for name in known], n=1, cutoff=0.6)
    return next((name for name in known if close and name.endswith("." + close[0])), None)


def candidate_values(param: SearchParam) -> list[Any]:
    """The values worth checking against the schema: every choice, or both ends of a range."""
    if param.type == "categorical":
        return list(param.choices or [])
    cast = int if param.type == "int" else float
    return [cast(param.low), cast(param.high)]


def _accepts_only_whole_numbers(annotation: Any) -> bool:
    allowed = set(get_args(annotation)) or {annotation}
    return int in allowed and float not in allowed


def recipe_data(recipe: Recipe) -> dict[str, Any]:
    """The recipe as plain data without its search section: what a trial, or the best recipe, starts from."""
    data = recipe.model_dump(mode="json")
    data.pop("search", None)
    return data


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    section, field = path.split(".", 1)
    data.setdefault(section, {})[field] = value


def space_problems(recipe: Recipe) -> list[str]:
    """Everything wrong with `recipe.search.space`, one message per problem (empty when it is usable)."""
    from tuneforge.recipe import Recipe

    fields = searchable_fields()
    problems = []
    base = recipe_data(recipe)
    for path, param in recipe.search.space.items():
        where = f"search.space.{path}"
        section = path.split(".", 1)[0]
        if section in UNSEARCHABLE_SECTIONS:
            problems.append(f"{where}: the {section} section cannot be searched")
            continue
        field = fields.get(path)
        if field is None:
            close = closest_field(path)
            hint = f"; did you mean '{close}'?" if close else "; see `tuneforge init` for the recipe's fields"
            problems.append(f"{where}: '{path}' is not a recipe field{hint}")
            continue
        if param.type == "float" and _accepts_only_whole_numbers(field.annotation):
            problems.append(f"{where}: {path} holds whole numbers; use type: int")
            continue
        for value in candidate_values(param):
            data = copy.deepcopy(base)
            _set(data, path, value)
            try:
                Recipe.model_validate(data)
            except ValidationError as error:
                reason = error.errors()[0]["msg"].removeprefix("Value error, ")
                problems.append(f"{where}: the value {value!r} does not make a valid recipe ({reason})")
                break
    return problems


def suggest(trial: optuna.Trial, path: str, param: SearchParam) -> Any:
    """Sample one value through Optuna; the parameter's name in the study is its recipe path."""
    if param.type == "categorical":
        return trial.suggest_categorical(path, list(param.choices or []))
    if param.type == "int":
        return trial.suggest_int(path, int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
    return trial.suggest_float(path, float(param.low), float(param.high), step=param.step, log=param.log)


def grid(space: dict[str, SearchParam]) -> dict[str, list[Any]]:
    """Every value of each parameter, for grid search; continuous ranges have no grid and are an error."""
    values: dict[str, list[Any]] = {}
    for path, param in space.items():
        if param.type == "categorical":
            values[path] = list(param.choices or [])
        elif param.type == "int" and not param.log:
            values[path] = list(range(int(param.low), int(param.high) + 1, int(param.step or 1)))
        elif param.type == "float" and param.step is not None:
            count = math.floor((param.high - param.low) / param.step + 1e-9) + 1
            if count > GRID_LIMIT:
                raise TuneforgeError(f"search.space.{path} has {count} grid points", fix="use a larger step")
            values[path] = [round(param.low + i * param.step, 12) for i in range(count)]
        else:
            kind = "a log-scale int range" if param.type == "int" else "a continuous float range"
            raise TuneforgeError(
                f"grid search needs discrete values, but search.space.{path} is {kind}",
                fix="give it choices (type: categorical), or a step (float), or use search.sampler: tpe or random")
    return values


def grid_size(space: dict[str, SearchParam]) -> int:
    return math.prod(len(values) for values in grid(space).values())


def trial_recipe(recipe: Recipe, params: dict[str, Any], output_dir: str) -> Recipe:
    """The base recipe with the sampled values set, validated, writing to the trial's run directory."""
    from tuneforge.recipe import recipe_from_dict

    data = recipe_data(recipe)
    for path, value in params.items():
        _set(data, path, value)
    data["output"] = {**data.get("output", {}), "dir": output_dir, "overwrite": True}
    if not recipe.search.explain_trials:
        data["evaluation"] = {**data.get("evaluation", {}), "explain_examples": 0}
    return recipe_from_dict(data, source=f"trial {output_dir}")


def best_recipe(recipe: Recipe, params: dict[str, Any]) -> Recipe:
    """The base recipe with the best values: a normal recipe that `tuneforge train` runs as it is."""
    from tuneforge.recipe import recipe_from_dict

    data = recipe_data(recipe)
    for path, value in params.items():
        _set(data, path, value)
    data["output"] = {**data.get("output", {}), "dir": None, "overwrite": False}
    return recipe_from_dict(data, source="best recipe")
