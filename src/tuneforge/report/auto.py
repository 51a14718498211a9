"""The auto section, from auto.json (`tuneforge auto`): how the run was chosen and what each strategy did.

The ablation table is the point: each strategy's effect on validation against the recipe on the same seed, with
its spread over seeds, so a reader sees which strategies paid off on this data and which were noise.
"""

from __future__ import annotations

import json
from typing import Any

from tuneforge.report.blocks import (
    Callout,
    Cell,
    Details,
    Section,
    Stat,
    Stats,
    Table,
    as_float,
    fmt_duration,
    fmt_metric,
    fmt_value,
)
from tuneforge.report.inputs import RunInputs

AUTO_FILE = "auto.json"


def _signed(value: Any) -> str:
    number = as_float(value)
    return "—" if number is None else f"{number:+.4f}"


def _effect_cell(row: dict[str, Any], greater: bool) -> Cell:
    effect, spread = as_float(row.get("effect")), as_float(row.get("spread"))
    if effect is None:
        return Cell("—", tone="muted")
    helped = effect > 0 if greater else effect < 0
    clear = spread is None or abs(effect) > spread  # an effect inside its spread over seeds is noise
    tone = ("good" if helped else "bad") if clear and effect != 0 else "muted"
    return Cell(_signed(effect), tone=tone)


def build_auto(inputs: RunInputs) -> Section | None:
    path = inputs.root / AUTO_FILE
    if not path.is_file():
        return None
    summary = json.loads(path.read_text(encoding="utf-8"))
    metric, greater = summary.get("metric", "score"), bool(summary.get("greater_is_better", True))
    trials = summary.get("trials") or []
    chosen = summary.get("chosen") or {}
    blocks: list[Any] = [Callout(str(summary.get("decision", "")), "info")]
    blocks += [Callout(str(warning), "warning") for warning in summary.get("warnings") or []]
    if summary.get("interrupted"):
        blocks.append(Callout("Interrupted: the best trial finished by then was kept, without an ensemble.",
                              "warning"))
    done = sum(trial.get("state") == "COMPLETE" for trial in trials)
    blocks.append(Stats([
        Stat("Chosen", f"{chosen.get('kind', '?')}", f"trial {chosen.get('trial')}"),
        Stat(f"Validation {metric}", fmt_metric(chosen.get("validation"))),
        Stat("Trials", f"{done} completed", f"{len(trials)} started"),
        Stat("Time", fmt_duration(summary.get("elapsed_seconds")),
             f"budget {fmt_duration(summary.get('budget_seconds'))}"),
    ]))
    table = summary.get("ablation") or []
    if table:
        blocks.append(Table(
            ["strategy", "seeds", f"mean {metric}", "effect", "spread", "note"],
            [[Cell(str(row.get("strategy"))), Cell(fmt_value(row.get("seeds"))), Cell(fmt_metric(row.get("mean"))),
              _effect_cell(row, greater), Cell(_signed(row.get("spread")).lstrip("+")), Cell(str(row.get("note", "")))]
             for row in table],
            numeric=[False, True, True, True, True, False],
            caption=f"Ablation on validation: effect is the strategy's {metric} minus the recipe's on the same seed "
                    "(mean over seeds), spread its standard deviation over seeds (— from one seed). An effect "
                    "smaller than its spread is not told apart from noise."))
    else:
        blocks.append(Callout("No strategy trial finished within the budget, so there is no ablation.", "hint"))
    if trials:
        blocks.append(Details(f"All {len(trials)} trials", [Table(
            ["trial", "state", metric, "arm", "seed", "strategy", "time"],
            [[Cell(str(trial.get("number"))), Cell(str(trial.get("state", "")).lower()),
              Cell(fmt_metric(trial.get("value"))), Cell(str(trial.get("arm") or "search")),
              Cell(fmt_value(trial.get("seed"))), Cell(str(trial.get("strategy", ""))),
              Cell(fmt_duration(trial.get("duration_s")))] for trial in trials],
            numeric=[True, False, True, False, True, False, True])]))
    return Section("auto", "Auto", blocks, lead="How `tuneforge auto` chose this run, and what each strategy did.")
