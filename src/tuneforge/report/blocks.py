"""The report's building blocks, and a generic renderer that turns any JSON value into them.

Calibration, error analysis, fairness and explanations are written by other steps whose schemas still move;
the report must show whatever they wrote without knowing its exact shape. `to_blocks` therefore renders any
JSON value (scalars as key/value pairs, lists of records and dicts of records as tables, deeper nesting as
sub-groups) so an unknown or changed key degrades to a plain table instead of a crash or a silent gap.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_ROWS = 50
MAX_TEXT = 300
MAX_DEPTH = 3

ACRONYMS = {
    "ece": "ECE", "mce": "MCE", "f1": "F1", "mse": "MSE", "rmse": "RMSE", "mae": "MAE", "r2": "R²", "auc": "AUC",
    "roc": "ROC", "id": "ID", "ids": "IDs", "p50": "p50", "p95": "p95", "p99": "p99", "tpr": "TPR", "fpr": "FPR",
    "fnr": "FNR", "tnr": "TNR", "ig": "IG", "lime": "LIME", "shap": "SHAP", "gpu": "GPU", "cpu": "CPU",
    "lr": "LR", "nll": "NLL",
}


# ----------------------------------------------------------------------------------------------- blocks


@dataclass
class Heading:
    text: str
    kind: str = "heading"


@dataclass
class Paragraph:
    text: str
    kind: str = "text"


@dataclass
class Bullets:
    items: list[str]
    kind: str = "list"


@dataclass
class Callout:
    """A boxed message: `tone` is info, warning, danger, ok, hint (a "not computed" pointer) or na (not applicable)."""

    text: str
    tone: str = "info"
    command: str | None = None
    kind: str = "callout"


@dataclass
class KeyValues:
    items: list[tuple[str, str]]
    kind: str = "kv"


@dataclass
class Stat:
    label: str
    value: str
    detail: str = ""
    tone: str = ""


@dataclass
class Stats:
    items: list[Stat]
    kind: str = "stats"


@dataclass
class Cell:
    text: str
    bar: float | None = None  # 0..1: an inline bar behind the value
    tone: str = ""  # good, bad, muted, strong
    heat: float | None = None  # 0..1: background shade (confusion-matrix style)


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    numeric: list[bool] = field(default_factory=list)
    caption: str = ""
    more: int = 0  # rows left out to keep the page readable
    kind: str = "table"

    def __post_init__(self) -> None:
        if len(self.numeric) != len(self.columns):
            self.numeric = [_column_is_numeric(self.rows, i) for i in range(len(self.columns))]


@dataclass
class Figure:
    uri: str  # a data:image/png;base64 URI, never a link
    caption: str = ""
    wide: bool = False
    kind: str = "figure"


@dataclass
class Gallery:
    figures: list[Figure]
    kind: str = "gallery"


@dataclass
class Columns:
    """Blocks side by side on wide screens (e.g. a table beside its chart)."""

    left: list[Any]
    right: list[Any]
    kind: str = "columns"


@dataclass
class Code:
    text: str
    kind: str = "code"


@dataclass
class Markup:
    """HTML built by the report itself (escaped pieces) or sanitised, so it is safe to insert as is."""

    html: str
    kind: str = "html"


@dataclass
class Details:
    summary: str
    blocks: list[Any]
    open: bool = False
    kind: str = "details"


@dataclass
class Group:
    title: str
    blocks: list[Any]
    kind: str = "group"


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Any] = field(default_factory=list)
    hint: Callout | None = None
    lead: str = ""


# ----------------------------------------------------------------------------------------------- formatting


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def as_float(value: Any) -> float | None:
    """A finite float, or None: JSON written by other steps may hold nulls, NaN or strings where numbers go."""
    if is_number(value):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def is_inline(value: Any) -> bool:
    """Short enough for one key/value line: a scalar, or a short list of scalars such as label names."""
    return is_scalar(value) or (isinstance(value, list) and len(value) <= 12 and all(is_scalar(v) for v in value))


def fmt_number(value: float | int, digits: int = 4, fixed: bool = False) -> str:
    """A number for reading: `fixed` keeps every decimal (metric columns line up), otherwise zeros are trimmed."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if fixed and abs(value) < 1000:
        return f"{value:.{digits}f}"
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.1f}".removesuffix(".0")
    if abs(value) < 10 ** -(digits - 1):
        return f"{value:.2e}"
    return f"{value:.{digits}f}".rstrip("0").rstrip(".")


