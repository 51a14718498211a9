"""Does `tuneforge auto` pay off on TweetEval? TF-IDF + logistic regression, the default recipe and auto, per task.

Three TweetEval tasks (emotion, hate, offensive) on their official splits, scored with the official metric,
macro-F1 on the test split. Per task, three systems run on the same files:

- baseline: TF-IDF (word 1-2 grams) + logistic regression, C chosen on validation (bench/quality.py);
- default: `tuneforge.fine_tune` with the recipe as `tuneforge init` writes it (bundled minilm);
- auto: `tuneforge auto` with the same recipe and a wall-clock budget per task (`--budget`), which chooses on
  validation only and reads the test split once.

The table gives test macro-F1 and accuracy with each system's wall time, and the machine with its load average
before and after each task: on a shared machine a slow wall time may be someone else's load.

    python bench/tweeteval.py --budget 45m                   # the three tasks, 45 minutes of auto each
    python bench/tweeteval.py --tasks emotion --limit-train 60 --limit-validation 40 --limit-test 40 \\
        --budget 1m --epochs 1 --max-length 32               # a smoke run: proves the script, measures nothing

Data: ../shared/data/tweeteval/<task>/ (see its SOURCE.md), read by bench/quality.py's reader.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import DEFAULT_DATA_DIR, Split, drop_blank, machine, read_task, run_baseline, write_csv  # noqa: E402

TASKS = ("emotion", "hate", "offensive")
QUIET = {"evaluation": {"explain_examples": 0}, "fairness": {"identity_categories": []}}


@dataclass
class Row:
    task: str
    system: str
    f1_macro: float
    accuracy: float
    wall_seconds: float
    details: dict[str, Any]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--budget", default="45m", help="auto's wall-clock budget per task (e.g. 45m, 1h)")
    parser.add_argument("--limit-train", type=int, help="first N training tweets (smoke runs)")
    parser.add_argument("--limit-validation", type=int, help="first N validation tweets (smoke runs)")
    parser.add_argument("--limit-test", type=int, help="first N test tweets (smoke runs; not the official test)")
    parser.add_argument("--epochs", type=float, help="train.epochs for the default recipe and auto's trial 0")
    parser.add_argument("--max-length", type=int, help="train.max_length (tweets fit in 64 tokens)")
    parser.add_argument("--model", help="model.name (default: the recipe's, minilm)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return parser.parse_args(argv)


def _head(split: Split, rows: int | None) -> Split:
    return split if rows is None else Split(split.texts[:rows], split.labels[:rows])


def _recipe(args: argparse.Namespace, files: dict[str, Path], output: Path) -> dict[str, Any]:
    train: dict[str, Any] = {}
    if args.epochs is not None:
        train["epochs"] = args.epochs
    if args.max_length is not None:
        train["max_length"] = args.max_length
    recipe: dict[str, Any] = {"task": "classification", "data": {role: str(path) for role, path in files.items()},
                              "train": train, "output": {"dir": str(output)}, **QUIET}
    if args.model:
        recipe["model"] = {"name": args.model}
    return recipe


def run_default(task: str, recipe: dict[str, Any]) -> Row:
    import tuneforge

    started = time.perf_counter()
    run = tuneforge.fine_tune(recipe)
    test = run.metrics["test"]
    return Row(task, f"default ({run.recipe.model.name})", float(test["f1_macro"]), float(test["accuracy"]),
               time.perf_counter() - started, {"validation_f1_macro": run.metrics["validation"]["f1_macro"],
                                               "epochs_completed": run.metrics["training"]["epochs_completed"]})


def run_auto(task: str, recipe: dict[str, Any], budget_s: float) -> Row:
    from tuneforge.recipe import recipe_from_dict
    from tuneforge.search.auto import run_auto as auto

    def progress(update: Any) -> None:
        if update.last is not None:
            print(f"  [{update.elapsed_s:.0f}/{update.budget_s:.0f} s] trial {update.last.number} "
                  f"{update.last.state.lower()} {update.last.value} {update.last_label}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    result = auto(recipe_from_dict(recipe), budget_s=budget_s, on_progress=progress)
    summary = result.summary
    return Row(task, f"auto ({budget_s / 60:g} min)", float(summary["test"]["f1_macro"]),
               float(summary["test"]["accuracy"]), time.perf_counter() - started,
               {"chosen": summary["chosen"], "decision": summary["decision"], "ablation": summary["ablation"],
                "trials": len(summary["trials"])})


def report(rows: list[Row], host: dict[str, Any], loads: dict[str, tuple[float, float]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="TweetEval, official test splits (macro-F1)")
    for column in ("task", "system", "test macro-F1", "test accuracy", "wall time (s)", "load before/after"):
        table.add_column(column, justify="left" if column in ("task", "system") else "right")
    for row in rows:
        before, after = loads[row.task]
        table.add_row(row.task, row.system, f"{row.f1_macro:.4f}", f"{row.accuracy:.4f}", f"{row.wall_seconds:.1f}",
                      f"{before:.2f} / {after:.2f}")
    Console().print(table)
    gpu = f", GPU {host['gpu']}" if host["gpu"] else ", no GPU"
    print(f"machine: {host['cpu']}, {host['cores']} cores, torch threads {host['torch_threads']}{gpu}; "
          f"torch {host['torch']}, python {host['python']}")
    for row in rows:
        if row.system.startswith("auto"):
            print(f"{row.task} auto: {row.details['decision']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tuneforge.cli.auto import parse_budget

    budget_s = parse_budget(args.budget)
    rows: list[Row] = []
    loads: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="tuneforge-bench-") as scratch:
        workdir = Path(scratch)
        os.environ["HF_DATASETS_CACHE"] = str(workdir / "hf-datasets")  # a cold cache, left nowhere
        from tuneforge.cli.common import quiet_libraries

        quiet_libraries()
        for task in args.tasks:
            splits, _classes = read_task(args.data_dir / "tweeteval" / task, args.limit_train)
            limits = {"validation": args.limit_validation, "test": args.limit_test}
            splits = {role: drop_blank(_head(split, limits.get(role)))[0] for role, split in splits.items()}
            folder = workdir / task
            folder.mkdir()
            files = {role: write_csv(folder / f"{role}.csv", split) for role, split in splits.items()}
            load_before = os.getloadavg()[0]
            print(f"{task}: baseline ...", file=sys.stderr)
            baseline = run_baseline(splits)
            rows.append(Row(task, baseline.name, baseline.f1_macro, baseline.accuracy, baseline.wall_seconds,
                            baseline.details))
            print(f"{task}: default recipe ...", file=sys.stderr)
            rows.append(run_default(task, _recipe(args, files, folder / "default")))
            print(f"{task}: auto, {budget_s:.0f} s ...", file=sys.stderr)
            rows.append(run_auto(task, _recipe(args, files, folder / "auto"), budget_s))
            loads[task] = (load_before, os.getloadavg()[0])
    host = machine()
    report(rows, host, loads)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": host, "load_average": loads, "budget_seconds": budget_s,
                                         "limits": {"train": args.limit_train, "validation": args.limit_validation,
                                                    "test": args.limit_test},
                                         "results": [asdict(row) for row in rows]}, indent=2) + "\n",
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
