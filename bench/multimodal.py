"""Does fusing the tabular columns with the text help? Text only vs tabular only vs each fusion combiner.

Women's E-Commerce Clothing Reviews (../shared/data/womens_clothing): predict "Recommended IND" from the review
(Title + Review Text), its numeric columns (Rating, Age, Positive Feedback Count) and categorical columns
(Division/Department/Class Name). Only the toolkit's val split is present here, so its 2,349 rows are re-split,
seeded and stratified, into train/validation/test. Every system sees the same rows:

- text only (tuneforge): the multimodal model with the text columns alone;
- tabular only: scikit-learn HistGradientBoostingClassifier and LogisticRegression (median imputation,
  scaling, one-hot categories) on the numeric and categorical columns;
- text + tabular (tuneforge): one run per combiner: concat, gated, attention, late.

The tuneforge runs use the bundled `minilm` encoder frozen (freeze.all_but_head: its vectors are computed once
and shared by every run) and train the fusion layers for a fixed number of epochs. One table is printed:

    python bench/multimodal.py                       # all 2,349 rows, a few minutes on 2 cores
    python bench/multimodal.py --rows 600 --epochs 2 # quick smoke run

Caveat (SOURCE.md): Rating alone is 93% accurate here, so the tabular columns carry most of the signal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

try:  # run as a script: bench/ is on sys.path
    from quality import DEFAULT_DATA_DIR, REPO_ROOT, machine
except ImportError:  # imported as bench.multimodal from the repository root
    from bench.quality import DEFAULT_DATA_DIR, REPO_ROOT, machine

DATA = DEFAULT_DATA_DIR / "womens_clothing" / "val.csv"
LABEL = "Recommended IND"
TEXT = ["Title", "Review Text"]
NUMERIC = ["Rating", "Age", "Positive Feedback Count"]
CATEGORICAL = ["Division Name", "Department Name", "Class Name"]
COMBINERS = ("concat", "gated", "attention", "late")
DEFAULT_OUTPUT = REPO_ROOT / "runs" / "bench" / "multimodal.json"


def split(frame: pd.DataFrame, rows: int, seed: int) -> dict[str, pd.DataFrame]:
    """A stratified, seeded subsample, then 70% train, 10% validation, 20% test."""
    from sklearn.model_selection import train_test_split

    if rows < len(frame):
        frame, _ = train_test_split(frame, train_size=rows, random_state=seed, stratify=frame[LABEL])
    rest, test = train_test_split(frame, test_size=0.2, random_state=seed, stratify=frame[LABEL])
    train, validation = train_test_split(rest, test_size=0.125, random_state=seed, stratify=rest[LABEL])
    return {"train": train, "validation": validation, "test": test}


def scores(truth: np.ndarray, predicted: np.ndarray, positive_probability: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    return {"f1_macro": float(f1_score(truth, predicted, average="macro")),
            "accuracy": float(accuracy_score(truth, predicted)),
            "roc_auc": float(roc_auc_score(truth, positive_probability))}


def tabular_baselines(splits: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """HistGradientBoosting (native categorical splits) and LogisticRegression, fitted on train + validation."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    fit = pd.concat([splits["train"], splits["validation"]])
    test = splits["test"]
    columns = NUMERIC + CATEGORICAL
    filled = {name: part[columns].fillna({c: "missing" for c in CATEGORICAL}) for name, part in
              (("fit", fit), ("test", test))}
    boosting = make_pipeline(
        ColumnTransformer([("num", "passthrough", NUMERIC),
                           ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan),
                            CATEGORICAL)]),
        HistGradientBoostingClassifier(categorical_features=list(range(len(NUMERIC), len(columns))),
                                       random_state=0))
    logistic = make_pipeline(
        ColumnTransformer([("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC),
                           ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)]),
        LogisticRegression(max_iter=2000))
    results = []
    for name, model in (("HistGradientBoosting", boosting), ("LogisticRegression", logistic)):
        started = time.perf_counter()
        model.fit(filled["fit"], fit[LABEL])
        probability = model.predict_proba(filled["test"])[:, 1]
        results.append({"system": f"tabular only: {name} (scikit-learn)", "inputs": "tabular",
                        **scores(test[LABEL].to_numpy(), (probability >= 0.5).astype(int), probability),
                        "seconds": time.perf_counter() - started})
    return results


