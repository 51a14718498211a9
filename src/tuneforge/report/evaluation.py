"""Report sections for the evaluation extras: calibration, error analysis, plugin metrics and fairness.

Other steps write these files and keys, and their schemas are still settling, so every builder here looks
for a few well-known names (ECE, temperature, disparity figures) to headline, and shows everything else
through the generic `to_blocks` renderer. A missing input becomes a short "not computed" hint.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.report.blocks import (
    Callout,
    Cell,
    Columns,
    Details,
    Figure,
    Gallery,
    Group,
    Heading,
    KeyValues,
    Section,
    Stat,
    Stats,
    Table,
    as_float,
    flatten_scalars,
    fmt_number,
    fmt_value,
    humanize,
    is_inline,
    is_scalar,
    to_blocks,
)
from tuneforge.report.inputs import RunInputs
from tuneforge.report.sections import EVAL_SPLITS

RELIABILITY_IMAGE = "reliability_diagram.png"


def not_computed(what: str, command: str | None = None, advice: str = "") -> Callout:
    """The "not computed" hint: says what is missing and, as a command to paste, how to add it."""
    return Callout(f"{what} not computed for this run.{' ' + advice if advice else ''}", "hint", command)


def run_command(inputs: RunInputs, verb: str, extra: str = "") -> str:
    """The exact command a reader can paste, with this run's directory filled in."""
    return f"tuneforge {verb} {shlex.quote(str(inputs.root))}{' ' + extra if extra else ''}"


def splits_with(inputs: RunInputs, key: str) -> dict[str, Any]:
    """Split -> value of `key` in that split's metrics, test first (the split a reader trusts most)."""
    found = {}
    for role in ("test", "validation"):
        value = inputs.split(role).get(key)
        if value not in (None, {}, []):
            found[role] = value
    return found


def figures_named(inputs: RunInputs, *words: str, section: str) -> list[Figure]:
    """Loose PNGs in the run directory whose names mention one of `words` (e.g. fairness_gaps.png)."""
    found = []
    for path in inputs.unused_images():
        if any(word in path.stem.lower() for word in words):
            uri = inputs.image(path, section)
            if uri:
                found.append(Figure(uri, humanize(path.stem)))
    return found


# ----------------------------------------------------------------------------------------------- calibration


@dataclass
class CalibrationNumbers:
    before: float | None = None
    after: float | None = None
    plain: float | None = None  # an ECE that says neither before nor after
    temperature: float | None = None
    used: tuple[str, ...] = ()


BEFORE_WORDS = {"before", "uncalibrated", "raw", "pre", "original"}
AFTER_WORDS = {"after", "calibrated", "post", "scaled"}


def calibration_numbers(value: Any) -> CalibrationNumbers:
    """ECE before/after temperature scaling and the temperature, found by name at any depth."""
    numbers = CalibrationNumbers()
    used = []
    for key, raw in flatten_scalars(value) if isinstance(value, Mapping) else []:
        number = as_float(raw)
        tokens = set(re.split(r"[^a-z0-9]+", key.lower()))
        if number is None:
            continue
        if "temperature" in tokens and numbers.temperature is None:
            numbers.temperature = number
        elif "ece" in tokens or "expected_calibration_error" in key.lower():
            if tokens & BEFORE_WORDS and numbers.before is None:
                numbers.before = number
            elif tokens & AFTER_WORDS and numbers.after is None:
                numbers.after = number
            elif not tokens & (BEFORE_WORDS | AFTER_WORDS) and numbers.plain is None:
                numbers.plain = number
            else:
                continue
        else:
            continue
        used.append(key)
    numbers.used = tuple(used)
    return numbers


def _calibration_stats(numbers: CalibrationNumbers, temperature_source: str) -> Stats:
    stats = []
    if numbers.before is not None:
        stats.append(Stat("ECE before", fmt_number(numbers.before, fixed=True), "raw softmax"))
    if numbers.after is not None:
        detail, tone = "after temperature scaling", ""
        if numbers.before:
            change = (numbers.after - numbers.before) / numbers.before
            detail = f"{change:+.0%} vs. before"
            tone = "good" if change < 0 else "bad"
        stats.append(Stat("ECE after", fmt_number(numbers.after, fixed=True), detail, tone))
    if numbers.plain is not None and numbers.before is None and numbers.after is None:
        stats.append(Stat("ECE", fmt_number(numbers.plain, fixed=True), "expected calibration error"))
    if numbers.temperature is not None:
        stats.append(Stat("Temperature", fmt_number(numbers.temperature, 3), temperature_source))
    return Stats(stats)


def _without_empty_bins(table: Any) -> Any:
    """Most of 15 confidence bins are empty on a small split; listing them hides the ones that matter."""
    if isinstance(table, list) and all(isinstance(row, Mapping) and "count" in row for row in table):
        return [row for row in table if row.get("count")] or table
    return table


