"""Cross-lingual transfer: one model scored on the same task in several languages, one row per language.

`score_file` already computes everything for one file; this runs it per language, names the language the
texts look like (so a mislabelled file is noticed), and keeps the result as a table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuneforge.data.language import detect_language
from tuneforge.evaluate.scoring import score_file

COLUMNS = ("accuracy", "f1_macro")


def evaluate_languages(predictor: Any, files: Mapping[str, str | Path]) -> list[dict[str, Any]]:
    """{language: labelled file} -> one row per language with its size, detected language and metrics."""
    rows = []
    for language, path in files.items():
        metrics, scored = score_file(predictor, path)
        guess = detect_language([row["text"] for row in scored[:300]])  # the file's texts, as scored
        rows.append({"language": language, "file": str(path), "rows": len(scored),
                     "detected_language": guess.code, **{name: metrics.get(name) for name in COLUMNS},
                     "metrics": metrics})
    return rows
