"""Files in and out of prediction: the texts of an unlabelled file, and predictions as a table (one row per
text, the label/score, and a probability column per class)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd


def read_texts(path: str | Path, text_column: str, pair_column: str | None = None, limit: int | None = None
               ) -> tuple[list[str], list[str] | None]:
    """The texts (and pairs) of a file, the first `limit` rows when given; a missing column is a `DataError`
    naming the file and its columns. Empty cells read as empty texts rather than failing mid-prediction."""
    from tuneforge.data import validation as checks
    from tuneforge.data.loading import read_table
    from tuneforge.errors import DataError

    table = read_table(path, "test")
    needed = [text_column] + ([pair_column] if pair_column else [])
    problems = checks.check_columns(str(path), table.column_names, needed)
    if problems:
        raise DataError(problems)
    if limit is not None:
        table = table.select(range(min(limit, len(table))))
    texts = ["" if value is None else str(value) for value in table[text_column]]
    pairs = ["" if value is None else str(value) for value in table[pair_column]] if pair_column else None
    return texts, pairs


def predictions_frame(texts: Sequence[Any], rows: Sequence[dict[str, Any]],
                      truths: Sequence[Any] | None = None) -> pd.DataFrame:
    records = []
    for index, (text, row) in enumerate(zip(texts, rows, strict=True)):
        record: dict[str, Any] = {"text": text}
        if truths is not None:
            record["true"] = truths[index]
        if "label" in row:
            record["label"] = row["label"]
        if "labels" in row:  # multilabel: every predicted label, "|"-joined like the training files
            record["labels"] = "|".join(row["labels"])
        if "score" in row:
            record["score"] = row["score"]
        if "generated" in row:  # seq2seq, causal-lm: the generated text
            record["generated"] = row["generated"]
        for name, probability in (row.get("probabilities") or {}).items():
            record[f"prob_{name}"] = probability
        records.append(record)
    return pd.DataFrame.from_records(records)
