"""Does adapting the bundled encoder to financial text help a small labelled set? One table, one run.

Financial PhraseBank (sentences_50Agree): a small stratified labelled split (default 400 training sentences,
200 validation, 1,000 test) and every other sentence that is not in validation or test as the unlabelled domain
corpus. Variants, all with the same split, seed and fine-tuning settings:

    none                      plain fine-tuning
    rules                     + the financial rule pack (currencies, amounts, tickers, dates)
    pretrain                  + continued masked-LM pretraining on the domain corpus
    vocabulary + pretrain     + domain words added to the tokenizer (mean-of-pieces start), then pretraining

    python bench/domain.py
    python bench/domain.py --train-size 800 --pretrain-epochs 2 --seeds 1 2 3

Reported: test macro-F1 and accuracy (mean and std over seeds), held-out masked-LM loss on the corpus before
and after pretraining, and tokens per text before and after the vocabulary extension.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

try:
    from quality import DEFAULT_DATA_DIR, machine
except ImportError:  # imported as bench.domain
    from bench.quality import DEFAULT_DATA_DIR, machine

FINBERT = "FinBERT (Araci 2019, own split, all data): accuracy 0.86, macro-F1 0.84"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder holding financial_phrasebank/")
    parser.add_argument("--train-size", type=int, default=400)
    parser.add_argument("--validation-size", type=int, default=200)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--epochs", type=float, default=4.0, help="fine-tuning epochs")
    parser.add_argument("--pretrain-epochs", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    return parser.parse_args(argv)


def read_phrasebank(folder: Path) -> list[dict[str, str]]:
    rows, seen = [], set()
    for line in (folder / "Sentences_50Agree.txt").read_text(encoding="latin-1").splitlines():
        text, _, label = line.rpartition("@")
        text = text.strip()
        if text and label.strip() and text not in seen:
            seen.add(text)
            rows.append({"text": text, "label": label.strip()})
    return rows


def split(rows: list[dict[str, str]], args: argparse.Namespace) -> dict[str, list[dict[str, str]]]:
    """Stratified labelled splits; the corpus is everything outside validation and test (train included, unlabelled)."""
    by_label: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_label[row["label"]].append(row)
    rng = random.Random(0)
    parts: dict[str, list[dict[str, str]]] = {"train": [], "validation": [], "test": [], "rest": []}
    for members in by_label.values():
        rng.shuffle(members)
        share = len(members) / len(rows)
        sizes = [round(args.test_size * share), round(args.validation_size * share), round(args.train_size * share)]
        parts["test"] += members[:sizes[0]]
        parts["validation"] += members[sizes[0]:sizes[0] + sizes[1]]
        parts["train"] += members[sizes[0] + sizes[1]:sum(sizes)]
        parts["rest"] += members[sum(sizes):]
    parts["corpus"] = parts["train"] + parts["rest"]
    return parts


def write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


VARIANTS: dict[str, dict[str, Any]] = {
    "none": {},
    "rules": {"domain": {"rule_packs": ["financial"]}},
    "pretrain": {"train": {"stages": ["pretrain", "finetune"]}},
    "vocabulary + pretrain": {"train": {"stages": ["pretrain", "finetune"]},
                              "domain": {"extend_vocabulary": True, "max_new_tokens": 300,
                                         "min_term_frequency": 3, "min_term_pieces": 3}},
}


def run_variant(name: str, seed: int, files: dict[str, Path], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import tuneforge

    recipe: dict[str, Any] = {
        "model": {"name": "minilm"},
        "data": {"train": str(files["train"]), "validation": str(files["validation"]), "test": str(files["test"])},
        "train": {"epochs": args.epochs, "batch_size": 16, "learning_rate": 5e-5, "max_length": 96, "seed": seed},
        "pretrain": {"corpus": str(files["corpus"]), "epochs": args.pretrain_epochs, "batch_size": 32,
                     "learning_rate": 5e-5},
        "evaluation": {"explain_examples": 0}, "fairness": {"counterfactual": False},
        "output": {"dir": str(work / f"{name.replace(' ', '')}-{seed}"), "overwrite": True, "tensorboard": "off"},
    }
    for section, values in VARIANTS[name].items():
        recipe[section] = {**recipe.get(section, {}), **values}
    started = time.perf_counter()
    run = tuneforge.fine_tune(recipe)
    domain = run.metrics.get("domain", {})
    return {"variant": name, "seed": seed, "seconds": time.perf_counter() - started,
            "f1_macro": run.metrics["test"]["f1_macro"], "accuracy": run.metrics["test"]["accuracy"],
            "pretraining": domain.get("pretraining"), "vocabulary": domain.get("vocabulary")}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = args.data_dir / "financial_phrasebank"
    if not folder.is_dir():
        print(f"Financial PhraseBank not found under {args.data_dir}", file=sys.stderr)
        return 2
    parts = split(read_phrasebank(folder), args)
    results = []
    with tempfile.TemporaryDirectory(prefix="tuneforge-domain-") as temporary:
        work = Path(temporary)
        files = {role: write(work / f"{role}.csv", parts[role]) for role in ("train", "validation", "test", "corpus")}
        for seed in args.seeds:
            for name in VARIANTS:
                results.append(run_variant(name, seed, files, work, args))
    report(results, {role: len(rows) for role, rows in parts.items() if role != "rest"})
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "results": results}, indent=2, default=str))
    return 0


def spread(values: list[float]) -> str:
    return f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""


def report(results: list[dict[str, Any]], sizes: dict[str, int]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Financial PhraseBank test ({sizes['test']} sentences), {sizes['train']} labelled "
                        f"training sentences, corpus {sizes['corpus']} sentences")
    for column in ("variant", "macro-F1", "accuracy", "corpus MLM loss before -> after", "tokens/text",
                   "added tokens", "seconds"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name in VARIANTS:
        rows = [r for r in results if r["variant"] == name]
        f1 = [r["f1_macro"] for r in rows]
        accuracy = [r["accuracy"] for r in rows]
        pretraining, vocabulary = rows[0]["pretraining"], rows[0]["vocabulary"]
        table.add_row(
            name, f"{statistics.mean(f1):.3f}{spread(f1)}", f"{statistics.mean(accuracy):.3f}{spread(accuracy)}",
            f"{pretraining['held_out_loss_before']:.2f} -> {pretraining['held_out_loss_after']:.2f}"
            if pretraining else "-",
            f"{vocabulary['tokens_per_text_before']:.1f} -> {vocabulary['tokens_per_text_after']:.1f}"
            if vocabulary else "-",
            str(vocabulary["added_tokens"]) if vocabulary else "-",
            f"{statistics.mean(r['seconds'] for r in rows):.0f}")
    console = Console(width=160)
    console.print(table)
    console.print(f"published reference: {FINBERT}")
    console.print(f"seeds: {sorted({r['seed'] for r in results})}; machine: {machine()}")


if __name__ == "__main__":
    sys.exit(main())
