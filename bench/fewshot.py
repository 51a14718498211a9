"""Does contrastive training pay off with few labels? train.method contrastive vs standard at 8, 16, 64 per class.

For each dataset, shot count k and seed, k training rows per class are drawn (seeded) from the official train
split and k per class from the official validation split (early stopping and the best epoch need some held-out
rows; a few-shot user would hold out as few). Both methods then train the bundled minilm with the recipe as
`tuneforge init` writes it, differing only in train.method, and are scored on the full official test split with
macro-F1. The table gives mean ± standard deviation over seeds and the mean wall time per run, with the machine
and its load average before and after.

Datasets: TweetEval emotion (4 classes, ../shared/data/tweeteval/emotion) and NusaX-Senti English (3 classes,
../shared/data/nusax/sentiment/english); see each folder's SOURCE.md.

    python bench/fewshot.py                # 2 datasets x 3 shot counts x 5 seeds x 2 methods: hours on 2 cores
    python bench/fewshot.py --datasets nusax --shots 8 --seeds 1 --test-rows 50 --epochs 1 --iterations 2 \\
        --max-length 32                                      # a smoke run: proves the script, measures nothing
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import DEFAULT_DATA_DIR, Split, drop_blank, machine, read_task, write_csv  # noqa: E402

DATASETS = ("emotion", "nusax")
METHODS = ("standard", "contrastive")
QUIET = {"evaluation": {"explain_examples": 0}, "fairness": {"identity_categories": []},
         "calibration": {"temperature_scaling": False}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--shots", nargs="+", type=int, default=[8, 16, 64], help="training rows per class")
    parser.add_argument("--seeds", type=int, default=5, help="draws of the training rows (and training seeds)")
    parser.add_argument("--test-rows", type=int, help="first N test rows (smoke runs; not the official test)")
    parser.add_argument("--epochs", type=float, help="train.epochs (default: the recipe's)")
    parser.add_argument("--iterations", type=int, help="train.contrastive.iterations (default: the recipe's, 20)")
    parser.add_argument("--max-length", type=int, help="train.max_length")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return parser.parse_args(argv)


def read_nusax(folder: Path) -> dict[str, Split]:
    splits = {}
    for role, name in (("train", "train"), ("validation", "valid"), ("test", "test")):
        path = folder / f"{name}.csv"
        if not path.is_file():
            sys.exit(f"error: NusaX data not found ({path}); pass --data-dir")
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        splits[role] = Split([row["text"] for row in rows], [row["label"] for row in rows])
    return splits


def read_dataset(name: str, data_dir: Path) -> dict[str, Split]:
    if name == "nusax":
        return read_nusax(data_dir / "nusax" / "sentiment" / "english")
    splits, _ = read_task(data_dir / "tweeteval" / "emotion", None)
    return {role: drop_blank(split)[0] for role, split in splits.items()}


def per_class(split: Split, k: int, seed: int) -> Split:
    """k rows of every class, drawn with `seed` (all of a class that has fewer)."""
    rng = random.Random(seed)
    chosen: list[int] = []
    for label in sorted(set(split.labels)):
        rows = [i for i, value in enumerate(split.labels) if value == label]
        chosen += rng.sample(rows, min(k, len(rows)))
    chosen.sort()
    return Split([split.texts[i] for i in chosen], [split.labels[i] for i in chosen])


def train_once(files: dict[str, Path], output: Path, method: str, seed: int, args: argparse.Namespace
               ) -> dict[str, Any]:
    import tuneforge

    train: dict[str, Any] = {"method": method, "seed": seed}
    if args.epochs is not None:
        train["epochs"] = args.epochs
    if args.max_length is not None:
        train["max_length"] = args.max_length
    if args.iterations is not None:
        train["contrastive"] = {"iterations": args.iterations}
    recipe = {"data": {role: str(path) for role, path in files.items()}, "train": train,
              "output": {"dir": str(output)}, **QUIET}
    started = time.perf_counter()
    run = tuneforge.fine_tune(recipe)
    return {"f1_macro": float(run.metrics["test"]["f1_macro"]), "wall_seconds": time.perf_counter() - started,
            "contrastive": run.metrics["training"].get("contrastive")}


def report(results: list[dict[str, Any]], host: dict[str, Any], loads: tuple[float, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Few-shot: test macro-F1, mean ± sd over seeds")
    for column in ("dataset", "per class", *(f"{m} F1" for m in METHODS), "contrastive - standard",
                   *(f"{m} s/run" for m in METHODS)):
        table.add_column(column, justify="left" if column == "dataset" else "right")
    groups: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = {}
    for entry in results:
        groups.setdefault((entry["dataset"], entry["shots"]), {}).setdefault(entry["method"], []).append(entry)
    for (dataset, shots), methods in groups.items():
        cells, means = [], {}
        for method in METHODS:
            scores = [e["f1_macro"] for e in methods.get(method, [])]
            means[method] = statistics.fmean(scores) if scores else float("nan")
            spread = f" ± {statistics.stdev(scores):.3f}" if len(scores) > 1 else ""
            cells.append(f"{means[method]:.3f}{spread}" if scores else "—")
        walls = [f"{statistics.fmean(e['wall_seconds'] for e in methods[m]):.0f}" if methods.get(m) else "—"
                 for m in METHODS]
        table.add_row(dataset, str(shots), *cells, f"{means['contrastive'] - means['standard']:+.3f}", *walls)
    Console().print(table)
    gpu = f", GPU {host['gpu']}" if host["gpu"] else ", no GPU"
    print(f"machine: {host['cpu']}, {host['cores']} cores, torch threads {host['torch_threads']}{gpu}; "
          f"load average {loads[0]:.2f} before, {loads[1]:.2f} after")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: list[dict[str, Any]] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tuneforge-fewshot-") as scratch:
        workdir = Path(scratch)
        os.environ["HF_DATASETS_CACHE"] = str(workdir / "hf-datasets")
        from tuneforge.cli.common import quiet_libraries

        quiet_libraries()
        for dataset in args.datasets:
            splits = read_dataset(dataset, args.data_dir)
            test = splits["test"] if args.test_rows is None else Split(splits["test"].texts[:args.test_rows],
                                                                       splits["test"].labels[:args.test_rows])
            for shots in args.shots:
                for seed in range(args.seeds):
                    folder = workdir / f"{dataset}-{shots}-{seed}"
                    folder.mkdir()
                    files = {"train": write_csv(folder / "train.csv", per_class(splits["train"], shots, seed)),
                             "validation": write_csv(folder / "validation.csv",
                                                     per_class(splits["validation"], shots, seed)),
                             "test": write_csv(folder / "test.csv", test)}
                    for method in METHODS:
                        print(f"{dataset}, {shots} per class, seed {seed}: {method} ...", file=sys.stderr)
                        outcome = train_once(files, folder / method, method, seed, args)
                        results.append({"dataset": dataset, "shots": shots, "seed": seed, "method": method,
                                        **outcome})
    loads = (load_before, os.getloadavg()[0])
    host = machine()
    report(results, host, loads)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": host, "load_average": loads, "results": results}, indent=2)
                             + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
