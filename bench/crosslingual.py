"""How well does sentiment transfer across NusaX's languages? One table, one run.

NusaX-Senti holds the same 1,000 sentences in English, Indonesian and eight local languages (same ids, same
labels). The bundled encoder (English, uncased WordPiece) is fine-tuned on English and on Indonesian and scored
on every language's test split (zero-shot transfer); for a few target languages it is also fine-tuned on
English plus K target examples (few-shot), and on the target's own training split, which is what translate-train
gives with a perfect translator (NusaX's training sentences *are* human translations of the English ones), so it
is the ceiling translate-train can reach:

    python bench/crosslingual.py                                  # few-shot/ceiling for javanese, sundanese
    python bench/crosslingual.py --targets javanese balinese --k 100
    python bench/crosslingual.py --mt-model facebook/nllb-200-distilled-600M   # online: real translate-train

Machine translation between English and these languages is not available offline (Apertium has no such pairs),
so real translate-train needs --mt-model (a Transformers translation model, hub id or folder); without it the
table shows the human-translation ceiling only and says so.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

try:
    from quality import DEFAULT_DATA_DIR, machine
except ImportError:  # imported as bench.crosslingual
    from bench.quality import DEFAULT_DATA_DIR, machine

NB_INDONESIAN = 0.7311  # NusaX repository notebook: Naive Bayes + bag of words, indonesian, test macro-F1
NLLB_CODES = {"english": "eng_Latn", "indonesian": "ind_Latn", "javanese": "jav_Latn", "sundanese": "sun_Latn",
              "acehnese": "ace_Latn", "balinese": "ban_Latn", "banjarese": "bjn_Latn", "minangkabau": "min_Latn",
              "buginese": "bug_Latn"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder holding nusax/")
    parser.add_argument("--sources", nargs="+", default=["english", "indonesian"], help="training languages")
    parser.add_argument("--targets", nargs="+", default=["javanese", "sundanese"],
                        help="languages that also get few-shot and in-language (ceiling) runs")
    parser.add_argument("--k", type=int, default=50, help="target examples added for few-shot (stratified)")
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--mt-model", help="Transformers translation model for real translate-train (online)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    return parser.parse_args(argv)


def read_split(folder: Path, split: str) -> list[dict[str, str]]:
    import csv

    with (folder / f"{split}.csv").open(encoding="utf-8") as handle:
        return [{"text": row["text"], "label": row["label"]} for row in csv.DictReader(handle)]


def write(path: Path, rows: list[dict[str, str]]) -> Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def stratified_sample(rows: list[dict[str, str]], k: int, seed: int) -> list[dict[str, str]]:
    by_label: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_label[row["label"]].append(row)
    rng = random.Random(seed)
    picked: list[dict[str, str]] = []
    for _label, members in sorted(by_label.items()):
        share = round(k * len(members) / len(rows))
        picked += rng.sample(members, min(share, len(members)))
    return picked


def train(name: str, train_rows: list[dict[str, str]], validation: Path, work: Path, args: argparse.Namespace
          ) -> tuple[Path, float]:
    import tuneforge

    train_file = write(work / name / "train.csv", train_rows)
    recipe = {"model": {"name": "minilm"},
              "data": {"train": str(train_file), "validation": str(validation)},
              "train": {"epochs": args.epochs, "batch_size": 16, "learning_rate": 5e-5, "max_length": 96,
                        "seed": args.seed},
              "evaluation": {"explain_examples": 0}, "fairness": {"counterfactual": False},
              "output": {"dir": str(work / name / "run"), "overwrite": True, "tensorboard": "off"}}
    started = time.perf_counter()
    run = tuneforge.fine_tune(recipe)
    return run.directory, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.data_dir / "nusax" / "sentiment"
    if not root.is_dir():
        print(f"NusaX not found under {args.data_dir} (expected nusax/sentiment/<language>/)", file=sys.stderr)
        return 2
    from tuneforge.evaluate.crosslingual import evaluate_languages
    from tuneforge.predict import Predictor

    languages = sorted(p.name for p in root.iterdir() if (p / "test.csv").is_file())
    tests = {language: root / language / "test.csv" for language in languages}
    results: dict[str, dict[str, float]] = defaultdict(dict)
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tuneforge-crosslingual-") as folder:
        work = Path(folder)

        def score(column: str, run_dir: Path, only: list[str] | None = None) -> None:
            predictor = Predictor.from_run(run_dir)
            for row in evaluate_languages(predictor, {lang: tests[lang] for lang in only or languages}):
                results[row["language"]][column] = row["f1_macro"]

        for source in args.sources:
            run_dir, seconds = train(f"zero-{source}", read_split(root / source, "train"),
                                     root / source / "valid.csv", work, args)
            timings[f"train on {source}"] = seconds
            score(f"from {source}", run_dir)
        english = read_split(root / "english", "train")
        for target in args.targets:
            target_train = read_split(root / target, "train")
            shots = stratified_sample(target_train, args.k, args.seed)
            run_dir, seconds = train(f"few-{target}", english + shots, root / target / "valid.csv", work, args)
            timings[f"english + {len(shots)} {target}"] = seconds
            score(f"en + {args.k} target", run_dir, [target])
            if args.mt_model:
                translated = translate_train(english, target, args.mt_model)
                run_dir, seconds = train(f"mt-{target}", translated, root / target / "valid.csv", work, args)
                timings[f"translate-train {target}"] = seconds
                score("translate-train (MT)", run_dir, [target])
            run_dir, seconds = train(f"ceiling-{target}", target_train, root / target / "valid.csv", work, args)
            timings[f"in-language {target}"] = seconds
            score("in-language (human translate-train)", run_dir, [target])
    report(results, timings, args)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "macro_f1": results, "seconds": timings,
                                         "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    return 0


def translate_train(rows: list[dict[str, str]], target: str, model: str) -> list[dict[str, str]]:
    """English training rows through a Transformers MT model into the target language (NLLB codes when known)."""
    from transformers import pipeline

    translator = pipeline("translation", model=model, src_lang=NLLB_CODES["english"],
                          tgt_lang=NLLB_CODES.get(target, target))
    texts = [item["translation_text"] for item in translator([r["text"] for r in rows], batch_size=16)]
    return [{"text": text, "label": row["label"]} for text, row in zip(texts, rows, strict=True)]


def report(results: dict[str, dict[str, float]], timings: dict[str, float], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    columns = sorted({column for row in results.values() for column in row},
                     key=lambda c: (not c.startswith("from"), c))
    table = Table(title="NusaX-Senti test macro-F1 by language (bundled MiniLM encoder)")
    table.add_column("language")
    for column in columns:
        table.add_column(column, justify="right")
    for language in sorted(results, key=lambda lang: (lang not in args.sources, lang)):
        table.add_row(language, *(f"{results[language][c]:.3f}" if c in results[language] else "-"
                                  for c in columns))
    console = Console(width=160)
    console.print(table)
    console.print(f"published baseline (NusaX repository notebook): Naive Bayes, indonesian, macro-F1 {NB_INDONESIAN}")
    if not args.mt_model:
        console.print("translate-train with machine translation: not run (no English<->NusaX MT offline; Apertium "
                      "has no such pairs). Pass --mt-model (e.g. facebook/nllb-200-distilled-600M) where the hub is "
                      "reachable; the in-language column is its ceiling (human translations).")
    console.print("seconds per training run: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    console.print(f"machine: {machine()}")


if __name__ == "__main__":
    sys.exit(main())
