"""Is tuneforge's default recipe worth its compute? Compare it with a cheap, strong baseline on a public benchmark.

A fine-tuning tool earns its place only if its out-of-the-box run beats what a few seconds of TF-IDF + logistic
regression already gives. This script trains both on the same TweetEval split (official metric: macro-F1),
times each side and prints one table, so the answer is a single command away:

    python bench/quality.py                      # TweetEval emotion, default recipe
    python bench/quality.py --limit-train 200 --epochs 1 --json /tmp/quality.json   # quick smoke run

The data is read from the shared folder next to the repository (../shared/data/tweeteval/<task>/), laid out as
in the official TweetEval repository: {train,val,test}_{text,labels}.txt and mapping.txt.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
SPLITS = {"train": "train", "validation": "val", "test": "test"}  # tuneforge role -> TweetEval file prefix
C_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass
class Split:
    texts: list[str]
    labels: list[str]  # label names, as a user's CSV would hold them


@dataclass
class Score:
    name: str
    accuracy: float
    f1_macro: float
    wall_seconds: float
    details: dict[str, Any]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="emotion", help="TweetEval task folder (default: emotion)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="shared data folder holding tweeteval/<task>/ (default: ../shared/data beside the repo)")
    parser.add_argument("--epochs", type=float, help="override train.epochs of the default recipe")
    parser.add_argument("--limit-train", type=int, help="use only the first N training rows (smoke runs)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="extra recipe override, as `tuneforge train --set` (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return parser.parse_args(argv)


def read_lines(path: Path) -> list[str]:
    # split on "\n" only: str.splitlines() would also break tweets at U+2028 and similar characters
    text = path.read_text(encoding="utf-8")
    return text[:-1].split("\n") if text.endswith("\n") else text.split("\n")


def read_task(folder: Path, limit_train: int | None) -> tuple[dict[str, Split], list[str]]:
    """Every split of one TweetEval task, labels turned from ids into names via mapping.txt."""
    needed = [folder / "mapping.txt"] + [folder / f"{p}_{kind}.txt" for p in SPLITS.values() for kind in
                                          ("text", "labels")]
    missing = [str(path) for path in needed if not path.is_file()]
    if missing:
        sys.exit(f"error: TweetEval data not found; missing {', '.join(missing)}\n"
                 "pass --data-dir pointing at the shared data folder that holds tweeteval/<task>/")
    names = dict(line.split("\t", 1) for line in read_lines(folder / "mapping.txt") if line.strip())
    splits = {}
    for role, prefix in SPLITS.items():
        texts = read_lines(folder / f"{prefix}_text.txt")
        ids = read_lines(folder / f"{prefix}_labels.txt")
        if len(texts) != len(ids):
            sys.exit(f"error: {folder}/{prefix}_text.txt has {len(texts)} lines but {prefix}_labels.txt {len(ids)}")
        splits[role] = Split(texts, [names[i.strip()].strip() for i in ids])
    if limit_train:
        train = splits["train"]
        splits["train"] = Split(train.texts[:limit_train], train.labels[:limit_train])
    return splits, [names[key].strip() for key in sorted(names, key=int)]


def drop_blank(split: Split) -> tuple[Split, int]:
    """Some TweetEval tasks hold empty tweets (hate: 7 train, 1 val); tuneforge rightly refuses them, so they go."""
    keep = [i for i, text in enumerate(split.texts) if text.strip()]
    return Split([split.texts[i] for i in keep], [split.labels[i] for i in keep]), len(split.texts) - len(keep)


def write_csv(path: Path, split: Split) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(split.texts, split.labels, strict=True))
    return path


def run_baseline(splits: dict[str, Split]) -> Score:
    """TF-IDF (word 1-2 grams) + logistic regression, C picked by validation macro-F1.

    BLAS runs single-threaded: on a few busy cores, multi-threaded OpenBLAS spins on these tiny vector operations
    and makes the fit some 20x slower, which would flatter the fine-tuning side's wall time.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
        x_train = vectorizer.fit_transform(splits["train"].texts)
        x_val = vectorizer.transform(splits["validation"].texts)
        best: tuple[float, float, LogisticRegression] | None = None
        for c in C_GRID:
            model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
            model.fit(x_train, splits["train"].labels)
            val_f1 = f1_score(splits["validation"].labels, model.predict(x_val), average="macro")
            if best is None or val_f1 > best[0]:
                best = (val_f1, c, model)
        assert best is not None
        val_f1, chosen_c, model = best
        predicted = model.predict(vectorizer.transform(splits["test"].texts))
    truth = splits["test"].labels
    return Score("baseline (TF-IDF + LogReg)", float(accuracy_score(truth, predicted)),
                 float(f1_score(truth, predicted, average="macro")), time.perf_counter() - started,
                 {"C": chosen_c, "C_grid": list(C_GRID), "validation_f1_macro": float(val_f1),
                  "features": len(vectorizer.vocabulary_)})


