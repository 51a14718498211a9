"""Data of preference tuning and reward modelling: load, check and split, into the columns TRL's trainers read.

A file holds one of three layouts, told apart by its columns:

- pairs of text: prompt, chosen, rejected (each a string);
- pairs of chats: chosen and rejected as lists of {role, content} (JSONL/Parquet, or JSON text in a CSV cell),
  with the prompt in its own column (a text or a chat) or left implicit as the turns both chats open with;
- unpaired rows (KTO only): prompt, completion and a true/false label saying whether the completion is desirable.

Rows come out as TRL's "standard" (strings) or "conversational" (message lists) preference format: prompt/chosen/
rejected, or prompt/completion/label. Every problem in every file is collected and reported at once, naming the
file, the row (the line a person opens) and the column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import datasets

from tuneforge.data import validation as checks
from tuneforge.data.loading import read_named_splits, row_label
from tuneforge.data.prepare import _carve
from tuneforge.errors import DataError, Problem
from tuneforge.recipe import Recipe
from tuneforge.tasks.causal_lm import parse_messages

ROLES = ("train", "validation", "test")
PAIRS = "pairs"
UNPAIRED = "unpaired"
TRUE_WORDS = ("true", "1", "yes", "desirable", "good")
FALSE_WORDS = ("false", "0", "no", "undesirable", "bad")
CHAT_FIX = 'write each chat as a list like [{"role": "user", "content": "..."}, {"role": "assistant", "content": ' \
           '"..."}]'

Chat = list[dict[str, str]]


@dataclass
class PreferenceData:
    """Checked, normalised and split preference rows; `layout` is pairs or unpaired, `chat` whether they are
    message lists."""

    train: datasets.Dataset
    validation: datasets.Dataset | None
    test: datasets.Dataset | None
    layout: str
    chat: bool
    warnings: list[Problem] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    labels: list[str] | None = None  # no classes: RunState.labels reads None

    @property
    def paired(self) -> bool:
        return self.layout == PAIRS


def _listed(path: str, rows: list[int]) -> str:
    shown = ", ".join(row_label(path, i) for i in rows[:checks.MAX_ROWS_LISTED])
    more = len(rows) - checks.MAX_ROWS_LISTED
    return f"{shown} and {more} more" if more > 0 else shown


class _Findings:
    """Row problems grouped by (column, message), so a thousand empty cells are one problem listing rows."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows: dict[tuple[str, str, str, str], list[int]] = {}

    def add(self, index: int, column: str, message: str, fix: str, severity: str = "error") -> None:
        self.rows.setdefault((column, message, fix, severity), []).append(index)

    def problems(self) -> list[Problem]:
        return [Problem(where=f"{self.path}: column '{column}'",
                        message=f"{len(rows)} row(s) with {message}: {_listed(self.path, rows)}",
                        fix=fix, severity=severity)
                for (column, message, fix, severity), rows in self.rows.items()]


def _is_chat_cell(value: Any) -> bool:
    if isinstance(value, list):
        return True
    return isinstance(value, str) and value.lstrip().startswith("[")


