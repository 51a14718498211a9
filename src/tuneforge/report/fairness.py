"""The fairness section, from fairness.json (`tuneforge fairness RUN --data FILE`).

fairness.json is read the way `tuneforge.evaluate.fairness_audit` writes it today: `attributes` (per
sensitive attribute: group metrics and disparity figures), `counterfactual` (identity-swap probes),
`thresholds`, `breaches` and `passed`. Each of those parts is drawn by its own view when it has that shape;
any part that does not (an older or newer file) falls back to the generic renderer, so the section degrades
to plain tables instead of failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuneforge.report.blocks import (
    Callout,
    Cell,
    Details,
    Gallery,
    Group,
    Heading,
    KeyValues,
    Section,
    Table,
    as_float,
    flatten_scalars,
    fmt_metric,
    fmt_number,
    fmt_value,
    humanize,
    is_inline,
    is_scalar,
    to_blocks,
    truncate,
)
from tuneforge.report.evaluation import figures_named, not_computed, run_command
from tuneforge.report.inputs import RunInputs

DISPARITIES = ("demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference",
               "equalized_odds_ratio")
SHORT_NAMES = {"demographic_parity_difference": "DP difference", "demographic_parity_ratio": "DP ratio",
               "equalized_odds_difference": "EO difference", "equalized_odds_ratio": "EO ratio"}
LIMIT_OF = {"demographic_parity_difference": "max_demographic_parity_difference",
            "equalized_odds_difference": "max_equalized_odds_difference",
            "flip_rate": "max_counterfactual_flip_rate"}
GROUP_COLUMNS = ("count", "accuracy", "f1_macro", "selection_rate", "false_positive_rate", "false_negative_rate")
COUNTERFACTUAL_COLUMNS = ("texts_probed", "pairs", "flips", "flip_rate", "mean_abs_change", "max_abs_change")
HANDLED = {"attributes", "counterfactual", "thresholds", "breaches", "passed", "assessable", "not_assessable"}
DISPARITY_WORDS = ("parity", "odds", "flip", "disparit", "difference", "gap")
MAX_FINDINGS = 8
MAX_WORST = 10


@dataclass
class Finding:
    text: str
    tone: str = "info"  # danger when a limit is exceeded or a check failed


def fairness_limits(value: Any, recipe_limits: Mapping[str, Any]) -> dict[str, float]:
    """Limits from fairness.json's own `thresholds` (what the audit used), else from the recipe."""
    limits = {}
    written = value.get("thresholds") if isinstance(value, Mapping) else None
    for name in LIMIT_OF.values():
        for source in (written, recipe_limits):
            number = as_float(source.get(name)) if isinstance(source, Mapping) else None
            if number is not None:
                limits[name] = number
                break
    return limits


def _limit_for(key: str, limits: Mapping[str, float]) -> float | None:
    leaf = key.rsplit(".", 1)[-1].lower()
    for figure, limit_name in LIMIT_OF.items():
        if leaf == figure or (figure == "flip_rate" and leaf.endswith("flip_rate")):
            return limits.get(limit_name)
    return None


def fairness_findings(value: Any, recipe_limits: Mapping[str, Any]) -> list[Finding]:
    """What a reader must know first: breached limits, else the headline disparity figures."""
    if not isinstance(value, Mapping):
        return []
    breaches = value.get("breaches")
    if isinstance(breaches, list) and breaches:
        return [Finding(fmt_value(b, 400), "danger") for b in breaches[:MAX_FINDINGS]]
    limits = fairness_limits(value, recipe_limits)
    findings = []
    for key, raw in flatten_scalars({k: v for k, v in value.items() if k not in ("thresholds", "breaches")}):
        leaf = key.rsplit(".", 1)[-1].lower()
        number = as_float(raw)
        if number is None or isinstance(raw, bool) or not any(w in leaf for w in DISPARITY_WORDS) \
                or "ratio" in leaf or ".gaps." in key or ".swaps." in key or ".worst" in key:
            continue
        text, tone = f"{' · '.join(humanize(p) for p in key.split('.') if p not in ('attributes', 'categories'))}: " \
                     f"{fmt_number(number)}", "info"
        limit = _limit_for(key, limits)
        if limit is not None:
            exceeded = number > limit
            text += f" (limit {fmt_number(limit)}: {'exceeded' if exceeded else 'within'})"
            tone = "danger" if exceeded else "ok"
        findings.append(Finding(text, tone))
    findings.sort(key=lambda f: f.tone != "danger")
    return findings[:MAX_FINDINGS]