def build_calibration(inputs: RunInputs) -> Section:
    section = Section("calibration", "Calibration",
                      lead="Whether a predicted probability of 0.8 is right about 80% of the time "
                           "(expected calibration error, ECE: lower is better).")
    if inputs.task == "regression":
        section.hint = Callout("Calibration concerns class probabilities; this is a regression run.", "na")
        return section
    per_split = splits_with(inputs, "calibration")
    file_value = inputs.calibration
    diagram = inputs.image(inputs.root / RELIABILITY_IMAGE, "calibration")
    extra_figures = figures_named(inputs, "calibration", "reliability", section="calibration")
    if not per_split and file_value is None and not diagram and not extra_figures:
        section.hint = not_computed("Calibration", advice="Set `calibration.temperature_scaling: true` in the "
                                                          "recipe and train again.")
        return section
    figures = ([Figure(diagram, "Reliability diagram: accuracy against confidence per bin; the diagonal is "
                                "perfect calibration.")] if diagram else []) + extra_figures
    first = True
    for role, value in per_split.items():
        numbers = calibration_numbers(value)
        if numbers.temperature is None and isinstance(file_value, Mapping):
            numbers.temperature = as_float(file_value.get("temperature"))
        blocks: list[Any] = [_calibration_stats(numbers, "fitted on validation")]
        rest = ({k: _without_empty_bins(v) if k == "reliability" else v for k, v in value.items()
                 if k not in numbers.used} if isinstance(value, Mapping) else value)
        detail = to_blocks(rest) if rest not in ({}, None) else []
        if first:
            section.blocks.append(Heading(f"{humanize(role)} split"))
            section.blocks.extend(blocks)
            if figures:
                section.blocks.append(Columns(detail, figures))
            else:
                section.blocks.extend(detail)
            figures, first = [], False
        else:
            section.blocks.append(Details(f"{humanize(role)} split", blocks + detail))
    if file_value is not None:
        if not per_split:
            numbers = calibration_numbers(file_value)
            section.blocks.append(_calibration_stats(numbers, "from calibration.json"))
        if not isinstance(file_value, Mapping) or set(file_value) - {"temperature"}:
            section.blocks.append(Details("calibration.json", to_blocks(file_value)))
    if figures:
        section.blocks.append(Gallery(figures))
    return section


# ----------------------------------------------------------------------------------------------- error analysis


def build_error_analysis(inputs: RunInputs) -> Section:
    section = Section("errors", "Error analysis", lead="Where the model goes wrong: the classes it confuses, "
                                                       "the examples it gets wrong with confidence, and how the "
                                                       "error rate moves with text length.")
    per_split = splits_with(inputs, "error_analysis")
    if not per_split and inputs.task == "regression":
        section.hint = Callout("Error analysis covers class confusions and confident mistakes; this is a "
                               "regression run (see the predicted-against-true plot under Metrics).", "na")
        return section
    if not per_split:
        section.hint = not_computed("Error analysis", advice="Runs trained with the current tuneforge include it.")
        return section
    for index, (role, value) in enumerate(per_split.items()):
        blocks = _error_blocks(value)
        if index == 0:
            section.blocks.append(Heading(f"{humanize(role)} split"))
            section.blocks.extend(blocks)
        else:
            section.blocks.append(Details(f"{humanize(role)} split", blocks))
    return section


def _error_blocks(value: Any) -> list[Any]:
    if not isinstance(value, Mapping):
        return to_blocks(value)
    blocks: list[Any] = []
    scalars = [(humanize(k), fmt_value(v)) for k, v in value.items() if is_inline(v)]
    if scalars:
        blocks.append(KeyValues(scalars))
    for key, item in value.items():
        if not is_inline(item):
            blocks.append(Group(humanize(key), to_blocks(item, depth=1)))
    return blocks


# ----------------------------------------------------------------------------------------------- plugins


def build_plugins(inputs: RunInputs) -> Section | None:
    """Extra metrics from `evaluation.plugins`; no section at all when the recipe names no plugin."""
    per_split = {role: inputs.split(role).get("plugins") for role in EVAL_SPLITS}
    per_split = {role: v for role, v in per_split.items() if v not in (None, {}, [])}
    evaluation = inputs.section("evaluation")
    configured = evaluation.get("plugins") if isinstance(evaluation.get("plugins"), list) else []
    if not per_split and not configured:
        return None
    section = Section("plugins", "Plugin metrics", lead="Extra metrics and checks from the recipe's "
                                                         "evaluation.plugins.")
    if not per_split:
        section.hint = not_computed(f"Plugins ({', '.join(map(str, configured))}) were configured but their "
                                    "metrics were", advice="Train again to compute them.")
        return section
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    odd: dict[str, Any] = {}
    for role, plugins in per_split.items():
        if not isinstance(plugins, Mapping):
            odd[role] = plugins
            continue
        for plugin, values in plugins.items():
            if is_scalar(values):
                rows.setdefault((str(plugin), ""), {})[role] = values
            elif isinstance(values, Mapping):
                for metric, value in values.items():
                    if is_scalar(value):
                        rows.setdefault((str(plugin), str(metric)), {})[role] = value
                    else:
                        odd.setdefault(role, {}).setdefault(plugin, {})[metric] = value
            else:
                odd.setdefault(role, {})[plugin] = values
    roles = list(per_split)
    if rows:
        table_rows = [[Cell(plugin, tone="strong"), Cell(humanize(metric) if metric else "—")]
                      + [Cell(fmt_value(values.get(role))) for role in roles]
                      for (plugin, metric), values in rows.items()]
        section.blocks.append(Table(["Plugin", "Metric"] + [humanize(r) for r in roles], table_rows,
                                    numeric=[False, False] + [True] * len(roles)))
    if odd:
        section.blocks.append(Details("Other plugin output", to_blocks(odd)))
    return section


# ----------------------------------------------------------------------------------------------- leftovers


def build_other_figures(inputs: RunInputs) -> Section | None:
    """PNGs in the run directory that no section claimed (written by a newer step): shown, not dropped."""
    figures = []
    for path in inputs.unused_images():
        uri = inputs.image(path, "figures")
        if uri:
            figures.append(Figure(uri, Path(path).name))
    if not figures:
        return None
    return Section("figures", "Other figures", [Gallery(figures)], lead="Figures found in the run directory.")