def _label(value: Any) -> bool | None:
    """A KTO label as a bool (true/false, 1/0, yes/no, desirable/undesirable); None when it is none of them."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower() if value is not None else ""
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    return None


def _shared_opening(chosen: Chat, rejected: Chat) -> int:
    """How many opening messages two chats share (the implicit prompt of a chat pair)."""
    count = 0
    for first, second in zip(chosen, rejected, strict=False):
        if first != second:
            break
        count += 1
    return count


class _Reader:
    """Reads one file's rows into the normalised layout, noting every problem."""

    def __init__(self, recipe: Recipe, path: str, table: datasets.Dataset) -> None:
        spec, preference = recipe.data, recipe.preference
        self.path, self.table = path, table
        self.prompt_column = spec.prompt_column
        self.chosen_column, self.rejected_column = preference.chosen_column, preference.rejected_column
        self.completion_column, self.label_column = preference.completion_column, spec.label_column
        self.findings = _Findings(path)
        self.problems: list[Problem] = []

    def layout(self) -> str | None:
        """pairs or unpaired from the columns the file has; None (with the problem noted) when it has neither."""
        columns = self.table.column_names
        if self.chosen_column in columns or self.rejected_column in columns or self.completion_column not in columns:
            missing = checks.check_columns(
                self.path, columns, [self.chosen_column, self.rejected_column],
                fix="name the columns with preference.chosen_column and preference.rejected_column; unpaired KTO "
                    f"rows have '{self.completion_column}' and '{self.label_column}' columns instead")
            self.problems += missing
            return None if missing else PAIRS
        missing = checks.check_columns(self.path, columns, [self.label_column],
                                       fix="unpaired rows need a true/false label per completion; name its column "
                                           "with data.label_column")
        self.problems += missing
        return None if missing else UNPAIRED

    def chat(self, layout: str) -> bool:
        column = self.chosen_column if layout == PAIRS else self.completion_column
        first = next((value for value in self.table[column] if not checks.is_blank(value)), None)
        return _is_chat_cell(first)

    def _text(self, index: int, column: str, value: Any, what: str) -> str | None:
        if checks.is_blank(value) or not str(value).strip():
            self.findings.add(index, column, f"empty {what}", f"fill in or remove those rows: every row needs {what}")
            return None
        if _is_chat_cell(value):
            self.findings.add(index, column, f"a chat where the file's {what}s are plain text",
                              "write every row of the file the same way: all text, or all chats")
            return None
        return str(value)

    def _chat(self, index: int, column: str, value: Any, what: str) -> Chat | None:
        if checks.is_blank(value):
            self.findings.add(index, column, f"empty {what}", f"fill in or remove those rows: every row needs {what}")
            return None
        if not _is_chat_cell(value):
            self.findings.add(index, column, f"plain text where the file's {what}s are chats",
                              "write every row of the file the same way: all text, or all chats")
            return None
        try:
            return parse_messages(value)
        except ValueError as error:
            self.findings.add(index, column, f"a chat that {error}", CHAT_FIX)
            return None

    def _prompt_chat(self, index: int, value: Any) -> Chat | None:
        """A chat pair's explicit prompt: a chat, or a text taken as one user message; None when blank."""
        if checks.is_blank(value) or (isinstance(value, str) and not value.strip()):
            return None
        if _is_chat_cell(value):
            return self._chat(index, self.prompt_column, value, "prompt")
        return [{"role": "user", "content": str(value)}]

    def _responses(self, index: int, column: str, chat: Chat) -> Chat | None:
        if not any(message["role"] == "assistant" for message in chat):
            self.findings.add(index, column, "a response with no assistant message",
                              "each chosen and rejected chat must end with the assistant's answer")
            return None
        return chat

    def pairs(self, chat: bool) -> list[dict[str, Any]]:
        columns = self.table.column_names
        prompts = self.table[self.prompt_column] if self.prompt_column in columns else [None] * len(self.table)
        if not chat and self.prompt_column not in columns:
            self.problems += checks.check_columns(self.path, columns, [self.prompt_column],
                                                  fix="name it with data.prompt_column (--prompt-column)")
            return []
        rows = []
        for index, (prompt, chosen, rejected) in enumerate(zip(prompts, self.table[self.chosen_column],
                                                               self.table[self.rejected_column], strict=True)):
            row = self._chat_pair(index, prompt, chosen, rejected) if chat else \
                self._text_pair(index, prompt, chosen, rejected)
            if row is not None:
                if row["chosen"] == row["rejected"]:
                    self.findings.add(index, self.chosen_column, "the same chosen and rejected response",
                                      "such a row teaches no preference; fix or remove it", severity="warning")
                rows.append(row)
        return rows

    def _text_pair(self, index: int, prompt: Any, chosen: Any, rejected: Any) -> dict[str, Any] | None:
        values = (self._text(index, self.prompt_column, prompt, "prompt"),
                  self._text(index, self.chosen_column, chosen, "chosen response"),
                  self._text(index, self.rejected_column, rejected, "rejected response"))
        if any(value is None for value in values):
            return None
        return dict(zip(("prompt", "chosen", "rejected"), values, strict=True))

    def _chat_pair(self, index: int, prompt: Any, chosen: Any, rejected: Any) -> dict[str, Any] | None:
        opening = self._prompt_chat(index, prompt)
        good = self._chat(index, self.chosen_column, chosen, "chosen response")
        bad = self._chat(index, self.rejected_column, rejected, "rejected response")
        if good is None or bad is None:
            return None
        if opening is None:  # implicit prompt: the turns both chats open with
            shared = _shared_opening(good, bad)
            if shared == 0:
                self.findings.add(index, self.chosen_column, "chosen and rejected chats that share no opening turn, "
                                  "so the prompt is unknown",
                                  f"add a '{self.prompt_column}' column, or open both chats with the same user turn")
                return None
            opening, good, bad = good[:shared], good[shared:], bad[shared:]
        good = self._responses(index, self.chosen_column, good)
        bad = self._responses(index, self.rejected_column, bad)
        if good is None or bad is None:
            return None
        return {"prompt": opening, "chosen": good, "rejected": bad}

    def unpaired(self, chat: bool) -> list[dict[str, Any]]:
        problems = checks.check_columns(self.path, self.table.column_names, [self.prompt_column],
                                        fix="name it with data.prompt_column (--prompt-column)")
        if problems:
            self.problems += problems
            return []
        rows = []
        for index, (prompt, completion, label) in enumerate(zip(
                self.table[self.prompt_column], self.table[self.completion_column], self.table[self.label_column],
                strict=True)):
            desirable = _label(label)
            if desirable is None:
                self.findings.add(index, self.label_column, f"a label that is not true or false (e.g. {label!r})",
                                  "write true for a desirable completion and false for an undesirable one")
            if chat:
                opening = self._prompt_chat(index, prompt)
                if opening is None:
                    self.findings.add(index, self.prompt_column, "empty prompt",
                                      "fill in or remove those rows: every row needs a prompt")
                answer = self._chat(index, self.completion_column, completion, "completion")
                answer = self._responses(index, self.completion_column, answer) if answer is not None else None
            else:
                opening = self._text(index, self.prompt_column, prompt, "prompt")
                answer = self._text(index, self.completion_column, completion, "completion")
            if opening is not None and answer is not None and desirable is not None:
                rows.append({"prompt": opening, "completion": answer, "label": desirable})
        return rows


