"""Translate a labelled table: the data side of translate-train and translate-test.

Translate-train turns the training file into the target language (labels kept) so a model learns from text
like the text it will be scored on; translate-test turns target-language test data into the training
language. Both are "translate the text columns of a file", so one function serves them, through the same
engines as back-translation: Apertium offline, or a Transformers translation model the user names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tuneforge import artifacts
from tuneforge.augment.back_translation import Apertium, TransformersTranslator
from tuneforge.data.loading import read_table
from tuneforge.errors import DataError, Problem


@dataclass
class TranslationResult:
    rows: int
    translated_cells: int
    engine: str
    output: Path


def translator(source: str, target: str, model: str | None = None, batch_size: int = 64,
               timeout: float = 120.0) -> tuple[Callable[[list[str]], list[str]], str]:
    """A one-way translate function and a description of the engine; checked before any work is done."""
    if model:
        engine = TransformersTranslator(model, model, batch_size=min(batch_size, 16))
        engine._load(model)
        return engine.translate, f"transformers:{model}"
    apertium = Apertium(source, target, batch_size, timeout)
    apertium.check()
    return apertium.translate, f"apertium:{source}-{target}"


def translate_table(path: str | Path, text_columns: Sequence[str], output: str | Path, source: str, target: str,
                    model: str | None = None, keep_original: bool = False) -> TranslationResult:
    """Write `output` (CSV) with the text columns translated and every other column (labels, ids) unchanged.

    `keep_original` adds `<column>_original` beside each translated column, for checking the translation.
    """
    table = read_table(path).to_pandas()
    missing = [column for column in text_columns if column not in table.columns]
    if missing:
        raise DataError([Problem(where=str(path), message=f"no column {', '.join(repr(c) for c in missing)}",
                                 fix=f"use --text-column with one of {', '.join(map(str, table.columns))}")])
    translate, engine = translator(source, target, model)
    cells = 0
    for column in text_columns:
        values = table[column].tolist()
        present = [i for i, value in enumerate(values) if isinstance(value, str) and value.strip()]
        translated = translate([values[i] for i in present])
        if keep_original:
            table[f"{column}_original"] = values
        for index, text in zip(present, translated, strict=True):
            values[index] = text
        table[column] = pd.Series(values, index=table.index)
        cells += len(present)
    target_path = Path(output)
    artifacts.write_with(target_path, lambda temporary: table.to_csv(temporary, index=False))
    return TranslationResult(rows=len(table), translated_cells=cells, engine=engine, output=target_path)