# ----------------------------------------------------------------------------------------------- views


def _verdict(value: Mapping[str, Any], limits: Mapping[str, float]) -> list[Any]:
    breaches = value.get("breaches")
    if isinstance(breaches, list) and breaches:
        return [Callout(f"Limit exceeded: {fmt_value(b, 400)}", "danger") for b in breaches]
    unknown = value.get("not_assessable")
    unknown = unknown if isinstance(unknown, list) else []
    if "passed" in value and value.get("passed") is None:  # a parity that could not be measured is no pass
        return [Callout(f"Not assessable: {fmt_value(reason, 400)}", "warning") for reason in unknown]
    if unknown:
        return [Callout(f"Not assessed: {fmt_value(reason, 400)}", "info") for reason in unknown] + \
            _verdict({key: item for key, item in value.items() if key != "not_assessable"}, limits)
    if value.get("passed") is True and limits:
        return [Callout("Within every fairness limit set in the recipe.", "ok")]
    if "passed" in value and not limits:
        return [Callout("No fairness limits are set (`fairness.max_*` in the recipe), so nothing was checked "
                        "against one; read the figures below.", "info")]
    return []


def _cell(value: Any, limit: float | None = None, bar: bool = False) -> Cell:
    number = as_float(value)
    tone = "bad" if limit is not None and number is not None and number > limit else ""
    shade = max(0.0, min(1.0, number)) if bar and number is not None else None
    return Cell(fmt_metric(value), bar=shade, tone=tone)


def _attributes(attributes: Mapping[str, Any], limits: Mapping[str, float]) -> list[Any]:
    measured = {k: v for k, v in attributes.items() if isinstance(v, Mapping) and v.get("groups")}
    notes = [f"{humanize(k)}: {v['note']}" for k, v in attributes.items() if isinstance(v, Mapping) and v.get("note")]
    empty = [str(k) for k, v in attributes.items() if isinstance(v, Mapping) and not v.get("groups")]
    odd = {k: v for k, v in attributes.items() if not isinstance(v, Mapping)}
    blocks: list[Any] = []
    if measured:
        rows = []
        for name, result in measured.items():
            compared = result.get("compared_groups")
            rows.append([Cell(humanize(name), tone="strong"), Cell(fmt_value(result.get("source"))),
                         Cell(fmt_value(compared) if compared else "fewer than 2 groups", tone="" if compared
                              else "muted"),
                         Cell(fmt_value(result.get("examples_with_group")))]
                        + [_cell(result.get(d), limits.get(LIMIT_OF.get(d, ""))) for d in DISPARITIES])
        blocks.append(Heading("Disparities by attribute"))
        blocks.append(Table(["Attribute", "Groups from", "Groups compared", "Rows with a group"]
                            + list(SHORT_NAMES.values()), rows,
                            numeric=[False, False, False, True] + [True] * len(DISPARITIES),
                            caption="DP: demographic parity (selection rates); EO: equalised odds (error rates). "
                                    "Differences: 0 is parity; ratios: 1 is parity. Red: over the recipe's limit."))
        for name, result in measured.items():
            blocks.append(Details(f"Groups: {humanize(name)}", _group_blocks(result)))
    if empty:
        blocks.append(Callout("No group found in the data for: " + ", ".join(humanize(e) for e in empty) + ".",
                              "info"))
    blocks.extend(Callout(note[:1].upper() + note[1:] + ".", "info") for note in notes)
    if odd:
        blocks.append(Group("Other attributes", to_blocks(odd, depth=1)))
    return blocks


def _group_blocks(result: Mapping[str, Any]) -> list[Any]:
    groups = result.get("groups")
    if not isinstance(groups, Mapping) or not all(isinstance(g, Mapping) for g in groups.values()):
        return to_blocks(result, depth=1)
    columns = [c for c in GROUP_COLUMNS if any(c in g for g in groups.values())]
    columns += [c for g in groups.values() for c in g if c not in columns and is_scalar(g[c])]
    rows = [[Cell(str(name), tone="strong")] + [_cell(g.get(c), bar=c != "count") for c in columns]
            for name, g in groups.items()]
    overall = result.get("overall")
    if isinstance(overall, Mapping):
        rows.append([Cell("overall", tone="muted")] + [Cell(fmt_metric(overall.get(c)), tone="muted")
                                                        for c in columns])
    blocks: list[Any] = [Table(["Group"] + [humanize(c) for c in columns], rows,
                               numeric=[False] + [True] * len(columns),
                               caption=f"Positive label for rates: {fmt_value(result.get('positive_label'))}.")]
    gaps = result.get("gaps")
    if isinstance(gaps, Mapping) and gaps:
        blocks.append(KeyValues([(f"Gap in {humanize(k).lower()}", fmt_metric(v)) for k, v in gaps.items()]))
    return blocks