def _key(row: dict[str, Any]) -> str:
    response = row.get("chosen", row.get("completion"))
    return checks.text_key(json.dumps(row["prompt"], ensure_ascii=False), json.dumps(response, ensure_ascii=False))


def load_preference(recipe: Recipe) -> tuple[dict[str, tuple[str, datasets.Dataset]], list[Problem]]:
    """Every split the recipe names, read, checked and normalised (role -> (file, rows)), and every problem found;
    never raises for data content (what `tuneforge validate` lists)."""
    loaded, _, _, problems = _load(recipe)
    return {role: (path, datasets.Dataset.from_list(rows)) for role, (path, rows) in loaded.items() if rows}, \
        problems


def _load(recipe: Recipe) -> tuple[dict[str, tuple[str, list[dict[str, Any]]]], str | None, bool, list[Problem]]:
    """(rows per role, layout, chat, problems)."""
    spec = recipe.data
    if not spec.train:
        return {}, None, False, [Problem(where="data.train", message="no training file given",
                                         fix="set data.train in the recipe or pass --data FILE")]
    problems: list[Problem] = []
    loaded: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    shape: tuple[str, bool] | None = None
    for role, path, table in read_named_splits(spec, problems, ROLES):
        reader = _Reader(recipe, path, table)
        layout = reader.layout()
        if layout is None:
            problems += reader.problems
            continue
        chat = reader.chat(layout)
        if shape is None:
            shape = (layout, chat)
        elif shape != (layout, chat):
            problems.append(Problem(where=path, message=f"holds {_describe(layout, chat)} while {spec.train} holds "
                                    f"{_describe(*shape)}", fix="write every file of the run the same way"))
            continue
        rows = reader.pairs(chat) if layout == PAIRS else reader.unpaired(chat)
        problems += reader.problems + reader.findings.problems()
        loaded[role] = (path, rows)
    if shape is None:
        return loaded, None, False, problems
    layout, chat = shape
    if layout == UNPAIRED and (recipe.task != "preference" or recipe.preference.method != "kto"):
        who = "a reward model" if recipe.task == "reward" else f"method {recipe.preference.method}"
        problems.append(Problem(where=spec.train, message=f"holds unpaired rows ({recipe.preference.completion_column}"
                                f" and {spec.label_column}); {who} learns from pairs of a chosen and a rejected "
                                "response", fix="use preference.method: kto for unpaired rows, or give chosen/rejected "
                                                "pairs"))
    if layout == UNPAIRED and "train" in loaded and not any(p.severity == "error" for p in problems):
        labels = {row["label"] for row in loaded["train"][1]}
        if len(labels) < 2 and loaded["train"][1]:
            kind = "desirable" if True in labels else "undesirable"
            problems.append(Problem(where=f"{spec.train}: column '{spec.label_column}'",
                                    message=f"every training completion is {kind}",
                                    fix="KTO learns from both: add completions labelled the other way"))
    return loaded, layout, chat, problems


