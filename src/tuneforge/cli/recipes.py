"""`tuneforge init` and `tuneforge validate`: write a recipe, check a recipe and its data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tuneforge.cli.common import build_recipe, flag_overrides, quiet_libraries
from tuneforge.cli.display import console, show_problems
from tuneforge.errors import RecipeError
from tuneforge.recipe import commented_template

# Fields that decide how the data is read: when one of them is wrong, checking the data would only report
# consequences of that mistake, so the data waits until the recipe is fixed.
DATA_FIELDS = ("data", "task", "features", "tasks")
# Sections that say nothing about reading the data; dropped when the recipe's problem names no field.
KEPT_SECTIONS = ("data", "task", "model", "features", "tasks")


def register(app: typer.Typer) -> None:
    @app.command()
    def init(
        task: str = typer.Option("classification", help="classification, regression, token-classification, "
                                                        "multilabel, pair-classification, seq2seq or causal-lm."),
        data: str = typer.Option(None, "--data", help="Training file to put in the recipe."),
        model: str = typer.Option(None, help="Model to put in the recipe."),
    ) -> None:
        """Print a complete, commented recipe generated from the schema: `tuneforge init > recipe.yaml`."""
        values = {}
        if data:
            values["data__train"] = data
        if model:
            values["model__name"] = model
        typer.echo(commented_template(task, **values), nl=False)

    @app.command()
    def validate(
        recipe: Path = typer.Argument(None, exists=True, dir_okay=False, help="Recipe YAML."),
        sets: list[str] = typer.Option(None, "--set", help="Override a recipe field."),
        data: Path = typer.Option(None, "--data", help="Training file (data.train)."),
        validation: Path = typer.Option(None, help="Validation file."),
        test: Path = typer.Option(None, help="Test file."),
        text_column: str = typer.Option(None, help="Text column."),
        label_column: str = typer.Option(None, help="Label column."),
        task: str = typer.Option(None, help="classification, regression, token-classification, multilabel, "
                                            "pair-classification, seq2seq or causal-lm."),
        target_column: str = typer.Option(None, help="seq2seq: output text column."),
        prompt_column: str = typer.Option(None, help="causal-lm: prompt column."),
        response_column: str = typer.Option(None, help="causal-lm: response column."),
        messages_column: str = typer.Option(None, help="causal-lm: chat column (lists of {role, content})."),
    ) -> None:
        """Check the recipe and its data without training; lists every problem at once."""
        quiet_libraries()
        from tuneforge.data.prepare import load_and_check
        from tuneforge.models.resolve import resolve_model

        flags = {"data": data, "validation": validation, "test": test, "text_column": text_column,
                 "label_column": label_column, "task": task, "target_column": target_column,
                 "prompt_column": prompt_column, "response_column": response_column,
                 "messages_column": messages_column}
        try:
            built, recipe_problems = build_recipe(recipe, sets, **flags), []
        except RecipeError as error:
            recipe_problems = list(error.problems)
            built = _recipe_without_problems(recipe, flag_overrides(**flags) + list(sets or []))
            if built is None:
                raise
        from tuneforge.evaluate.plugins import validate_plugins

        if built.features.enabled:  # typed feature columns, checked as multimodal training checks them
            from tuneforge.data.multimodal import check_multimodal_data

            loaded, problems = check_multimodal_data(built)
        elif built.task == "token-classification":
            loaded, problems = _check_token_data(built)
        elif built.task in ("seq2seq", "causal-lm"):
            from tuneforge.data.generative_data import load_generative

            loaded, problems = load_generative(built)
        else:
            loaded, problems = load_and_check(built)
        problems = recipe_problems + problems
        problems += validate_plugins(built.evaluation.plugins)
        try:
            resolved = resolve_model(built.model.name)
            if built.task in ("seq2seq", "causal-lm"):
                from tuneforge.models.loading import check_generative_model

                check_generative_model(built.model, built.task, resolved)
        except Exception as error:  # a model problem is one more problem to list, not a crash
            from tuneforge.errors import Problem

            problems.append(Problem(where="model.name", message=str(getattr(error, "message", error)),
                                    fix=getattr(error, "fix", "")))
            resolved = None
        show_problems(problems)
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            console.print(f"[red]{len(errors)} error(s)[/red], {len(problems) - len(errors)} warning(s)")
            raise typer.Exit(1)
        rows = ", ".join(f"{role} {len(ds)} rows" for role, (_, ds) in loaded.items())
        where = f" ({resolved.source})" if resolved else ""
        console.print(f"[green]recipe is valid[/green]: {built.task}, model {built.model.name}{where}; {rows}"
                      f"{'; ' + str(len(problems)) + ' warning(s)' if problems else ''}")


def _recipe_without_problems(path: Path | None, overrides: list[str], rounds: int = 10) -> Any:
    """The recipe with every field it has a problem with left at its default, so the data can still be checked
    and listed beside the recipe's problems; None when a problem touches how the data is read (or names no field
    that can be left out)."""
    import yaml

    from tuneforge.recipe import recipe_from_dict

    source = "recipe"
    try:
        raw = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path is not None else {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(raw, dict):
        return None
    for _ in range(rounds):
        try:
            return recipe_from_dict(raw, overrides, source=source, base_dir=path.parent if path else None)
        except RecipeError as error:
            fields = [problem.where.removeprefix(f"{source}: ") for problem in error.problems]
        if any(not field or field.startswith("--set") for field in fields):
            return None
        for field in fields:
            if field == "(top level)":  # a rule across sections: keep only what reading the data needs
                raw = {key: value for key, value in raw.items() if key in KEPT_SECTIONS}
                overrides = [item for item in overrides if item.split(".", 1)[0].split("=", 1)[0] in KEPT_SECTIONS]
                continue
            if field.split(".", 1)[0] in DATA_FIELDS:
                return None
            raw, overrides = _without(raw, field), [item for item in overrides
                                                   if not item.split("=", 1)[0].strip().startswith(field)]
    return None


def _without(raw: dict[str, Any], field: str) -> dict[str, Any]:
    """`raw` without the key at dotted `field` (or the nearest mapping above it, when a list is in the way)."""
    copy = dict(raw)
    node, parts = copy, field.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            node.pop(part, None)
            return copy
        node[part] = dict(child)
        node = node[part]
    node.pop(parts[-1], None)
    return copy


def _check_token_data(recipe: Any) -> tuple[dict[str, tuple[str, Any]], list[Any]]:
    """Token-classification data, checked the way training will check it: (sizes per split, problems)."""
    from tuneforge.data.token_data import prepare_token_data
    from tuneforge.errors import DataError

    try:
        data = prepare_token_data(recipe)
    except DataError as error:
        return {}, list(error.problems)
    splits = {"train": data.train, "validation": data.validation, "test": data.test}
    return ({role: (data.sources.get(role, "carved"), split) for role, split in splits.items() if split is not None},
            list(data.warnings))