def run_tuneforge(files: dict[str, Path], output: Path, overrides: list[str]) -> Score:
    """The default recipe through the public API; only the output folder (and any overrides) are set."""
    from transformers import TrainerCallback

    import tuneforge

    class Progress(TrainerCallback):
        """Core tuneforge never prints; a line per evaluation shows a long CPU run is alive."""

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                        **kwargs: Any) -> None:
            f1 = (metrics or {}).get("eval_f1_macro", float("nan"))
            print(f"  epoch {state.epoch:.2f}: validation macro-F1 {f1:.4f} ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr, flush=True)

    recipe = {"task": "classification", "data": {role: str(path) for role, path in files.items()},
              "output": {"dir": str(output)}}
    started = time.perf_counter()
    run = tuneforge.fine_tune(recipe, overrides=overrides, callbacks=[Progress()])
    wall = time.perf_counter() - started
    test, training = run.metrics["test"], run.metrics["training"]
    keys = ("runtime_seconds", "epochs_completed", "global_steps", "stopped_early", "best_metric", "device",
            "train_samples_per_second", "class_weights")
    return Score(f"tuneforge default ({run.recipe.model.name})", float(test["accuracy"]), float(test["f1_macro"]),
                 wall, {"overrides": overrides, "validation_f1_macro": run.metrics["validation"]["f1_macro"],
                        **{key: training.get(key) for key in keys}})


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")]
        cpu = models[0] if models else cpu
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__}


def report(scores: list[Score], host: dict[str, Any], dataset: str, sizes: dict[str, int], classes: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{dataset}: test set")
    for column in ("system", "test accuracy", "test macro-F1", "wall time (s)"):
        table.add_column(column, justify="left" if column == "system" else "right")
    for score in scores:
        table.add_row(score.name, f"{score.accuracy:.4f}", f"{score.f1_macro:.4f}", f"{score.wall_seconds:.1f}")
    Console().print(table)
    baseline, ours = scores
    gpu = f", GPU {host['gpu']}" if host["gpu"] else ", no GPU"
    print(f"machine: {host['cpu']}, {host['cores']} cores (os.cpu_count), torch threads {host['torch_threads']}"
          f"{gpu}; torch {host['torch']}, python {host['python']}")
    print(f"dataset: {dataset}, {len(classes)} classes ({', '.join(classes)}); "
          f"split sizes: {', '.join(f'{role} {n}' for role, n in sizes.items())}")
    print(f"baseline: C = {baseline.details['C']}, chosen on validation macro-F1 from {list(C_GRID)}")
    difference = ours.f1_macro - baseline.f1_macro
    print(f"macro-F1, ours - baseline: {difference:+.4f} ({100 * difference:+.1f} points); "
          f"ratio ours / baseline: {ours.f1_macro / baseline.f1_macro:.3f}; "
          f"wall-time ratio: {ours.wall_seconds / baseline.wall_seconds:.0f}x")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    splits, classes = read_task(args.data_dir / "tweeteval" / args.task, args.limit_train)
    for role, split in list(splits.items()):
        splits[role], dropped = drop_blank(split)
        if dropped:
            print(f"dropped {dropped} empty text(s) from the {role} split")
    overrides = ([f"train.epochs={args.epochs}"] if args.epochs is not None else []) + args.sets

    with tempfile.TemporaryDirectory(prefix="tuneforge-bench-") as scratch:
        workdir = Path(scratch)
        # A benchmark should measure a cold run and leave nothing behind, so `datasets` caches in the scratch folder.
        os.environ["HF_DATASETS_CACHE"] = str(workdir / "hf-datasets")
        from tuneforge.cli.common import quiet_libraries
        from tuneforge.errors import TuneforgeError

        quiet_libraries()
        files = {role: write_csv(workdir / f"{role}.csv", split) for role, split in splits.items()}
        print(f"baseline: TF-IDF + logistic regression on {len(splits['train'].texts)} tweets ...", file=sys.stderr)
        baseline = run_baseline(splits)
        print("tuneforge: fine-tuning with the default recipe (minutes on a CPU) ...", file=sys.stderr)
        try:
            ours = run_tuneforge(files, workdir / "run", overrides)
        except TuneforgeError as error:
            print(f"error: tuneforge failed: {error}", file=sys.stderr)
            return 1

    host = machine()
    dataset = f"TweetEval {args.task}"
    sizes = {role: len(split.texts) for role, split in splits.items()}
    report([baseline, ours], host, dataset, sizes, classes)
    if args.json:
        results = {"dataset": dataset, "splits": sizes, "classes": classes, "machine": host,
                   "results": [asdict(baseline), asdict(ours)],
                   "f1_macro_difference": ours.f1_macro - baseline.f1_macro,
                   "f1_macro_ratio": ours.f1_macro / baseline.f1_macro}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
