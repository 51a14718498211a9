"""Data for token classification: CoNLL files or tables with token and tag lists, checked and split.

Sequence tasks keep one row per text with a label column; here a row is a sentence with a list of words and a
list of tags of the same length, so loading and checks differ, while the result has the same shape
(`PreparedData`) and the run directory the same contract.
"""

from __future__ import annotations

from typing import Any

import datasets

from tuneforge.data.conll import TAG_FIELD, TOKEN_FIELD, Sentences, is_conll, read_conll, sort_tags, tag_problems
from tuneforge.data.loading import read_table
from tuneforge.data.prepare import PreparedData
from tuneforge.errors import DataError, Problem
from tuneforge.recipe import Recipe

ROLES = ("train", "validation", "test")


def _as_list(value: Any) -> list[str] | None:
    """A cell holding a list of strings, or one whitespace-separated string."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    return None


def _table_sentences(path: str, role: str, recipe: Recipe, problems: list[Problem]) -> Sentences | None:
    """Rows of a JSONL/CSV/Parquet file: the recipe's text/label columns, or `tokens`/`tags` when those are
    what the file has (the recipe defaults name sequence-task columns)."""
    table = read_table(path, role, recipe.data.cache_dir)
    spec = recipe.data
    words_column = spec.text_column if spec.text_column in table.column_names else TOKEN_FIELD
    tags_column = spec.label_column if spec.label_column in table.column_names else TAG_FIELD
    missing = [c for c in (words_column, tags_column) if c not in table.column_names]
    if missing:
        problems.append(Problem(where=path, message=f"no column {' or '.join(missing)} (the file has: "
                                                    f"{', '.join(table.column_names)})",
                                fix="name the word-list column with data.text_column and the tag-list column with "
                                    "data.label_column, or use a CoNLL file (token and tag per line)"))
        return None
    sentences = Sentences()
    for index, (words, tags) in enumerate(zip(table[words_column], table[tags_column], strict=True)):
        words, tags = _as_list(words), _as_list(tags)
        where = f"{path}: row {index + 1}"
        if not words or tags is None or len(words) != len(tags):
            if len([p for p in problems if p.where.startswith(path)]) < 20:
                problems.append(Problem(where=where, message=f"needs as many tags as words (got {len(words or [])} "
                                                             f"words, {len(tags or [])} tags)",
                                        fix="give one tag per word, e.g. tokens: [John, lives] tags: [B-PER, O]"))
            continue
        sentences.tokens.append(words)
        sentences.tags.append(tags)
        sentences.lines.append(index + 1)
    return sentences


def load_sentences(path: str, role: str, recipe: Recipe, problems: list[Problem]) -> Sentences | None:
    """Sentences of a CoNLL file or a table; problems are appended to `problems`, None when unreadable."""
    try:
        if is_conll(path):
            return read_conll(path)
        return _table_sentences(path, role, recipe, problems)
    except DataError as error:
        problems.extend(error.problems)
        return None


def _dataset(sentences: Sentences) -> datasets.Dataset:
    return datasets.Dataset.from_dict({TOKEN_FIELD: sentences.tokens, TAG_FIELD: sentences.tags})


def _overlap(named: dict[str, tuple[str, Sentences]]) -> list[Problem]:
    """Sentences shared between training and an evaluation split inflate its scores: warned, not refused."""
    if "train" not in named:
        return []
    seen = {tuple(words) for words in named["train"][1].tokens}
    warnings = []
    for role in ("validation", "test"):
        if role in named:
            path, sentences = named[role]
            shared = sum(tuple(words) in seen for words in sentences.tokens)
            if shared:
                warnings.append(Problem(where=path, severity="warning",
                                        message=f"{shared} sentence(s) also occur in the training file: scores "
                                                "on this split will be optimistic",
                                        fix="remove the duplicates from one of the two files"))
    return warnings


def prepare_token_data(recipe: Recipe) -> PreparedData:
    """Load, check (every problem at once) and split sentences; tags stay strings, ids come with the model."""
    spec = recipe.data
    if not spec.train:
        raise DataError([Problem(where="data.train", message="no training file given",
                                 fix="set data.train in the recipe or pass --data FILE")])
    problems: list[Problem] = []
    named: dict[str, tuple[str, Sentences]] = {}
    for role in ROLES:
        path = getattr(spec, role)
        if path:
            sentences = load_sentences(path, role, recipe, problems)
            if sentences is not None:
                named[role] = (path, sentences)
    if "train" in named:
        path, train = named["train"]
        problems += tag_problems(path, train)
        known = {tag for row in train.tags for tag in row}
        for role in ("validation", "test"):
            if role in named:
                problems += tag_problems(named[role][0], named[role][1], known)
    if any(p.severity == "error" for p in problems):
        raise DataError(problems)
    warnings = [p for p in problems if p.severity == "warning"] + _overlap(named)

    splits = {role: _dataset(sentences) for role, (_, sentences) in named.items()}
    train = splits["train"]
    if "test" not in splits and spec.test_split > 0:
        carved = train.train_test_split(test_size=spec.test_split, seed=spec.split_seed)
        train, splits["test"] = carved["train"], carved["test"]
    if "validation" not in splits and spec.validation_split > 0:
        share = spec.validation_split / (1.0 - (spec.test_split if "test" not in named else 0.0))
        carved = train.train_test_split(test_size=share, seed=spec.split_seed)
        train, splits["validation"] = carved["train"], carved["test"]
    labels = sort_tags({tag for row in named["train"][1].tags for tag in row})  # the whole file, before carving
    return PreparedData(train=train, validation=splits.get("validation"), test=splits.get("test"), labels=labels,
                        warnings=warnings, sources={role: path for role, (path, _) in named.items()})
