"""The annotation loop around a run: choose pool texts to label (`tuneforge annotate select`) and bring the
labelled rows back into the training data with checks (`tuneforge annotate merge`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuneforge import artifacts
from tuneforge.data.loading import read_table, row_label
from tuneforge.data.validation import check_columns, is_blank, label_key, text_key
from tuneforge.errors import DataError, Problem, TuneforgeError
from tuneforge.lifecycle.active_learning import Selection, select

SCORE_COLUMN = "score"
PREDICTED_COLUMN = "predicted"
# Columns `select` adds for the annotator's benefit; `merge` leaves them out of the training file.
HELPER_COLUMNS = (SCORE_COLUMN, PREDICTED_COLUMN)
MAX_LABELLED_EMBEDDED = 2000  # labelled rows embedded as diversity's starting centres (a sample beyond this)


def read_frame(path: str | Path) -> pd.DataFrame:
    """A table as strings, blank cells as None, with the loader's errors (missing file, bad format)."""
    frame = read_table(path, "train").to_pandas()
    return frame.astype(object).where(frame.notna(), None)


def write_frame(path: str | Path, frame: pd.DataFrame) -> None:
    """CSV, TSV or JSON lines by suffix, atomically."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix in (".jsonl", ".json"):
        artifacts.write_text(target, frame.to_json(orient="records", lines=True, force_ascii=False))
    else:
        separator = "\t" if suffix in (".tsv", ".tab") else ","
        artifacts.write_with(target, lambda temporary: frame.to_csv(temporary, index=False, sep=separator))


@dataclass
class SelectionResult:
    """The rows to label (pool columns, an empty label column, the score and the model's guess)."""

    frame: pd.DataFrame
    selection: Selection
    pool_size: int
    duplicates_dropped: int


def select_for_labelling(predictor: Any, pool: str | Path, budget: int, strategy: str = "entropy",
                         text_column: str | None = None, seed: int = 0) -> SelectionResult:
    """Score the pool with the run's model and return the `budget` rows most worth labelling, best first.
    Repeated pool texts count once; for `diversity`, the run's training texts are the centres to move away from."""
    if predictor.labels is None:
        raise TuneforgeError(f"active learning needs a single-label classification run; this is a "
                             f"{predictor.recipe.task} run", fix="use a run trained with task: classification")
    spec = predictor.recipe.data
    column = text_column or spec.text_column
    frame = read_frame(pool)
    problems = check_columns(str(pool), list(frame.columns), [column],
                             fix="pass --text-column, or use the run's text column name in the pool file")
    if problems:
        raise DataError(problems)
    frame = frame[[not is_blank(text) for text in frame[column]]]
    keys = [text_key(text) for text in frame[column]]
    unique = frame[~pd.Series(keys, index=frame.index).duplicated().to_numpy()].reset_index(drop=True)
    if unique.empty:
        raise DataError([Problem(where=f"{pool}: column '{column}'", message="the pool has no text to label",
                                 fix="pass a file of unlabelled texts")])
    texts = [str(text) for text in unique[column]]
    probabilities = predictor.probabilities(texts)
    embeddings = labelled = None
    if strategy == "diversity":
        from tuneforge.lifecycle.embeddings import sentence_embeddings

        embeddings = sentence_embeddings(predictor, texts)
        labelled = sentence_embeddings(predictor, _training_texts(predictor.recipe, seed))
    chosen = select(probabilities, budget, strategy, embeddings, labelled, seed)
    out = unique.iloc[chosen.indices].copy()
    out[spec.label_column] = ""
    out[SCORE_COLUMN] = np.round(chosen.scores, 6)
    out[PREDICTED_COLUMN] = [predictor.labels[int(i)] for i in probabilities[chosen.indices].argmax(axis=1)]
    return SelectionResult(out.reset_index(drop=True), chosen, len(frame), len(frame) - len(unique))


def _training_texts(recipe: Any, seed: int) -> list[str]:
    source = recipe.data.train
    if not source or not Path(source).exists():
        return []
    texts = [str(t) for t in read_frame(source)[recipe.data.text_column] if not is_blank(t)]
    if len(texts) > MAX_LABELLED_EMBEDDED:
        keep = np.random.default_rng(seed).choice(len(texts), MAX_LABELLED_EMBEDDED, replace=False)
        texts = [texts[i] for i in sorted(keep)]
    return texts


@dataclass
class MergeResult:
    """The merged table and what happened to each labelled row."""

    frame: pd.DataFrame
    added: int
    duplicates: list[str] = field(default_factory=list)  # where each duplicate is, e.g. "row 3 (line 4)"
    warnings: list[Problem] = field(default_factory=list)


def merge_labelled(labelled: str | Path, into: str | Path, text_column: str = "text", label_column: str = "label",
                   allowed: list[str] | None = None, keep_duplicates: bool = False) -> MergeResult:
    """Append the labelled rows to the existing data after checking that every row has a label from the known
    set (`allowed`, else the labels already in `into`); rows whose text is already in `into` (or earlier in
    `labelled`) are reported and left out unless `keep_duplicates`."""
    existing, new = read_frame(into), read_frame(labelled)
    problems = check_columns(str(into), list(existing.columns), [text_column, label_column],
                             fix="pass --text-column / --label-column (or --run to take them from a run)")
    problems += check_columns(str(labelled), list(new.columns), [text_column, label_column],
                              fix="label the file that `tuneforge annotate select` wrote, keeping its columns")
    if problems:
        raise DataError(problems)
    known = sorted({label_key(v) for v in existing[label_column] if not is_blank(v)}) if allowed is None \
        else [label_key(v) for v in allowed]
    if not known:
        raise DataError([Problem(where=f"{into}: column '{label_column}'", message="no row has a label, so the "
                                 "allowed labels are unknown", fix="pass --labels a,b,c (or --run RUN)")])
    name = str(labelled)
    for index, value in enumerate(new[label_column]):
        where = f"{name}: {row_label(name, index)}, column '{label_column}'"
        if is_blank(value):
            problems.append(Problem(where=where, message="no label", fix=f"label it with one of: {', '.join(known)}; "
                                    "or delete the row"))
        elif label_key(value) not in known:
            problems.append(Problem(where=where, message=f"label {label_key(value)!r} is not a known label",
                                    fix=f"use one of: {', '.join(known)}"))
        if is_blank(new[text_column].iloc[index]):
            problems.append(Problem(where=f"{name}: {row_label(name, index)}, column '{text_column}'",
                                    message="empty text", fix="fill it in or delete the row"))
    if problems:
        raise DataError(problems)
    seen = {text_key(t) for t in existing[text_column]}
    keep, duplicates = [], []
    for index, text in enumerate(new[text_column]):
        key = text_key(text)
        if key in seen:
            duplicates.append(row_label(name, index))
            if not keep_duplicates:
                continue
        seen.add(key)
        keep.append(index)
    rows = new.iloc[keep].copy()
    rows[label_column] = [label_key(v) for v in rows[label_column]]
    for column in existing.columns:
        if column not in rows.columns:
            rows[column] = None
    extra = [c for c in rows.columns if c not in existing.columns and c not in HELPER_COLUMNS]
    merged = pd.concat([existing, rows[list(existing.columns) + extra]], ignore_index=True)
    warnings = []
    if duplicates:
        action = "kept (--keep-duplicates)" if keep_duplicates else "left out"
        shown = ", ".join(duplicates[:5]) + (f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else "")
        warnings.append(Problem(where=name, severity="warning",
                                message=f"{len(duplicates)} labelled text(s) already in {into} or earlier in this file "
                                        f"({shown}): {action}",
                                fix="nothing to do unless the new label should replace the old one"))
    return MergeResult(merged, len(keep), duplicates, warnings)
