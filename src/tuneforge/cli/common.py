"""What several verbs share: quiet libraries, and flags turned into recipe overrides."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError
from tuneforge.recipe import Recipe, load_recipe, recipe_from_dict
from tuneforge.run import RunLayout

# Command-line flags are shorthands for recipe fields, so the recipe stays the single source of truth.
FLAG_FIELDS = {
    "data": "data.train",
    "validation": "data.validation",
    "test": "data.test",
    "text_column": "data.text_column",
    "text_pair_column": "data.text_pair_column",
    "label_column": "data.label_column",
    "target_column": "data.target_column",
    "prompt_column": "data.prompt_column",
    "response_column": "data.response_column",
    "messages_column": "data.messages_column",
    "model": "model.name",
    "task": "task",
    "output": "output.dir",
}


TRUST_HELP = ("Run code the run directory names (domain functions, evaluation plugins, remote model code). Only for "
              "runs from someone you trust: that code runs with your permissions.")


def trust_option() -> Any:
    import typer

    return typer.Option(False, "--trust-run-code", help=TRUST_HELP)


def quiet_libraries() -> None:
    """Library chatter (weight-load reports, per-map progress bars) buries what the user needs to see."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # bitsandbytes (8-bit optimisers) warns at import that an optional 4-bit CPU kernel package is missing.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def flag_overrides(**flags: object) -> list[str]:
    overrides = []
    for flag, value in flags.items():
        if value is None:
            continue
        if flag in ("data", "validation", "test", "output"):
            value = str(Path(str(value)).expanduser().resolve())
        overrides.append(f"{FLAG_FIELDS[flag]}={value}")
    return overrides


def build_recipe(recipe_path: Path | None, sets: list[str] | None, **flags: object) -> Recipe:
    overrides = flag_overrides(**flags) + list(sets or [])
    if recipe_path is not None:
        return load_recipe(recipe_path, overrides)
    return recipe_from_dict({}, overrides, source="command line")


def recipe_for_resume(output: Path, trust_run_code: bool = False) -> Recipe:
    """The recipe an interrupted run was started with; code it names runs only when trusted (`tuneforge.trust`)."""
    from tuneforge.trust import check_run_code

    layout = RunLayout(output)
    if not layout.recipe.is_file():
        raise TuneforgeError(f"{output} holds no run to resume (no recipe.yaml)",
                             fix="pass the --output of the interrupted run, or the recipe file")
    recipe = load_recipe(layout.recipe)
    check_run_code(layout.root, recipe, trust_run_code)
    recipe.output.dir = str(output)  # a copied run resumes where it is now, not where its recipe was written
    return recipe