def _counterfactual(value: Any, limits: Mapping[str, float]) -> list[Any]:
    categories = value.get("categories") if isinstance(value, Mapping) else None
    if not isinstance(categories, Mapping) or not all(isinstance(c, Mapping) for c in categories.values()):
        return to_blocks(value, depth=1)
    limit = limits.get("max_counterfactual_flip_rate")
    rows = [[Cell(humanize(name), tone="strong")]
            + [_cell(probe.get(c), limit if c == "flip_rate" else None, bar=c == "flip_rate")
               for c in COUNTERFACTUAL_COLUMNS]
            for name, probe in categories.items()]
    blocks: list[Any] = [Table(["Category"] + [humanize(c) for c in COUNTERFACTUAL_COLUMNS], rows,
                               numeric=[False] + [True] * len(COUNTERFACTUAL_COLUMNS),
                               caption="Identity terms swapped in each text (e.g. she → he): a flip is a changed "
                                       "prediction; change is in the positive label's probability.")]
    worst = [(name, row) for name, probe in categories.items() for row in (probe.get("worst") or [])
             if isinstance(row, Mapping)]
    worst.sort(key=lambda item: -abs(as_float(item[1].get("change")) or 0.0))
    if worst:
        table_rows = [[Cell(humanize(name)), Cell(truncate(fmt_value(row.get("original")), 140)),
                       Cell(truncate(fmt_value(row.get("variant")), 140)),
                       Cell(f"{fmt_value(row.get('original_label'))} → {fmt_value(row.get('variant_label'))}",
                            tone="bad" if row.get("flipped") else ""),
                       Cell(fmt_number(as_float(row.get("change")) or 0.0, 3))]
                      for name, row in worst[:MAX_WORST]]
        blocks.append(Heading("Largest counterfactual changes"))
        blocks.append(Table(["Category", "Original", "Swapped", "Prediction", "Change"], table_rows,
                            numeric=[False, False, False, False, True]))
    return blocks


def build_fairness(inputs: RunInputs) -> Section:
    section = Section("fairness", "Fairness", lead="Whether the model's decisions and errors differ between "
                                                   "groups of people, and whether swapping identity terms "
                                                   "changes its predictions.")
    value = inputs.fairness
    figures = figures_named(inputs, "fairness", "disparity", "bias", section="fairness")
    if value is None and not figures:
        section.hint = not_computed("Fairness", run_command(inputs, "fairness", "--data FILE"))
        return section
    if isinstance(value, Mapping):
        limits = fairness_limits(value, inputs.section("fairness"))
        section.blocks.extend(_verdict(value, limits))
        scalars = [(humanize(k), fmt_value(v)) for k, v in value.items() if is_inline(v) and k not in HANDLED]
        if scalars:
            section.blocks.append(KeyValues(scalars))
        if isinstance(value.get("attributes"), Mapping):
            section.blocks.extend(_attributes(value["attributes"], limits))
        elif value.get("attributes") is not None:
            section.blocks.append(Group("Attributes", to_blocks(value["attributes"], depth=1)))
        if value.get("counterfactual") is not None:
            section.blocks.append(Heading("Counterfactual probe"))
            section.blocks.extend(_counterfactual(value["counterfactual"], limits))
        rest = {k: v for k, v in value.items() if not is_inline(v) and k not in HANDLED}
        for key, item in rest.items():
            section.blocks.append(Group(humanize(key), to_blocks(item, depth=1)))
        if not section.blocks:
            section.blocks.append(Callout("fairness.json is empty.", "info"))
    elif value is not None:
        section.blocks.append(Callout("fairness.json has an unexpected shape; its content is shown as is.", "info"))
        section.blocks.extend(to_blocks(value))
    if figures:
        section.blocks.append(Gallery(figures))
    return section