def fmt_metric(value: Any) -> str:
    """Metric values with a fixed number of decimals, so a column of scores reads at a glance."""
    if is_number(value):
        return fmt_number(value, fixed=True)
    return fmt_value(value)


def truncate(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def fmt_value(value: Any, limit: int = MAX_TEXT) -> str:
    """Any JSON value as one short line of text."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if is_number(value):
        return fmt_number(value)
    if isinstance(value, str):
        return truncate(value, limit)
    if isinstance(value, (list, tuple)) and all(is_scalar(v) for v in value):
        return truncate(", ".join(fmt_value(v, limit) for v in value), limit)
    try:
        return truncate(json.dumps(value, ensure_ascii=False, default=str), limit)
    except (TypeError, ValueError):
        return truncate(repr(value), limit)


def humanize(key: Any) -> str:
    """`ece_before` -> `ECE before`: report headings read as words, not as JSON keys."""
    words = str(key).replace("-", " ").replace("_", " ").split()
    if not words:
        return str(key)
    words = [ACRONYMS.get(w.lower(), w) for w in words]
    first = words[0]
    if first == first.lower():
        words[0] = first[:1].upper() + first[1:]
    return " ".join(words)


def fmt_duration(seconds: Any) -> str:
    number = as_float(seconds)
    if number is None:
        return "—"
    if number < 60:
        return f"{number:.1f} s"
    minutes, rest = divmod(round(number), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _column_is_numeric(rows: Sequence[Sequence[Cell]], index: int) -> bool:
    texts = [row[index].text for row in rows if index < len(row) and row[index].text not in ("—", "")]
    if not texts:
        return False
    return all(_looks_numeric(t) for t in texts)


def _looks_numeric(text: str) -> bool:
    cleaned = text.replace(",", "").replace("%", "").replace("−", "-").replace("∞", "1").strip()
    try:
        float(cleaned)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------------------------- generic rendering


def flatten_scalars(value: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    """Every scalar inside nested dicts as (dotted.key, value), so callers can look numbers up by name."""
    found: list[tuple[str, Any]] = []
    if isinstance(value, Mapping) and depth <= 4:
        for key, item in value.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if is_scalar(item):
                found.append((name, item))
            else:
                found.extend(flatten_scalars(item, name, depth + 1))
    return found


def records_table(records: Sequence[Any], caption: str = "", key_column: str | None = None,
                  keys: Iterable[Any] | None = None) -> Table:
    """Rows from a list of dicts (the union of their keys becomes the columns, in first-seen order)."""
    columns: list[str] = []
    for record in records[:MAX_ROWS]:
        if isinstance(record, Mapping):
            for key in record:
                if str(key) not in columns:
                    columns.append(str(key))
    key_list = list(keys) if keys is not None else None
    rows = []
    for index, record in enumerate(records[:MAX_ROWS]):
        mapping = {str(k): v for k, v in record.items()} if isinstance(record, Mapping) else {"value": record}
        row = [_record_cell(c, mapping.get(c)) for c in columns or ["value"]]
        if key_list is not None:
            row.insert(0, Cell(fmt_value(key_list[index]), tone="strong"))
        rows.append(row)
    header = [humanize(c) for c in columns or ["value"]]
    if key_list is not None:
        header.insert(0, key_column or "")
    return Table(header, rows, caption=caption, more=max(0, len(records) - MAX_ROWS))


BAR_WORDS = ("rate", "share", "accuracy", "confidence", "probability", "f1", "precision", "recall")


def _record_cell(column: str, value: Any) -> Cell:
    """A table cell; rates and shares in [0, 1] get an inline bar so a column can be scanned by eye."""
    number = as_float(value)
    if number is not None and 0.0 <= number <= 1.0 and any(w in column.lower() for w in BAR_WORDS):
        return Cell(fmt_number(number, fixed=True), bar=number)
    return Cell(fmt_value(value, 160))


def _columnar(mapping: Mapping[str, Any]) -> bool:
    """{"bin": [...], "accuracy": [...]}: parallel lists of equal length read as a table."""
    lists = [v for v in mapping.values() if isinstance(v, list)]
    return (len(lists) == len(mapping) >= 2 and len({len(v) for v in lists}) == 1 and len(lists[0]) > 0
            and all(is_scalar(x) for v in lists for x in v))


def to_blocks(value: Any, depth: int = 0) -> list[Any]:
    """Blocks showing `value`, whatever its shape; never raises on JSON-like input."""
    if value is None:
        return [Paragraph("—")]
    if is_scalar(value):
        return [Paragraph(fmt_value(value, 2000))]
    if isinstance(value, Mapping):
        return _mapping_blocks(value, depth)
    if isinstance(value, (list, tuple)):
        return _list_blocks(list(value), depth)
    return [Paragraph(fmt_value(value))]


def _mapping_blocks(value: Mapping[Any, Any], depth: int) -> list[Any]:
    if not value:
        return [Paragraph("(empty)")]
    if _columnar(value):
        records = [dict(zip(value.keys(), row, strict=False)) for row in zip(*value.values(), strict=False)]
        return [records_table(records)]
    blocks: list[Any] = []
    scalars = [(humanize(k), fmt_value(v)) for k, v in value.items() if is_inline(v)]
    if scalars:
        blocks.append(KeyValues(scalars))
    nested = {k: v for k, v in value.items() if not is_inline(v)}
    if nested and all(isinstance(v, Mapping) and v and all(is_scalar(x) for x in v.values())
                      for v in nested.values()):
        # {group: {metric: value}}: one table, a row per group
        blocks.append(records_table(list(nested.values()), key_column="", keys=list(nested)))
        return blocks
    for key, item in nested.items():
        if depth >= MAX_DEPTH:
            blocks.append(Details(humanize(key), [Code(_json(item))]))
        else:
            blocks.append(Group(humanize(key), to_blocks(item, depth + 1)))
    return blocks


def _list_blocks(items: list[Any], depth: int) -> list[Any]:
    if not items:
        return [Paragraph("(none)")]
    if all(is_scalar(v) for v in items):
        if len(items) <= 12 and all(not isinstance(v, str) or len(v) < 40 for v in items):
            return [Paragraph(fmt_value(items, 2000))]
        return [Bullets([fmt_value(v) for v in items[:MAX_ROWS]] + _more(items))]
    if all(isinstance(v, Mapping) for v in items):
        return [records_table(items)]
    if all(isinstance(v, (list, tuple)) and all(is_scalar(x) for x in v) for v in items):
        width = max(len(v) for v in items)
        rows = [[Cell(fmt_value(x)) for x in v] + [Cell("")] * (width - len(v)) for v in items[:MAX_ROWS]]
        return [Table([""] * width, rows, more=max(0, len(items) - MAX_ROWS))]
    if depth >= MAX_DEPTH:
        return [Code(_json(items))]
    return [Group(f"Item {i + 1}", to_blocks(v, depth + 1)) for i, v in enumerate(items[:MAX_ROWS])]


def _more(items: Sequence[Any]) -> list[str]:
    return [f"… {len(items) - MAX_ROWS} more"] if len(items) > MAX_ROWS else []


def _json(value: Any, limit: int = 4000) -> str:
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return truncate(text, limit)
