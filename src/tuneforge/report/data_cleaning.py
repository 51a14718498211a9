"""Data-card blocks for what the clean: step did (from data.json's summary) and the imbalance report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuneforge.report.blocks import Callout, Cell, Heading, Table, fmt_value, humanize

ACTIONS = ("drop", "flag", "mask")


def cleaning_blocks(data: Mapping[str, Any]) -> list[Any]:
    """A table of rows dropped, flagged and masked per step and split; empty when cleaning was off."""
    cleaning = data.get("cleaning")
    if not isinstance(cleaning, Mapping) or not cleaning:
        return []
    rows = []
    for role, report in cleaning.items():
        steps = report.get("steps") if isinstance(report, Mapping) else None
        for step, counts in (steps or {}).items():
            if not isinstance(counts, Mapping):
                continue
            rows.append([Cell(humanize(role), tone="strong"), Cell(humanize(step))] +
                        [Cell(fmt_value(counts[a]) if a in counts else "—", tone="" if a in counts else "muted")
                         for a in ACTIONS])
    blocks: list[Any] = [Heading("Cleaning")]
    if rows:
        blocks.append(Table(["Split", "Step", "Dropped", "Flagged", "Masked"], rows,
                            caption="Rows each cleaning step acted on; data_report.json lists every row and why."))
    for role, report in cleaning.items():
        if isinstance(report, Mapping):
            blocks.append(Callout(f"{humanize(role)}: {fmt_value(report.get('rows_before'))} rows before cleaning, "
                                  f"{fmt_value(report.get('rows_after'))} after.", "info"))
            blocks.extend(Callout(str(note), "hint") for note in report.get("notes") or [])
    return blocks


def imbalance_blocks(data: Mapping[str, Any]) -> list[Any]:
    """The rare classes and the advice for them; nothing when no class is rare."""
    report = data.get("imbalance")
    if not isinstance(report, Mapping) or not report.get("rare_classes"):
        return []
    counts = report.get("class_counts") or {}
    listed = ", ".join(f"{name} ({fmt_value(counts.get(name))} rows)" for name in report["rare_classes"])
    advice = "; ".join(str(a) for a in report.get("advice") or [])
    return [Callout(f"Rare classes: {listed}; imbalance ratio {fmt_value(report.get('imbalance_ratio'))}. "
                    f"{('Consider: ' + advice + '.') if advice else ''}", "warning")]
