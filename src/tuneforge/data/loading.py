"""Read a table from disk into a `datasets.Dataset`, whatever format the user has.

Loading goes through `datasets` so files are converted to Arrow once and cached by content; later steps
(label encoding, tokenisation) are then cached by fingerprint and not redone on the next run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

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


CSV_FIX = "check the delimiter, quoting and that every row has the header's columns"
JSON_FIX = ("each line of a JSONL file is one JSON object, e.g. {\"text\": \"...\", \"label\": \"...\"}: check the "
            "quotes, commas and braces there (a .json file holds one JSON document, or JSON lines)")
ENCODING_FIX = ("save the file as UTF-8 (most editors offer it under 'Save as'; `iconv -f latin1 -t utf-8 IN > OUT` "
                "converts a Latin-1 file)")
PARQUET_FIX = "write the file again (e.g. DataFrame.to_parquet); it is truncated or not Parquet"
_ARROW_ROW = re.compile(r"\bin row (\d+)\b")


def row_label(path: str | Path, index: int) -> str:
    """How a person finds row `index` (0-based) in the file: CSV/TSV have a header line; a JSONL row is the line
    it is on, counted as an editor counts lines (blank lines, which hold no row, included)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".tsv", ".tab"):
        return f"row {index + 1} (line {index + 2})"
    if suffix in (".jsonl", ".json"):
        return f"line {_json_line(path, index)}"
    return f"row {index + 1}"


def _json_line(path: str | Path, index: int) -> int:
    """The 1-based line of row `index` of a JSON-lines file (rows skip blank lines); index + 1 when unknown."""
    try:
        stat = Path(path).stat()
    except OSError:
        return index + 1
    lines = _row_lines(str(path), stat.st_mtime_ns, stat.st_size)
    return lines[index] if 0 <= index < len(lines) else index + 1


@lru_cache(maxsize=32)
def _row_lines(path: str, _mtime: int, _size: int) -> tuple[int, ...]:
    """Line numbers of the non-blank lines of a file; the change time and size make a rewritten file a new key."""
    with open(path, "rb") as handle:
        return tuple(number for number, line in enumerate(handle, start=1) if line.strip())


def _encoding_problem(path: Path) -> Problem | None:
    """The first line that is not UTF-8, with its column: the parsers only say a byte offset into a block."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                column = len(line[:error.start].decode("utf-8", errors="replace")) + 1
                return Problem(where=f"{path}: line {number}, column {column}",
                               message=f"is not UTF-8 text (byte 0x{line[error.start]:02x} cannot start or continue "
                                       "a UTF-8 character)", fix=ENCODING_FIX)
    return None


def _json_problem(path: Path) -> Problem | None:
    """The first line (and column) a JSON reader stops at, or None when every line parses."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            json.loads(text)  # one JSON document (an array of rows, or an object of columns)
            return None
        except json.JSONDecodeError as error:
            first = next((line for line in text.splitlines() if line.strip()), "")
            if not _is_object(first):  # not JSON lines either: the document's own error is the one to show
                return Problem(where=f"{path}: line {error.lineno}, column {error.colno}",
                               message=f"is not valid JSON ({error.msg})", fix=JSON_FIX)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            return Problem(where=f"{path}: line {number}, column {error.colno}",
                           message=f"is not valid JSON ({error.msg})", fix=JSON_FIX)
        if not isinstance(value, dict):
            return Problem(where=f"{path}: line {number}",
                           message=f"holds {_json_kind(value)}, not a JSON object with the columns as keys",
                           fix=JSON_FIX)
    return None


def _check_json_start(path: Path) -> None:
    """Refuse a JSON file that does not open with an object or an array before pyarrow reads it: its JSON
    reader crashes the whole process (a segmentation fault, no exception) on lines that are all `null`."""
    with path.open("rb") as handle:
        for raw in handle:
            line = raw.strip()
            if line:
                if line[:1] in (b"{", b"["):
                    return
                break
        else:
            raise DataError([Problem(where=str(path), message="the file holds only blank lines",
                                     fix="point the recipe at a file with rows")])
    try:
        found = _encoding_problem(path) or _json_problem(path)
    except (OSError, UnicodeDecodeError):
        found = None
    raise DataError([found or Problem(where=f"{path}: line 1", message="does not start with a JSON object",
                                      fix=JSON_FIX)])


