"""Checks of the data against the recipe that collect every problem instead of stopping at the first.

Each check returns `Problem`s naming the file, the row and the fix; `prepare_data` raises them together.
"""

from __future__ import annotations

import difflib
import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from tuneforge.data.loading import row_label
from tuneforge.errors import Problem

MAX_ROWS_LISTED = 5


def _rows(path: str, indices: Sequence[int]) -> str:
    shown = ", ".join(row_label(path, i) for i in indices[:MAX_ROWS_LISTED])
    more = len(indices) - MAX_ROWS_LISTED
    return f"{shown} and {more} more" if more > 0 else shown


COLUMN_FIX = ("set the column name in the recipe (data.text_column / data.label_column) or on the command line "
              "(--text-column / --label-column)")


def check_columns(path: str, columns: Sequence[str], required: Iterable[str], fix: str = COLUMN_FIX,
                  kind: str = "column") -> list[Problem]:
    problems = []
    for column in required:
        if column in columns:
            continue
        close = difflib.get_close_matches(column, list(columns), n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        problems.append(Problem(
            where=path, message=f"{kind} '{column}' is missing (the file has: {', '.join(columns)})",
            fix=f"{hint}{fix}",
        ))
    return problems


def is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _blank_cells(path: str, column: str, values: Sequence[Any], what: str, fix: str) -> list[Problem]:
    blank = [i for i, v in enumerate(values) if is_blank(v)]
    if not blank:
        return []
    return [Problem(where=f"{path}: column '{column}'", message=f"{len(blank)} {what} at {_rows(path, blank)}",
                    fix=fix)]


def check_texts(path: str, column: str, values: Sequence[Any]) -> list[Problem]:
    if values and all(is_blank(v) for v in values):
        return [Problem(where=f"{path}: column '{column}'", message="every text is empty",
                        fix="check that data.text_column names the column that holds the text")]
    return _blank_cells(path, column, values, "empty text(s)", "fill in or delete these rows")


def check_labels_present(path: str, column: str, values: Sequence[Any]) -> list[Problem]:
    return _blank_cells(path, column, values, "missing label(s)", "label these rows or delete them")


def check_regression_targets(path: str, column: str, values: Sequence[Any]) -> list[Problem]:
    bad = []
    for i, value in enumerate(values):
        if is_blank(value):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            bad.append(i)
            continue
        if not math.isfinite(number):
            bad.append(i)
    if not bad:
        return []
    example = values[bad[0]]
    return [Problem(where=f"{path}: column '{column}'",
                    message=f"{len(bad)} non-numeric regression target(s), e.g. {example!r}, at {_rows(path, bad)}",
                    fix="regression needs numbers in the label column; for named classes use task: classification")]


def check_class_counts(path: str, column: str, counts: Counter, minimum: int) -> list[Problem]:
    problems = []
    if len(counts) < 2:
        only = next(iter(counts), None)
        problems.append(Problem(where=f"{path}: column '{column}'",
                                message=f"training data has a single class ({only!r})",
                                fix="classification needs at least two classes; check the label column"))
    rare = {label: n for label, n in counts.items() if n < minimum}
    if rare:
        listed = ", ".join(f"{label!r} ({n})" for label, n in sorted(rare.items(), key=lambda kv: kv[1]))
        problems.append(Problem(where=f"{path}: column '{column}'",
                                message=f"class(es) with fewer than {minimum} training examples: {listed}",
                                fix="add examples, merge the class into another, or lower data.min_examples_per_class"))
    return problems


def check_unseen_labels(path: str, column: str, values: Sequence[Any], known: set[str]) -> list[Problem]:
    unseen: dict[str, list[int]] = {}
    for i, value in enumerate(values):
        if not is_blank(value) and label_key(value) not in known:
            unseen.setdefault(label_key(value), []).append(i)
    problems = []
    for label, rows in unseen.items():
        problems.append(Problem(where=f"{path}: column '{column}'",
                                message=f"label {label!r} never occurs in the training data ({_rows(path, rows)})",
                                fix=f"fix the spelling (training labels: {', '.join(sorted(known))}) or add training "
                                    "examples of this class"))
    return problems


def text_key(text: Any, pair: Any = None) -> str:
    """Normalised identity of an example, for finding the same text in two splits."""
    def normal(value: Any) -> str:
        return "" if value is None else " ".join(str(value).lower().split())
    joined = normal(text) + "\x1f" + normal(pair)
    return hashlib.sha1(joined.encode("utf-8")).hexdigest()


def check_overlap(first: tuple[str, list[str]], second: tuple[str, list[str]]) -> list[Problem]:
    """Warn when the same text appears in two splits: evaluation would then overstate quality."""
    first_path, first_keys = first
    second_path, second_keys = second
    seen = set(first_keys)
    shared = [i for i, key in enumerate(second_keys) if key in seen]
    if not shared:
        return []
    return [Problem(where=second_path, severity="warning",
                    message=f"{len(shared)} text(s) also occur in {first_path} ({_rows(second_path, shared)}): "
                            "scores on this split will be optimistic",
                    fix="remove the duplicates from one of the two files")]


def label_key(value: Any) -> str:
    """Labels are compared as strings so 1, 1.0 and '1' from different file formats agree."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


# --- multilabel: several labels in one cell ------------------------------------------------------------

def detect_separator(values: Sequence[Any], separators: Sequence[str] = ("|", ";", ",")) -> str | None:
    """The first of `separators` found in any text cell, so 'a|b' and 'a;b' both work without configuration;
    None when no cell holds one (every row has at most one label, or labels come as lists)."""
    texts = [value for value in values if isinstance(value, str)]
    for separator in separators:
        if any(separator in text for text in texts):
            return separator
    return None


def split_labels(value: Any, separator: str | None) -> list[str]:
    """One cell's labels: a list (JSONL/Parquet) as it is, a text split on `separator`; blank means none."""
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif is_blank(value):
        return []
    elif isinstance(value, str) and separator:
        items = value.split(separator)
    else:
        items = [value]
    return [label_key(item) for item in items if not is_blank(item)]


def check_multilabel_train(path: str, column: str, rows: Sequence[list[str]], minimum: int) -> list[Problem]:
    """Training data must name at least one label; a label seen fewer than `minimum` times cannot be learnt."""
    counts = Counter(label for labels in rows for label in labels)
    where = f"{path}: column '{column}'"
    if not counts:
        return [Problem(where=where, message="no row of the training data has a label",
                        fix="check data.label_column and data.label_separator (labels like 'a|b', or a list per "
                            "row in JSONL/Parquet)")]
    rare = {label: n for label, n in counts.items() if n < minimum}
    if not rare:
        return []
    listed = ", ".join(f"{label!r} ({n})" for label, n in sorted(rare.items(), key=lambda kv: kv[1]))
    return [Problem(where=where, message=f"label(s) on fewer than {minimum} training rows: {listed}",
                    fix="add examples, drop the label, or lower data.min_examples_per_class")]


def check_unseen_multilabels(path: str, column: str, rows: Sequence[list[str]], known: set[str]) -> list[Problem]:
    """Labels in a validation/test file that training never saw, one problem per label with its rows."""
    unseen: dict[str, list[int]] = {}
    for i, labels in enumerate(rows):
        for label in labels:
            if label not in known:
                unseen.setdefault(label, []).append(i)
    return [Problem(where=f"{path}: column '{column}'",
                    message=f"label {label!r} never occurs in the training data ({_rows(path, indices)})",
                    fix=f"fix the spelling (training labels: {', '.join(sorted(known))}), check "
                        "data.label_separator, or add training examples of this label")
            for label, indices in unseen.items()]
