"""Does fine-tuning the bundled encoder for NER beat memorising the training tags? One table, one run.

A token-classification model must beat the dictionary tagger every NER paper starts from: each word gets the tag
it most often had in training (unknown words get O), with I- tags that do not continue an entity repaired to B-.
Both sides are scored by the same entity-level seqeval F1 on MasakhaNER's test split:

    python bench/ner.py                        # Nigerian Pidgin (pcm): English-based, so the English encoder fits
    python bench/ner.py --language hau         # any language folder under masakhaner/
    python bench/ner.py --limit-train 300 --epochs 1   # quick smoke run

The data is read from ../shared/data/masakhaner/<language>/{train,dev,test}.txt beside the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

try:
    from quality import DEFAULT_DATA_DIR, machine
except ImportError:  # imported as bench.ner
    from bench.quality import DEFAULT_DATA_DIR, machine

FILES = {"train": "train.txt", "validation": "dev.txt", "test": "test.txt"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language", default="pcm", help="MasakhaNER language folder (default: pcm)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="shared data folder holding masakhaner/<language>/ (default: ../shared/data)")
    parser.add_argument("--epochs", type=float, help="override train.epochs of the default recipe")
    parser.add_argument("--limit-train", type=int, help="use only the first N training sentences (smoke runs)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="extra recipe override, as `tuneforge train --set` (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return parser.parse_args(argv)


def repair_bio(tags: list[str]) -> list[str]:
    """An I-X that does not continue an X entity starts one, as a reader of the tags would take it."""
    repaired, previous = [], "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        repaired.append(tag)
        previous = tag
    return repaired


class DictionaryTagger:
    """Most frequent training tag per word form, then per lower-cased form; O for unknown words."""

    def __init__(self, sentences: list[list[str]], tags: list[list[str]]) -> None:
        exact: dict[str, Counter[str]] = defaultdict(Counter)
        lower: dict[str, Counter[str]] = defaultdict(Counter)
        for words, labels in zip(sentences, tags, strict=True):
            for word, label in zip(words, labels, strict=True):
                exact[word][label] += 1
                lower[word.lower()][label] += 1
        self.exact = {word: counts.most_common(1)[0][0] for word, counts in exact.items()}
        self.lower = {word: counts.most_common(1)[0][0] for word, counts in lower.items()}

    def tag(self, words: list[str]) -> list[str]:
        return repair_bio([self.exact.get(word) or self.lower.get(word.lower(), "O") for word in words])


def run_baseline(data: dict[str, Any]) -> dict[str, Any]:
    from seqeval.metrics import f1_score, precision_score, recall_score

    started = time.perf_counter()
    tagger = DictionaryTagger(data["train"].tokens, data["train"].tags)
    predicted = [tagger.tag(words) for words in data["test"].tokens]
    truth = data["test"].tags
    return {"name": "baseline: most frequent training tag per word", "f1": float(f1_score(truth, predicted)),
            "precision": float(precision_score(truth, predicted)), "recall": float(recall_score(truth, predicted)),
            "wall_seconds": time.perf_counter() - started}


def run_tuneforge(files: dict[str, Path], output: Path, overrides: list[str]) -> dict[str, Any]:
    """The default recipe with task token-classification, through the public API."""
    import tuneforge

    recipe = {"task": "token-classification", "data": {role: str(path) for role, path in files.items()},
              "output": {"dir": str(output)}}
    started = time.perf_counter()
    run = tuneforge.fine_tune(recipe, overrides=overrides)
    wall = time.perf_counter() - started
    test = run.metrics["test"]
    return {"name": f"tuneforge default ({run.recipe.model.name})", "f1": test["f1"], "precision": test["precision"],
            "recall": test["recall"], "wall_seconds": wall, "validation_f1": run.metrics["validation"]["f1"],
            "per_type": test["per_type"], "epochs": run.metrics["training"]["epochs_completed"]}


def main(argv: list[str] | None = None) -> int:
    from tuneforge.data.conll import read_conll

    args = parse_args(argv)
    folder = args.data_dir / "masakhaner" / args.language
    missing = [str(folder / name) for name in FILES.values() if not (folder / name).is_file()]
    if missing:
        sys.exit(f"error: MasakhaNER data not found; missing {', '.join(missing)}\n"
                 "pass --data-dir pointing at the shared data folder that holds masakhaner/<language>/")
    data = {role: read_conll(folder / name) for role, name in FILES.items()}
    overrides = ([f"train.epochs={args.epochs}"] if args.epochs is not None else []) + args.sets
    with tempfile.TemporaryDirectory(prefix="tuneforge-ner-") as scratch:
        files = {role: folder / name for role, name in FILES.items()}
        if args.limit_train:
            train = data["train"]
            sentences = zip(train.tokens[:args.limit_train], train.tags[:args.limit_train], strict=True)
            small = Path(scratch) / "train.txt"
            small.write_text("\n\n".join("\n".join(f"{word} {tag}" for word, tag in zip(words, tags, strict=True))
                                         for words, tags in sentences) + "\n", encoding="utf-8")
            files["train"] = small
            data["train"] = read_conll(small)
        baseline = run_baseline(data)
        ours = run_tuneforge(files, Path(scratch) / "run", overrides)
    host = machine()
    sizes = {role: len(sentences) for role, sentences in data.items()}
    print(f"\nMasakhaNER {args.language}: entity-level F1 (seqeval) on the test split")
    print("| system | precision | recall | F1 | wall time |\n|---|---:|---:|---:|---:|")
    for score in (baseline, ours):
        print(f"| {score['name']} | {score['precision']:.4f} | {score['recall']:.4f} | {score['f1']:.4f} | "
              f"{score['wall_seconds']:.1f} s |")
    gpu = f", GPU {host['gpu']}" if host["gpu"] else ", no GPU"
    print(f"\nmachine: {host['cpu']}, {host['cores']} cores, torch threads {host['torch_threads']}{gpu}; "
          f"torch {host['torch']}, python {host['python']}")
    print(f"sentences: {', '.join(f'{role} {n}' for role, n in sizes.items())}; overrides: {overrides or 'none'}")
    print(f"F1, ours - baseline: {ours['f1'] - baseline['f1']:+.4f}; per type (ours): "
          + ", ".join(f"{kind} {row['f1']:.3f}" for kind, row in ours["per_type"].items()))
    if args.json:
        args.json.write_text(json.dumps({"machine": host, "sizes": sizes, "language": args.language,
                                         "baseline": baseline, "tuneforge": ours}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
