"""The data card shows what cleaning did and the rare-class advice, from data.json alone."""

from __future__ import annotations

from tuneforge.report.blocks import Callout, Table
from tuneforge.report.data_cleaning import cleaning_blocks, imbalance_blocks

DATA = {
    "cleaning": {"train": {"rows_before": 100, "rows_after": 97, "notes": ["length_outliers: skipped"],
                           "steps": {"duplicates": {"drop": 2}, "pii": {"mask": 1}, "toxicity": {"flag": 0}}}},
    "imbalance": {"class_counts": {"a": 90, "b": 10}, "rare_classes": ["b"], "imbalance_ratio": 9.0,
                  "advice": ["oversample the rare classes (imbalance.oversample: true)"]},
}


def test_cleaning_table_counts_each_step() -> None:
    blocks = cleaning_blocks(DATA)
    [table] = [b for b in blocks if isinstance(b, Table)]
    rows = {row[1].text: [cell.text for cell in row[2:]] for row in table.rows}
    assert rows == {"Duplicates": ["2", "—", "—"], "Pii": ["—", "—", "1"], "Toxicity": ["—", "0", "—"]}
    texts = [b.text for b in blocks if isinstance(b, Callout)]
    assert "Train: 100 rows before cleaning, 97 after." in texts and "length_outliers: skipped" in texts


def test_imbalance_callout_and_nothing_without_data() -> None:
    [callout] = imbalance_blocks(DATA)
    assert callout.tone == "warning" and "b (10 rows)" in callout.text and "oversample" in callout.text
    assert cleaning_blocks({}) == [] and imbalance_blocks({"imbalance": {"rare_classes": []}}) == []
