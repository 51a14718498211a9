"""Multimodal data: tables with typed feature columns, loaded, checked and split like text data.

Rows keep their position in the source file as the table index, and media paths resolve against the file's
folder, so an error can name the file and row and a split can be written back exactly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from tuneforge.data import validation as checks
from tuneforge.data.features import (
    EncodedRows,
    FeatureColumns,
    FeatureSpecFile,
    TabularPreprocessor,
    check_columns,
    encode_rows,
)
from tuneforge.data.loading import read_table
from tuneforge.data.prepare import sort_labels
from tuneforge.errors import DataError, Problem
from tuneforge.recipe import Recipe


@dataclass
class Split:
    """One split as a table whose index is the row's position in `source`, with `base_dir` for media paths."""

    frame: pd.DataFrame
    source: str
    base_dir: Path | None


@dataclass
class MultimodalData:
    train: Split
    validation: Split | None
    test: Split | None
    labels: list[str] | None
    warnings: list[Problem] = field(default_factory=list)

    def splits(self) -> list[tuple[str, Split]]:
        return [(role, split) for role, split in (("train", self.train), ("validation", self.validation),
                                                   ("test", self.test)) if split is not None]


def read_split(path: str | Path, role: str = "test", cache_dir: str | None = None) -> Split:
    """A data file as a pandas table (row positions as the index), media paths relative to its folder."""
    frame = read_table(path, role, cache_dir).to_pandas()
    frame.index = range(len(frame))
    return Split(frame, str(path), Path(path).resolve().parent)


def _carve(split: Split, fraction: float, stratify: list[str] | None, seed: int) -> tuple[Split, Split]:
    counts = Counter(stratify or [])
    held = int(np.ceil(fraction * len(split.frame)))
    usable = stratify is not None and min(counts.values()) >= 2 and len(counts) <= held <= len(split.frame) - \
        len(counts)
    keep, out = train_test_split(split.frame.index.to_numpy(), test_size=fraction, random_state=seed,
                                 stratify=stratify if usable else None)
    return (Split(split.frame.loc[sorted(keep)], split.source, split.base_dir),
            Split(split.frame.loc[sorted(out)], split.source, split.base_dir))


def prepare_multimodal_data(recipe: Recipe) -> MultimodalData:
    """Load, check and split the data files; raises `DataError` listing every problem found."""
    spec = recipe.data
    if not spec.train:
        raise DataError([Problem(where="data.train", message="no training file given",
                                 fix="set data.train in the recipe or pass --data FILE")])
    columns = FeatureColumns.from_recipe(recipe)
    loaded = {role: read_split(getattr(spec, role), role, spec.cache_dir)
              for role in ("train", "validation", "test") if getattr(spec, role)}
    problems: list[Problem] = []
    for split in loaded.values():
        try:
            check_columns(split.frame, [*columns.all(), spec.label_column], split.source)
        except DataError as error:
            problems += error.problems
    if problems:
        raise DataError(problems)
    classification = recipe.task == "classification"
    for split in loaded.values():
        values = split.frame[spec.label_column].tolist()
        problems += checks.check_labels_present(split.source, spec.label_column, values)
        if not classification:
            problems += checks.check_regression_targets(split.source, spec.label_column, values)
    labels = None
    if classification:
        train = loaded["train"]
        counts = Counter(checks.label_key(v) for v in train.frame[spec.label_column] if not checks.is_blank(v))
        problems += checks.check_class_counts(train.source, spec.label_column, counts, spec.min_examples_per_class)
        for role in ("validation", "test"):
            if role in loaded:
                problems += checks.check_unseen_labels(loaded[role].source, spec.label_column,
                                                       loaded[role].frame[spec.label_column].tolist(), set(counts))
        labels = sort_labels(set(counts))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise DataError(problems)

    def keys(split: Split) -> list[str] | None:
        if not (spec.stratify and classification):
            return None
        return [checks.label_key(v) for v in split.frame[spec.label_column]]

    train, validation, test = loaded["train"], loaded.get("validation"), loaded.get("test")
    if test is None and spec.test_split > 0:
        train, test = _carve(train, spec.test_split, keys(train), spec.split_seed)
    if validation is None and spec.validation_split > 0:
        carved_test = spec.test_split if "test" not in loaded and spec.test_split > 0 else 0.0
        train, validation = _carve(train, spec.validation_split / (1.0 - carved_test), keys(train),
                                   spec.split_seed)
    return MultimodalData(train, validation, test, labels, [p for p in problems if p.severity == "warning"])


def targets(split: Split, recipe: Recipe, labels: list[str] | None) -> list[Any]:
    values = split.frame[recipe.data.label_column]
    if labels is None:
        return [float(v) for v in values]
    index = {name: i for i, name in enumerate(labels)}
    return [index[checks.label_key(v)] for v in values]


class RowsDataset(torch.utils.data.Dataset):
    """Encoded rows for the Trainer; the collator reads images and audio when a batch is built."""

    def __init__(self, rows: EncodedRows) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows.item(index)


def check_multimodal_data(recipe: Recipe) -> tuple[dict[str, tuple[str, pd.DataFrame]], list[Problem]]:
    """`tuneforge validate` for a multimodal recipe: the checks training makes before it loads a model —
    columns, labels, numbers, media files — as ({role: (source, table)}, problems)."""
    try:
        data = prepare_multimodal_data(recipe)
    except DataError as error:
        return {}, list(error.problems)
    problems = list(data.warnings)
    columns = FeatureColumns.from_recipe(recipe)
    try:
        tabular = TabularPreprocessor.fit(data.train.frame, columns, data.train.source)
    except DataError as error:
        problems += error.problems
        tabular = TabularPreprocessor()  # the media files are still worth checking
    spec = FeatureSpecFile(columns, tabular, recipe.features.audio_max_seconds)
    for _, split in data.splits():
        try:
            encode_rows(split.frame, spec, "|", split.source, split.base_dir)
        except DataError as error:
            problems += error.problems
    return {role: (split.source, split.frame) for role, split in data.splits()}, problems
