"""Does data augmentation help a small training set? Each augmenter alone and combined, against none.

A few hundred labelled rows is where augmentation is meant to pay off. This script draws a stratified sample
of NusaX-Senti English's training texts (300 of 500 by default, the same sample for every run: Indonesian
reviews and comments in English, positive / neutral / negative), fine-tunes the bundled
`minilm` on it with no augmentation, with each augmenter alone, and with a combination (synonym, EDA and
back-translation, half a variant per row each), over several
seeds (the seed sets the new head's weights, the batch order and the augmenters' choices), and scores every run
on the whole test split. Every run takes the same number of optimisation steps, so an augmented run sees more
varied examples, not more updates. One table, mean ± standard deviation of test macro-F1 over the seeds:

    python bench/augment.py                     # 300 rows, 3 seeds, 6 settings, test split of 400
    python bench/augment.py --train-rows 100 --seeds 3 --steps 10 --methods none,shuffle   # smoke run

Not measured, and why: `contextual` needs a masked LM with its MLM head and `generation` a causal or seq2seq
generator; no such model is available offline here (the bundled minilm is a sentence-embedding encoder without
an MLM head). Name them with --contextual-model / --generation-model to add them to the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import DEFAULT_DATA_DIR, Split, machine  # noqa: E402

SETTINGS: dict[str, list[dict[str, Any]]] = {
    "none": [],
    "synonym": [{"method": "synonym", "ratio": 1}],
    "eda": [{"method": "eda", "ratio": 1}],
    "shuffle": [{"method": "shuffle", "ratio": 1, "words": True}],
    "back_translation": [{"method": "back_translation", "ratio": 1, "pivots": ["spa"]}],
    "combined": [{"method": "synonym", "ratio": 0.5}, {"method": "eda", "ratio": 0.5},
                 {"method": "back_translation", "ratio": 0.5, "pivots": ["spa"]}],
}


@dataclass
class Result:
    setting: str
    f1: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    train_rows: list[int] = field(default_factory=list)
    augment_seconds: list[float] = field(default_factory=list)
    train_seconds: list[float] = field(default_factory=list)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="shared data folder holding nusax/sentiment/english/ (default: ../shared/data)")
    parser.add_argument("--train-rows", type=int, default=300, help="stratified training sample (default 300)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting (at least 3 for a standard deviation)")
    parser.add_argument("--steps", type=int, default=60, help="optimisation steps of every run (default 60)")
    parser.add_argument("--batch-size", type=int, default=8, help="training batch size (default 8)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine more threads only contend)")
    parser.add_argument("--methods", default=",".join(SETTINGS), help="comma-separated settings to run")
    parser.add_argument("--contextual-model", help="a masked LM with its MLM head: adds a contextual setting")
    parser.add_argument("--generation-model", help="a causal or seq2seq LM: adds a generation setting")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return parser.parse_args(argv)


def read_nusax(folder: Path) -> dict[str, Split]:
    import pandas as pd

    missing = [name for name in ("train.csv", "test.csv") if not (folder / name).is_file()]
    if missing:
        sys.exit(f"error: NusaX English not found in {folder} (missing {', '.join(missing)}); pass --data-dir")
    frames = {role: pd.read_csv(folder / f"{role}.csv") for role in ("train", "test")}
    return {role: Split([str(t) for t in frame["text"]], [str(v) for v in frame["label"]])
            for role, frame in frames.items()}


def sample(split: Split, size: int, seed: int = 0) -> Split:
    from sklearn.model_selection import train_test_split

    if size >= len(split.texts):
        return split
    keep, _ = train_test_split(list(range(len(split.texts))), train_size=size, random_state=seed,
                               stratify=split.labels)
    keep = sorted(keep)
    return Split([split.texts[i] for i in keep], [split.labels[i] for i in keep])


def write_csv(path: Path, split: Split) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(split.texts, split.labels, strict=True))
    return path


def one_run(setting: list[dict[str, Any]], seed: int, files: dict[str, Path], work: Path, steps: int,
            batch_size: int) -> tuple[float, float, int, float, float]:
    """(test macro-F1, test accuracy, training rows, augmentation seconds, training seconds)."""
    import tuneforge
    from tuneforge.augment.pipeline import augment_split
    from tuneforge.data.prepare import prepare_data
    from tuneforge.recipe import recipe_from_dict

    recipe = {
        "task": "classification",
        "model": {"name": "minilm"},
        "data": {"train": str(files["train"]), "test": str(files["test"]), "validation_split": 0.0,
                 "cache_dir": str(work / "cache")},
        "augment": {"methods": setting, "seed": seed},
        "train": {"max_steps": steps, "batch_size": batch_size, "learning_rate": 1e-4, "max_length": 64, "seed": seed,
                  "save_checkpoints": False, "warmup_ratio": 0.1},
        "early_stopping": {"enabled": False},
        "calibration": {"temperature_scaling": False},
        "fairness": {"counterfactual": False, "identity_categories": []},
        "evaluation": {"explain_examples": 0},
        "output": {"dir": str(work / f"run-{len(setting)}-{seed}"), "overwrite": True, "tensorboard": "off"},
    }
    # Augmentation alone first, timed (fine_tune then reads the variants from the cache).
    started = time.perf_counter()
    parsed = recipe_from_dict(recipe)
    if parsed.augment.enabled:
        plain = parsed.model_copy(deep=True)
        plain.augment.methods = []
        augment_split(prepare_data(plain).train, parsed)
    augment_seconds = time.perf_counter() - started
    started = time.perf_counter()
    run = tuneforge.fine_tune(recipe)
    train_seconds = time.perf_counter() - started
    data = json.loads((Path(run.directory) / "data.json").read_text())
    test = run.metrics["test"]
    return float(test["f1_macro"]), float(test["accuracy"]), int(data["rows"]["train"]), augment_seconds, \
        train_seconds


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else \
        f"{values[0]:.4f}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from tuneforge.cli.common import quiet_libraries

    quiet_libraries()  # progress bars of every map and weight load would bury the per-run lines
    import torch

    torch.set_num_threads(args.threads)
    if args.seeds < 3:
        sys.exit("error: use at least 3 seeds; shrink --steps to save time instead")
    settings = {name: SETTINGS[name] for name in args.methods.split(",") if name}
    if args.contextual_model:
        settings["contextual"] = [{"method": "contextual", "ratio": 1, "model": args.contextual_model}]
    if args.generation_model:
        settings["generation"] = [{"method": "generation", "ratio": 1, "model": args.generation_model}]
    splits = read_nusax(args.data_dir / "nusax" / "sentiment" / "english")
    classes = sorted(set(splits["train"].labels))
    train = sample(splits["train"], args.train_rows)
    results = {name: Result(name) for name in settings}
    with tempfile.TemporaryDirectory(prefix="tuneforge-bench-augment-") as folder:
        work = Path(folder)
        files = {"train": write_csv(work / "train.csv", train), "test": write_csv(work / "test.csv", splits["test"])}
        # Seed-major order: an interrupted run still has every setting for the seeds it finished.
        for seed in range(args.seeds):
            for name, setting in settings.items():
                f1, accuracy, rows, augment_seconds, train_seconds = one_run(setting, seed, files, work, args.steps,
                                                                             args.batch_size)
                result = results[name]
                result.f1.append(f1)
                result.accuracy.append(accuracy)
                result.train_rows.append(rows)
                result.augment_seconds.append(augment_seconds)
                result.train_seconds.append(train_seconds)
                print(f"  {name} seed {seed}: macro-F1 {f1:.4f}, {rows} training rows, augment "
                      f"{augment_seconds:.1f} s, train+evaluate {train_seconds:.1f} s", file=sys.stderr, flush=True)
                if args.json:  # after every run, so an interrupted benchmark keeps what it measured
                    save(args, results)
    report(results, machine(), args, len(train.texts), len(splits["test"].texts), classes)
    if args.json:
        save(args, results)


def save(args: argparse.Namespace, results: dict[str, Result]) -> None:
    args.json.write_text(json.dumps({"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                                     "results": [vars(r) for r in results.values()]}, indent=2))


def report(results: dict[str, Result], host: dict[str, Any], args: argparse.Namespace, train_rows: int,
           test_rows: int, classes: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    base = results.get("none")
    table = Table(title=f"NusaX-Senti English, {train_rows} training texts, {args.seeds} seeds, {args.steps} steps: "
                        f"test macro-F1 ({test_rows} texts)")
    for column in ("augmentation", "training rows", "test macro-F1 (mean ± std)", "Δ vs none", "test accuracy",
                   "augment time", "train+eval time vs none"):
        table.add_column(column, justify="left" if column == "augmentation" else "right")
    for result in results.values():
        delta = statistics.mean(result.f1) - statistics.mean(base.f1) if base else None
        ratio = statistics.mean(result.train_seconds) / statistics.mean(base.train_seconds) if base else None
        table.add_row(result.setting, f"{statistics.mean(result.train_rows):.0f}", mean_std(result.f1),
                      f"{delta:+.4f}" if delta is not None else "-", mean_std(result.accuracy),
                      f"{statistics.mean(result.augment_seconds):.1f} s", f"{ratio:.2f}x" if ratio else "-")
    Console(width=200).print(table)
    gpu = f", GPU {host['gpu']}" if host["gpu"] else ", no GPU"
    print(f"machine: {host['cpu']}, {host['cores']} cores, torch threads {host['torch_threads']}{gpu}; "
          f"torch {host['torch']}, python {host['python']}")
    print(f"classes: {', '.join(classes)}; model minilm, batch {args.batch_size}, learning rate 1e-4, max_length 64, "
          f"{args.steps} steps for every setting; seeds 0..{args.seeds - 1}")
    print("not measured: contextual (needs a masked LM with its MLM head; none offline, the bundled minilm has "
          "none) and generation (needs a generator; none offline) unless named with --contextual-model / "
          "--generation-model")


if __name__ == "__main__":
    main()
