"""Predictions as a table: one row per text, the label/score, and a probability column per class."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd


def predictions_frame(texts: Sequence[Any], rows: Sequence[dict[str, Any]],
                      truths: Sequence[Any] | None = None) -> pd.DataFrame:
    records = []
    for index, (text, row) in enumerate(zip(texts, rows, strict=True)):
        record: dict[str, Any] = {"text": text}
        if truths is not None:
            record["true"] = truths[index]
        if "label" in row:
            record["label"] = row["label"]
        record["score"] = row["score"]
        for name, probability in (row.get("probabilities") or {}).items():
            record[f"prob_{name}"] = probability
        records.append(record)
    return pd.DataFrame.from_records(records)