def _describe(layout: str, chat: bool) -> str:
    return f"{'unpaired' if layout == UNPAIRED else 'paired'} {'chats' if chat else 'texts'}"


def prepare_preference_data(recipe: Recipe) -> PreferenceData:
    """Checked, normalised and split rows of a preference or reward run; raises `DataError` listing every error."""
    loaded, layout, chat, problems = _load(recipe)
    errors = [p for p in problems if p.severity == "error"]
    if not errors and "train" in loaded and not loaded["train"][1]:
        errors = [Problem(where=loaded["train"][0], message="has no usable rows", fix="add preference rows")]
    if errors or "train" not in loaded or layout is None:
        raise DataError(errors or problems)
    warnings = [p for p in problems if p.severity != "error"]
    spec = recipe.data
    splits = {role: datasets.Dataset.from_list(rows) for role, (_, rows) in loaded.items() if rows}
    sources = {role: path for role, (path, _) in loaded.items()}
    train = splits["train"]
    stratify = "label" if layout == UNPAIRED else None
    if "test" not in splits and spec.test_split > 0:
        train, splits["test"] = _carve(train, spec.test_split, train[stratify] if stratify else None,
                                       spec.split_seed)
        sources["test"] = f"{spec.train} (carved, {spec.test_split:.0%})"
    if "validation" not in splits and spec.validation_split > 0 and len(train) >= 2:
        fraction = spec.validation_split / (1 - (spec.test_split if "test" not in loaded else 0.0))
        train, splits["validation"] = _carve(train, min(fraction, 0.5), train[stratify] if stratify else None,
                                             spec.split_seed)
        sources["validation"] = f"{spec.train} (carved)"
    train_keys = [_key(row) for row in train]
    for role in ("validation", "test"):
        if role in splits and role in loaded:  # a carved split cannot share rows by construction
            warnings += checks.check_overlap((sources["train"], train_keys),
                                             (sources[role], [_key(row) for row in splits[role]]))
    return PreferenceData(train, splits.get("validation"), splits.get("test"), layout, chat, warnings, sources)
