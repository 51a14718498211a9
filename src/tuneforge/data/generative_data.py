"""Data of the generative tasks: load, check and split, into a few fixed columns the tokenizers read.

seq2seq rows become (source, target); causal-lm rows (prompt, response), (messages) with each chat as JSON text
(one Arrow type whatever the file held), or for classification as text (prompt, response, label). Every problem
in every file is collected and reported at once, naming the file, row and column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import datasets

from tuneforge.data import validation as checks
from tuneforge.data.loading import read_table, row_label
from tuneforge.data.prepare import _carve, sort_labels
from tuneforge.errors import DataError, Problem
from tuneforge.recipe import Recipe
from tuneforge.tasks.causal_lm import label_response, parse_messages, with_system

ROLES = ("train", "validation", "test")


@dataclass
class GenerativeData:
    train: datasets.Dataset
    validation: datasets.Dataset | None
    test: datasets.Dataset | None
    labels: list[str] | None = None  # classification as text: label names
    warnings: list[Problem] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def chat(self) -> bool:
        return "messages" in self.train.column_names


def input_columns(recipe: Recipe) -> list[str]:
    """The file columns a run of this recipe reads."""
    spec = recipe.data
    if recipe.task == "seq2seq":
        return [spec.text_column, spec.target_column]
    if recipe.lm.classify:
        return [spec.text_column, spec.label_column]
    if spec.messages_column:
        return [spec.messages_column]
    return [spec.prompt_column, spec.response_column]


def _blank(path: str, column: str, values: list[Any], what: str) -> list[Problem]:
    rows = [i for i, value in enumerate(values) if checks.is_blank(value) or not str(value).strip()]
    if not rows:
        return []
    shown = ", ".join(row_label(path, i) for i in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
    return [Problem(where=f"{path}: {shown}", message=f"{len(rows)} empty {what} in column '{column}'",
                    fix=f"fill in or remove those rows: every row needs {what}")]


def normalise_table(recipe: Recipe, path: str, table: datasets.Dataset, problems: list[Problem]) -> datasets.Dataset:
    spec = recipe.data
    if recipe.task == "seq2seq":
        problems += _blank(path, spec.text_column, table[spec.text_column], "source text")
        problems += _blank(path, spec.target_column, table[spec.target_column], "target text")
        columns = {"source": [str(v) for v in table[spec.text_column]],
                   "target": [str(v) for v in table[spec.target_column]]}
    elif recipe.lm.classify:
        problems += _blank(path, spec.text_column, table[spec.text_column], "text")
        problems += _blank(path, spec.label_column, table[spec.label_column], "label")
        labels = [checks.label_key(v) for v in table[spec.label_column]]
        template = recipe.lm.prompt_template
        columns = {"prompt": [template.replace("{text}", str(v)) for v in table[spec.text_column]],
                   "response": [label_response(template, label) for label in labels], "label": labels}
    elif spec.messages_column:
        chats = []
        for index, value in enumerate(table[spec.messages_column]):
            try:
                messages = parse_messages(value)
                if not any(m["role"] == "assistant" for m in messages):
                    raise ValueError("has no assistant message to learn from")
            except ValueError as error:
                problems.append(Problem(where=f"{path}: {row_label(path, index)}",
                                        message=f"the chat in column '{spec.messages_column}' {error}",
                                        fix='write each chat as a list like [{"role": "user", "content": "..."}, '
                                            '{"role": "assistant", "content": "..."}]'))
                messages = []
            chats.append(json.dumps(with_system(messages, recipe.lm.system_prompt), ensure_ascii=False)
                         if messages else "[]")
        columns = {"messages": chats}
    else:
        problems += _blank(path, spec.prompt_column, table[spec.prompt_column], "prompt")
        problems += _blank(path, spec.response_column, table[spec.response_column], "response")
        columns = {"prompt": ["" if v is None else str(v) for v in table[spec.prompt_column]],
                   "response": ["" if v is None else str(v) for v in table[spec.response_column]]}
    return datasets.Dataset.from_dict(columns)


def load_generative(recipe: Recipe) -> tuple[dict[str, tuple[str, datasets.Dataset]], list[Problem]]:
    """Every split the recipe names, read, checked and normalised; never raises for data content."""
    spec = recipe.data
    if not spec.train:
        return {}, [Problem(where="data.train", message="no training file given",
                            fix="set data.train in the recipe or pass --data FILE")]
    problems: list[Problem] = []
    loaded: dict[str, tuple[str, datasets.Dataset]] = {}
    needed = input_columns(recipe)
    flag = {"target_column": "--target-column", "prompt_column": "--prompt-column",
            "response_column": "--response-column", "messages_column": "--messages-column"}
    fix = ("rename the column in the file, or name yours with " + ", ".join(flag.values()) +
           " / --text-column / --label-column (data.* in the recipe)")
    for role in ROLES:
        path = getattr(spec, role)
        if not path:
            continue
        try:
            table = read_table(path, role, spec.cache_dir)
        except DataError as error:
            problems += error.problems
            continue
        missing = checks.check_columns(path, table.column_names, needed, fix=fix)
        if missing:
            problems += missing
            continue
        loaded[role] = (path, normalise_table(recipe, path, table, problems))
    if recipe.lm.classify and "train" in loaded:
        known = set(loaded["train"][1]["label"])
        for role in ("validation", "test"):
            if role in loaded:
                unseen = sorted(set(loaded[role][1]["label"]) - known)
                if unseen:
                    problems.append(Problem(where=loaded[role][0], message=f"labels {unseen} never occur in the "
                                            "training data", fix="add training rows for them or drop those rows"))
    return loaded, problems


def prepare_generative_data(recipe: Recipe) -> GenerativeData:
    """Checked, normalised and split data of a seq2seq or causal-lm run; raises `DataError` listing every error."""
    loaded, problems = load_generative(recipe)
    errors = [p for p in problems if p.severity == "error"]
    if errors or "train" not in loaded:
        raise DataError(errors or problems)
    spec = recipe.data
    splits = {role: table for role, (_, table) in loaded.items()}
    sources = {role: path for role, (path, _) in loaded.items()}
    train = splits["train"]
    stratify = "label" if recipe.lm.classify else None
    if "test" not in splits and spec.test_split > 0:
        train, splits["test"] = _carve(train, spec.test_split, train[stratify] if stratify else None,
                                       spec.split_seed)
        sources["test"] = f"{spec.train} (carved, {spec.test_split:.0%})"
    if "validation" not in splits and spec.validation_split > 0 and len(train) >= 2:
        fraction = spec.validation_split / (1 - (spec.test_split if "test" not in loaded else 0.0))
        train, splits["validation"] = _carve(train, min(fraction, 0.5), train[stratify] if stratify else None,
                                             spec.split_seed)
        sources["validation"] = f"{spec.train} (carved)"
    labels = sort_labels(set(train["label"])) if recipe.lm.classify else None
    return GenerativeData(train, splits.get("validation"), splits.get("test"), labels, [], sources)
