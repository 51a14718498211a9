"""Do ensembles pay for their members? Three seeds of the bundled `minilm` on NusaX English sentiment, and every
ensemble method over them, against the mean member, on the same test split.

    python bench/ensemble.py                       # 3 seeds, all four methods (about 10 minutes on 2 shared cores)
    python bench/ensemble.py --limit-train 120 --epochs 1 --json /tmp/ensemble.json   # quick smoke run

Members are trained with tuneforge.fine_tune on the train split (validation: valid.csv, which early stopping and
the fitted methods - weighted, stacking - use), then combined with tuneforge.ensemble.build.build_ensemble; every
figure is measured on the 400-row test split, which neither members nor ensembles saw. Data: the shared folder
beside the repository (../shared/data/nusax/sentiment/english), CC BY-SA 4.0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "nusax" / "sentiment" / "english"
METHODS = ("mean", "vote", "weighted", "stacking")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="folder with train/valid/test.csv")
    parser.add_argument("--model", default="minilm", help="member model (default: the bundled minilm)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="one member per seed")
    parser.add_argument("--epochs", type=float, default=2.0, help="train.epochs of each member")
    parser.add_argument("--max-length", type=int, default=48, help="train.max_length of each member")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="train.learning_rate of each member")
    parser.add_argument("--limit-train", type=int, default=300,
                        help="use only the first N of the 500 training rows (default 300; 0: all)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return parser.parse_args(argv)


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")]
        cpu = models[0] if models else cpu
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def member_recipe(args: argparse.Namespace, files: dict[str, Path], seed: int, output: Path) -> dict[str, Any]:
    return {
        "task": "classification",
        "model": {"name": args.model},
        "data": {role: str(path) for role, path in files.items()},
        "train": {"epochs": args.epochs, "batch_size": 16, "learning_rate": args.learning_rate,
                  "max_length": args.max_length, "seed": seed, "logging_steps": 10},
        "evaluation": {"explain_examples": 0},
        "fairness": {"counterfactual": False, "identity_categories": []},
        "output": {"dir": str(output), "tensorboard": "off"},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not (args.data_dir / "train.csv").is_file():
        print(f"no data at {args.data_dir}; pass --data-dir", file=sys.stderr)
        return 2
    import pandas as pd

    import tuneforge
    from tuneforge.cli.common import quiet_libraries
    from tuneforge.ensemble.build import build_ensemble

    quiet_libraries()
    work = Path(tempfile.mkdtemp(prefix="bench-ensemble-"))
    files = {"train": args.data_dir / "train.csv", "validation": args.data_dir / "valid.csv",
             "test": args.data_dir / "test.csv"}
    if args.limit_train:
        limited = work / "train.csv"
        pd.read_csv(files["train"]).head(args.limit_train).to_csv(limited, index=False)
        files["train"] = limited

    members, rows = [], []
    for seed in args.seeds:
        started = time.perf_counter()
        run = tuneforge.fine_tune(member_recipe(args, files, seed, work / f"seed{seed}"), on_warnings=lambda _: None)
        seconds = time.perf_counter() - started
        members.append(run.directory)
        test = run.metrics["test"]
        rows.append({"name": f"member seed {seed}", "accuracy": test["accuracy"], "f1_macro": test["f1_macro"],
                     "ece": test.get("ece"), "seconds": seconds})
        print(f"member seed {seed}: test macro-F1 {test['f1_macro']:.4f} in {seconds:.0f} s", file=sys.stderr)
    mean_member = {key: statistics.fmean(row[key] for row in rows) for key in ("accuracy", "f1_macro", "ece",
                                                                               "seconds")}
    rows.append({"name": "mean member (baseline)", **mean_member})
    for method in METHODS:
        started = time.perf_counter()
        run = build_ensemble(members, method, work / f"ens-{method}", validation=files["validation"],
                             test=files["test"], device="cpu")
        test = run.metrics["test"]
        rows.append({"name": f"ensemble {method}", "accuracy": test["accuracy"], "f1_macro": test["f1_macro"],
                     "ece": test.get("ece"), "seconds": time.perf_counter() - started,
                     "weights": run.metrics["ensemble"]["weights"]})

    host = machine()
    print(f"machine: {host['cpu']}, {host['cores']} cores, torch {host['torch']} ({host['torch_threads']} threads)")
    print(f"data: NusaX English sentiment, {len(pd.read_csv(files['train']))} train / "
          f"{len(pd.read_csv(files['validation']))} validation / {len(pd.read_csv(files['test']))} test rows; "
          f"members: {args.model}, seeds {', '.join(map(str, args.seeds))}, {args.epochs:g} epochs, max_length "
          f"{args.max_length}, learning rate {args.learning_rate:g}")
    print()
    print("| model | test accuracy | test macro-F1 | ΔF1 vs mean member | ECE | time / mean member's training |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        delta = row["f1_macro"] - mean_member["f1_macro"]
        ece = f"{row['ece']:.4f}" if row.get("ece") is not None else "-"
        print(f"| {row['name']} | {row['accuracy']:.4f} | {row['f1_macro']:.4f} | {delta:+.4f} | {ece} | "
              f"{row['seconds'] / mean_member['seconds']:.2f} |")
    weighted = next(row for row in rows if row["name"] == "ensemble weighted")["weights"]
    print(f"\nweighted: member weights fitted on validation {[round(w, 3) for w in weighted]}; ensemble time is "
          "building it (members' predictions on validation and test, fitting) on top of training the members")
    if args.json:
        args.json.write_text(json.dumps({"machine": host, "rows": rows}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
