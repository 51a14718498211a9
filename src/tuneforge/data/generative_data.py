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
from tuneforge.data.loading import read_named_splits, row_label
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


class _Normalise:
    """Picklable row mapper into the fixed columns: run through `Dataset.map` on the file-backed table, so the
    result and the tokenisation after it are cached by fingerprint and not redone on the next run."""

    def __init__(self, recipe: Recipe) -> None:
        spec = recipe.data
        self.task = recipe.task
        self.classify = recipe.lm.classify
        self.template = recipe.lm.prompt_template
        self.system_prompt = recipe.lm.system_prompt
        self.columns = (spec.text_column, spec.target_column, spec.label_column, spec.messages_column,
                        spec.prompt_column, spec.response_column)

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        text, target, label, messages, prompt, response = self.columns

        def strings(column: str) -> list[str]:
            return ["" if value is None else str(value) for value in batch[column]]

        if self.task == "seq2seq":
            return {"source": strings(text), "target": strings(target)}
        if self.classify:
            labels = [checks.label_key(value) for value in batch[label]]
            return {"prompt": [self.template.replace("{text}", value) for value in strings(text)],
                    "response": [label_response(self.template, name) for name in labels], "label": labels}
        if messages:
            chats = []
            for value in batch[messages]:
                try:
                    chat = with_system(parse_messages(value), self.system_prompt)
                except ValueError:  # reported by normalise_table's checks
                    chat = []
                chats.append(json.dumps(chat, ensure_ascii=False))
            return {"messages": chats}
        return {"prompt": strings(prompt), "response": strings(response)}


def _check_chats(path: str, column: str, values: list[Any]) -> list[Problem]:
    problems = []
    for index, value in enumerate(values):
        try:
            if not any(m["role"] == "assistant" for m in parse_messages(value)):
                raise ValueError("has no assistant message to learn from")
        except ValueError as error:
            problems.append(Problem(where=f"{path}: {row_label(path, index)}",
                                    message=f"the chat in column '{column}' {error}",
                                    fix='write each chat as a list like [{"role": "user", "content": "..."}, '
                                        '{"role": "assistant", "content": "..."}]'))
    return problems


def normalise_table(recipe: Recipe, path: str, table: datasets.Dataset, problems: list[Problem]) -> datasets.Dataset:
    """The table's rows in the task's fixed columns; what is wrong with them is added to `problems`."""
    spec = recipe.data
    if recipe.task == "seq2seq":
        problems += _blank(path, spec.text_column, table[spec.text_column], "source text")
        problems += _blank(path, spec.target_column, table[spec.target_column], "target text")
    elif recipe.lm.classify:
        problems += _blank(path, spec.text_column, table[spec.text_column], "text")
        problems += _blank(path, spec.label_column, table[spec.label_column], "label")
    elif spec.messages_column:
        problems += _check_chats(path, spec.messages_column, table[spec.messages_column])
    else:
        problems += _blank(path, spec.prompt_column, table[spec.prompt_column], "prompt")
        problems += _blank(path, spec.response_column, table[spec.response_column], "response")
    return table.map(_Normalise(recipe), batched=True, remove_columns=table.column_names, desc="preparing rows")


def load_generative(recipe: Recipe) -> tuple[dict[str, tuple[str, datasets.Dataset]], list[Problem]]:
    """Every split the recipe names, read, checked and normalised; never raises for data content."""
    spec = recipe.data
    if not spec.train:
        return {}, [Problem(where="data.train", message="no training file given",
                            fix="set data.train in the recipe or pass --data FILE")]
    problems: list[Problem] = []
    loaded: dict[str, tuple[str, datasets.Dataset]] = {}
    needed = input_columns(recipe)
    flags = {spec.text_column: ("--text-column", "text_column"), spec.label_column: ("--label-column", "label_column"),
             spec.target_column: ("--target-column", "target_column"),
             spec.prompt_column: ("--prompt-column", "prompt_column"),
             spec.response_column: ("--response-column", "response_column")}
    if spec.messages_column:
        flags[spec.messages_column] = ("--messages-column", "messages_column")
    for role, path, table in read_named_splits(spec, problems, ROLES):
        missing = [problem for column in needed for problem in checks.check_columns(
            path, table.column_names, [column],
            fix=f"rename the column in the file, or name yours with {flags[column][0]} "
                f"(data.{flags[column][1]} in the recipe)")]
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
