"""Read a table from disk into a `datasets.Dataset`, whatever format the user has.

Loading goes through `datasets` so files are converted to Arrow once and cached by content; later steps
(label encoding, tokenisation) are then cached by fingerprint and not redone on the next run.
"""

from __future__ import annotations

from pathlib import Path

import datasets

from tuneforge.errors import DataError, Problem

# Only a truly empty cell is missing: a class called "None" or "NA" must survive a CSV as it does a JSONL.
_CSV = {"keep_default_na": False, "na_values": [""]}
FORMATS = {
    ".csv": ("csv", dict(_CSV)),
    ".tsv": ("csv", {"delimiter": "\t", **_CSV}),
    ".tab": ("csv", {"delimiter": "\t", **_CSV}),
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".parquet": ("parquet", {}),
    ".pq": ("parquet", {}),
}


def row_label(path: str | Path, index: int) -> str:
    """How a person finds row `index` (0-based) in the file: CSV/TSV have a header line, JSONL does not."""
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".tsv", ".tab"):
        return f"row {index + 1} (line {index + 2})"
    if suffix in (".jsonl", ".json"):
        return f"line {index + 1}"
    return f"row {index + 1}"


def read_table(path: str | Path, split_hint: str = "train", cache_dir: str | None = None) -> datasets.Dataset:
    """Load one split from a file or a `datasets` save folder, with errors that name the file and the fix."""
    path = Path(path)
    if not path.exists():
        raise DataError([Problem(where=str(path), message="file not found",
                                 fix="check the path in the recipe (relative paths are relative to the recipe file)")])
    if path.is_dir():
        return _read_saved_dataset(path, split_hint)
    builder, options = FORMATS.get(path.suffix.lower(), (None, {}))
    if builder is None:
        raise DataError([Problem(where=str(path), message=f"unknown file type '{path.suffix}'",
                                 fix=f"use one of {', '.join(sorted(FORMATS))}, or a `datasets` save folder")])
    if path.stat().st_size == 0:
        raise DataError([Problem(where=str(path), message="the file is empty",
                                 fix="point the recipe at a file with rows")])
    try:
        loaded = datasets.load_dataset(
            builder, data_files={"data": str(path)}, split="data", cache_dir=cache_dir, **options
        )
    except Exception as error:  # datasets wraps parser errors in many types; all mean "this file can't be read"
        if builder == "csv" and _has_header_only(path):
            raise DataError([Problem(where=str(path), message="the file has a header but no rows",
                                     fix="add data rows")]) from None
        cause = error.__cause__ or error
        raise DataError([Problem(where=str(path), message=f"could not be read as {builder.upper()}: {cause}",
                                 fix="check the delimiter, quoting and that every row has the header's columns")]) \
            from None
    if len(loaded) == 0:
        raise DataError([Problem(where=str(path), message="the file has a header but no rows",
                                 fix="add data rows")])
    return loaded


def _has_header_only(path: Path) -> bool:
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        return sum(1 for line in handle if line.strip()) <= 1


def _read_saved_dataset(path: Path, split_hint: str) -> datasets.Dataset:
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as error:
        raise DataError([Problem(where=str(path), message=f"is a folder but not a `datasets` save folder ({error})",
                                 fix="pass a file, or a folder written by Dataset.save_to_disk")]) from None
    if isinstance(loaded, datasets.DatasetDict):
        aliases = {"validation": ("validation", "valid", "val", "dev"), "train": ("train",), "test": ("test",)}
        for name in aliases.get(split_hint, (split_hint,)):
            if name in loaded:
                return loaded[name]
        raise DataError([Problem(where=str(path), message=f"holds splits {list(loaded)} but no '{split_hint}' split",
                                 fix=f"point the recipe at {path}/<split> or rename a split to '{split_hint}'")])
    return loaded