def tuneforge_run(files: dict[str, Path], output: Path, combiner: str, tabular: bool, epochs: float,
                  threads: int) -> dict[str, Any]:
    import tuneforge

    features: dict[str, Any] = {"text": TEXT, "combiner": combiner, "fusion_hidden": 128}
    if tabular:
        features.update(numeric=NUMERIC, categorical=CATEGORICAL)
    recipe = {
        "task": "classification",
        "model": {"name": "minilm"},
        "data": {**{role: str(path) for role, path in files.items()}, "label_column": LABEL},
        "features": features,
        "freeze": {"all_but_head": True},
        "train": {"epochs": epochs, "batch_size": 32, "eval_batch_size": 64, "learning_rate": 1e-3,
                  "max_length": 128, "warmup_ratio": 0.0, "save_checkpoints": False, "logging_steps": 20,
                  "seed": 0},
        "imbalance": {"class_weights": "off"},
        "early_stopping": {"enabled": False},
        "evaluation": {"explain_examples": 0},
        "output": {"dir": str(output), "overwrite": True, "tensorboard": "off"},
    }
    started = time.perf_counter()
    run = tuneforge.fine_tune(recipe, on_warnings=lambda problems: None)
    seconds = time.perf_counter() - started
    predictions = pd.read_csv(run.layout.test_predictions)
    truth = predictions["true"].astype(int).to_numpy()
    result = scores(truth, predictions["label"].astype(int).to_numpy(), predictions["prob_1"].to_numpy())
    name = f"text + tabular: {combiner} (tuneforge)" if tabular else "text only (tuneforge, frozen minilm)"
    return {"system": name, "inputs": "text + tabular" if tabular else "text", **result, "seconds": seconds,
            "run_dir": str(run.directory)}


def print_table(results: list[dict[str, Any]], host: dict[str, Any], sizes: dict[str, int], epochs: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Women's clothing reviews, recommended? (test {sizes['test']} rows; train {sizes['train']}, "
                        f"validation {sizes['validation']})")
    for column in ("system", "test macro-F1", "accuracy", "ROC AUC", "wall time (s)"):
        table.add_column(column, justify="left" if column == "system" else "right")
    for row in results:
        table.add_row(row["system"], f"{row['f1_macro']:.4f}", f"{row['accuracy']:.4f}", f"{row['roc_auc']:.4f}",
                      f"{row['seconds']:.1f}")
    console = Console(width=140)
    console.print(table)
    console.print(f"{host['cpu']}, {host['cores']} cores, torch {host['torch']} ({host['torch_threads']} threads), "
                  f"{'GPU ' + host['gpu'] if host['gpu'] else 'no GPU'}; load average before/after "
                  f"{host['load_before']:.1f}/{host['load_after']:.1f}; fusion layers trained {epochs:g} epochs over "
                  "a frozen minilm, whose single pass over every text is in the first tuneforge row's time.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the womens_clothing CSV")
    parser.add_argument("--rows", type=int, default=2349, help="rows used (stratified subsample)")
    parser.add_argument("--epochs", type=float, default=8, help="epochs of the fusion layers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--json", type=Path, default=DEFAULT_OUTPUT, help="where to write every figure")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"{args.data} not found: the bench reads ../shared/data/womens_clothing beside the repository",
              file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    frame = pd.read_csv(args.data, index_col=0)
    frame[LABEL] = frame[LABEL].astype(int)
    splits = split(frame, args.rows, args.seed)
    host = {**machine(), "load_before": os.getloadavg()[0]}
    results = tabular_baselines(splits)
    with tempfile.TemporaryDirectory(prefix="tuneforge-multimodal-") as folder:
        root = Path(folder)
        files = {}
        for role, part in splits.items():
            files[role] = root / f"{role}.csv"
            part.to_csv(files[role], index=False)
        results.append(tuneforge_run(files, root / "text-only", "concat", False, args.epochs, args.threads))
        for combiner in COMBINERS:
            results.append(tuneforge_run(files, root / combiner, combiner, True, args.epochs, args.threads))
    host["load_after"] = os.getloadavg()[0]
    sizes = {role: len(part) for role, part in splits.items()}
    print_table(results, host, sizes, args.epochs)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": host, "sizes": sizes, "epochs": args.epochs, "results": results},
                                    indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