def _is_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string" if isinstance(value, str) else "a JSON list"


def _unreadable(path: Path, builder: str, error: Exception) -> Problem:
    """Why a file could not be loaded, at the line (and column) a person can open, with advice for its format."""
    cause = error.__cause__ or error
    if isinstance(cause, UnicodeDecodeError) or "utf-8" in str(cause).lower() or "utf8" in str(cause).lower():
        found = _encoding_problem(path)
        if found is not None:
            return found
    if builder == "json":
        found = _encoding_problem(path) or _json_problem(path)
        if found is not None:
            return found
        # A reader error on lines that each parse (e.g. a column whose type changes): arrow counts rows from 0.
        message = _ARROW_ROW.sub(lambda match: f"on {row_label(path, int(match[1]))}", str(cause))
        return Problem(where=str(path), message=f"could not be read as JSON: {message}",
                       fix="give every row the same columns, each with one type (e.g. label always a string)")
    if builder == "parquet":
        return Problem(where=str(path), message=f"could not be read as Parquet: {cause}", fix=PARQUET_FIX)
    return Problem(where=str(path), message=f"could not be read as {builder.upper()}: {cause}", fix=CSV_FIX)


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
    if builder == "json":
        _check_json_start(path)
    try:
        loaded = datasets.load_dataset(
            builder, data_files={"data": str(path)}, split="data", cache_dir=cache_dir, **options
        )
    except Exception as error:  # datasets wraps parser errors in many types; all mean "this file can't be read"
        if builder == "csv" and _has_header_only(path):
            raise DataError([Problem(where=str(path), message="the file has a header but no rows",
                                     fix="add data rows")]) from None
        raise DataError([_unreadable(path, builder, error)]) from None
    if len(loaded) == 0:
        raise DataError([Problem(where=str(path), message="the file has a header but no rows",
                                 fix="add data rows")])
    for column in loaded.column_names:
        if _duplicate_keys(loaded.data.schema.field(column).type) or _nul_keys(loaded.features[column]):
            raise DataError([Problem(where=f"{path}: column '{column}'",
                                     message="holds JSON objects with keys that repeat or contain a NUL "
                                             "character, which no reader can turn into rows",
                                     fix="give each object distinct keys, or keep this column out of the file")])
    return loaded


def _nul_keys(feature: Any) -> bool:
    """Whether a nested key holds a NUL character: Arrow cuts the name there, and reading the column fails."""
    if isinstance(feature, dict):
        return any("\x00" in str(key) or _nul_keys(value) for key, value in feature.items())
    if isinstance(feature, (list, tuple)):
        return any(_nul_keys(item) for item in feature)
    inner = getattr(feature, "feature", None)
    return inner is not None and _nul_keys(inner)


def _duplicate_keys(kind: Any) -> bool:
    """Whether an Arrow type nests a struct with two fields of one name: reading such a column raises."""
    import pyarrow as pa

    if pa.types.is_struct(kind):
        names = [kind.field(index).name for index in range(kind.num_fields)]
        return len(set(names)) < len(names) or any(_duplicate_keys(kind.field(i).type) for i in range(len(names)))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _duplicate_keys(kind.value_type)
    return False


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


def read_named_splits(spec: Any, problems: list[Problem], roles: tuple[str, ...] = ("train", "validation", "test")
                      ) -> Iterator[tuple[str, str, datasets.Dataset]]:
    """(role, path, table) of every split the data section names; a file that cannot be read adds its problems
    to `problems` and is skipped, so the caller reports every file's problems at once."""
    for role in roles:
        path = getattr(spec, role)
        if not path:
            continue
        try:
            table = read_table(path, role, spec.cache_dir)
        except DataError as error:
            problems += error.problems
            continue
        yield role, path, table
