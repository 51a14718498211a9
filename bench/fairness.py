"""Does tuneforge's training-time bias mitigation make its default model fairer? Measure it on real hate speech.

`fairness.mitigation` promises fewer identity-driven decisions; a claim like that is only worth something next to
the same audit of an unmitigated run. This script fine-tunes the default recipe (bundled `minilm`) twice on
TweetEval hate (SemEval-2019 HatEval: hate speech against women and immigrants), from the same seed and the same
rows, once with `mitigation: none` and once with a mitigation, audits both runs on the test split with
`tuneforge.evaluate.fairness_audit.audit` (the code behind `tuneforge fairness`) and prints one before/after
markdown table:

    python bench/fairness.py                                   # none vs counterfactual_augmentation, ~10 min on 2 cores
    python bench/fairness.py --mitigation both                 # none vs reweight vs counterfactual_augmentation
    python bench/fairness.py --train-rows 200 --test-rows 300 --epochs 1   # quick smoke run

The data has no demographic column, so groups come from the shipped identity-term lists (default categories:
gender and immigration_status, the two targets of HatEval). The data is read from
../shared/data/tweeteval/hate/ beside the repository, as bench/quality.py does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # run as a script: bench/ is on sys.path
    from quality import DEFAULT_DATA_DIR, REPO_ROOT, Split, drop_blank, machine, read_task, write_csv
except ImportError:  # imported as bench.fairness from the repository root (pytest's pythonpath)
    from bench.quality import DEFAULT_DATA_DIR, REPO_ROOT, Split, drop_blank, machine, read_task, write_csv

TASK = "hate"
POSITIVE = "hate"  # mapping.txt: 0 not-hate, 1 hate
MITIGATIONS = ("reweight", "counterfactual_augmentation")
DEFAULT_OUTPUT = REPO_ROOT / "runs" / "bench" / "fairness.json"  # runs/ is git-ignored; bench/results is not
# Measured with this script on 2 idle EPYC cores: ~44 training samples/s. 1000 rows x 3 epochs (1322 rows with
# gender augmentation), per-epoch validation and fine_tune's own test scoring and audit take 137 s and 158 s.
DEFAULT_TRAIN_ROWS = 1000
DEFAULT_VAL_ROWS = 500


@dataclass
class Variant:
    """One trained and audited run: what the table needs, plus the full audit report for the JSON."""

    mitigation: str
    run_dir: Path
    metrics: dict[str, Any]
    data_summary: dict[str, Any]
    report: dict[str, Any]
    train_seconds: float
    audit_seconds: float
    load_average: tuple[float, float]  # 1-minute load before training and after the audit: was the CPU shared?
    in_run_audit_agrees: bool | None  # None: the run wrote no fairness.json of its own


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="shared data folder holding tweeteval/hate/ (default: ../shared/data beside the repo)")
    parser.add_argument("--mitigation", choices=(*MITIGATIONS, "both"), default="counterfactual_augmentation",
                        help="mitigation compared with `none` (default: counterfactual_augmentation)")
    parser.add_argument("--category", dest="categories", action="append", metavar="NAME",
                        help="identity-term category used for the groups, the probe and the mitigation; "
                             "repeatable (default: gender and immigration_status, the targets of this data)")
    parser.add_argument("--train-rows", type=int, default=DEFAULT_TRAIN_ROWS,
                        help=f"stratified seeded sample of the 9000 training tweets; 0 = all (default: "
                             f"{DEFAULT_TRAIN_ROWS}, so each training takes about 3 minutes on 2 CPU cores)")
    parser.add_argument("--val-rows", type=int, default=DEFAULT_VAL_ROWS,
                        help="stratified seeded sample of the 1000 validation tweets, evaluated each epoch; "
                             f"0 = all (default: {DEFAULT_VAL_ROWS})")
    parser.add_argument("--test-rows", type=int, default=0,
                        help="stratified seeded sample of the 2970 test tweets audited; 0 = all (default)")
    parser.add_argument("--seed", type=int, default=42,
                        help="seed of the row samples and of train.seed, the same for every variant (default: 42)")
    parser.add_argument("--epochs", type=float, help="override train.epochs of the default recipe")
    parser.add_argument("--min-group-rows", type=int, default=20,
                        help="groups with fewer test rows are left out of the printed table, not the JSON "
                             "(default: 20)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="extra recipe override, as `tuneforge train --set` (repeatable)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="JSON with both audit reports (default: runs/bench/fairness.json, git-ignored)")
    return parser.parse_args(argv)


def sample(split: Split, rows: int, seed: int) -> Split:
    """A label-stratified seeded sample, so a cheaper run keeps the class balance of the full split."""
    if rows <= 0 or rows >= len(split.texts):
        return split
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(list(range(len(split.texts))), train_size=rows, stratify=split.labels,
                               random_state=seed)
    keep = sorted(keep)
    return Split([split.texts[i] for i in keep], [split.labels[i] for i in keep])


def group_sizes(split: Split) -> dict[str, dict[str, dict[str, int]]]:
    """Rows per inferred group and label for every shipped category: shows which categories this data can audit."""
    from tuneforge.augment.identity import infer_groups, load_terms

    terms = load_terms()
    sizes: dict[str, dict[str, dict[str, int]]] = {}
    for category in terms:
        counts = Counter((group, label) for group, label in
                         zip(infer_groups(split.texts, category, terms), split.labels, strict=True) if group)
        groups = dict.fromkeys(group for group, _ in sorted(counts, key=lambda key: -counts[key]))
        sizes[category] = {group: {"rows": sum(n for (g, _), n in counts.items() if g == group),
                                   POSITIVE: counts[(group, POSITIVE)]} for group in groups}
    return sizes


def train_and_audit(mitigation: str, files: dict[str, Path], output: Path, categories: list[str],
                    overrides: list[str]) -> Variant:
    """Fine-tune the default recipe with one mitigation, then audit the run on the test file it was scored on."""
    from transformers import TrainerCallback

    from tuneforge.evaluate.fairness_audit import audit, read_audit_data
    from tuneforge.predict import Predictor
    from tuneforge.recipe import recipe_from_dict
    from tuneforge.train.skeleton import fine_tune

    class Progress(TrainerCallback):
        """Core tuneforge never prints; a line per evaluation shows a long CPU run is alive."""

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                        **kwargs: Any) -> None:
            f1 = (metrics or {}).get("eval_f1_macro", float("nan"))
            print(f"  [{mitigation}] epoch {state.epoch:.2f}: validation macro-F1 {f1:.4f} "
                  f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)

    def warn(problems: list[Any]) -> None:
        for problem in problems:
            print(f"  [{mitigation}] data warning: {problem}", file=sys.stderr, flush=True)

    # identity_categories goes in the dict, not through --set: see parse_override and list fields.
    recipe = recipe_from_dict(
        {"task": "classification", "data": {role: str(path) for role, path in files.items()},
         "output": {"dir": str(output)},
         "fairness": {"identity_categories": categories, "positive_label": POSITIVE, "counterfactual": True,
                      "mitigation": mitigation}},
        overrides, source="bench/fairness.py")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    run = fine_tune(recipe, callbacks=[Progress()], on_warnings=warn)
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    predictor = Predictor.from_run(run.directory)
    data = read_audit_data(predictor, files["test"], [])
    report = audit(predictor, data, run.recipe.fairness)
    audit_seconds = time.perf_counter() - started
    summary = json.loads(run.layout.data_summary.read_text(encoding="utf-8"))
    # fine_tune audits its own test split into fairness.json; the same model on the same rows must agree.
    agrees = None
    if run.layout.fairness.is_file():
        saved = json.loads(run.layout.fairness.read_text(encoding="utf-8"))
        mine = json.loads(json.dumps(report))
        agrees = all(saved.get(key) == mine.get(key) for key in ("attributes", "counterfactual"))
    return Variant(mitigation, run.directory, run.metrics, summary, report, train_seconds, audit_seconds,
                   (load_before, os.getloadavg()[0]), agrees)


def _fmt(value: Any, digits: int = 3) -> str:
    from tuneforge.cli.display import fmt

    return fmt(value, digits)


def _delta(before: Any, after: Any, digits: int = 3) -> str:
    if not isinstance(before, (int, float)) or not isinstance(after, (int, float)):
        return "-"
    if isinstance(before, int) and isinstance(after, int):
        return f"{after - before:+d}"
    return f"{after - before:+.{digits}f}"


def table_rows(variant: Variant, categories: list[str], shown: dict[str, list[str]]
               ) -> list[tuple[str, Any, int]]:
    """(row label, value, digits) for one variant; every variant yields the same labels in the same order."""
    test, training = variant.metrics["test"], variant.metrics["training"]
    rows: list[tuple[str, Any, int]] = [
        ("test macro-F1", float(test["f1_macro"]), 4),
        ("test accuracy", float(test["accuracy"]), 4),
        ("training rows (after mitigation)", int(training["train_examples"]), 0),
        ("optimisation steps", int(training["global_steps"]), 0),
        ("training wall time (s)", round(variant.train_seconds, 1), 1),
        ("audit wall time (s)", round(variant.audit_seconds, 1), 1),
    ]
    probe = (variant.report.get("counterfactual") or {}).get("categories", {})
    for category in categories:
        result = variant.report["attributes"][category]
        rows += [(f"{category}: demographic-parity difference", result["demographic_parity_difference"], 3),
                 (f"{category}: equalised-odds difference", result["equalized_odds_difference"], 3)]
        for group in shown[category]:
            metrics = result["groups"].get(group, {})
            rows += [(f"{category}: selection rate '{POSITIVE}', {group}", metrics.get("selection_rate"), 3),
                     (f"{category}: FPR, {group}", metrics.get("false_positive_rate"), 3),
                     (f"{category}: FNR, {group}", metrics.get("false_negative_rate"), 3)]
        counterfactual = probe.get(category, {})
        rows += [(f"{category}: counterfactual flip rate", counterfactual.get("flip_rate"), 3),
                 (f"{category}: counterfactual mean abs. change in P({POSITIVE})",
                  counterfactual.get("mean_abs_change"), 4)]
        for swap, figures in sorted((counterfactual.get("swaps") or {}).items()):
            rows.append((f"{category}: flip rate {swap} ({figures['pairs']} pairs)", figures["flip_rate"], 3))
    return rows


def print_table(variants: list[Variant], categories: list[str], min_group_rows: int, notes: list[str]) -> None:
    """One markdown table: a row per figure, a column per variant, and the change against `none` after each."""
    baseline = variants[0]
    shown = {category: [group for group in baseline.report["attributes"][category]["compared_groups"]
                        if baseline.report["attributes"][category]["groups"][group]["count"] >= min_group_rows]
             for category in categories}
    # Swap names depend on what each model's probe produced; keep the union so every variant has every row.
    columns = [dict((label, (value, digits)) for label, value, digits in table_rows(v, categories, shown))
               for v in variants]
    labels = list(dict.fromkeys(label for column in columns for label in column))
    header = ["figure", "none"]
    for variant in variants[1:]:
        header += [variant.mitigation, "change"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for label in labels:
        before, digits = columns[0].get(label, (None, 3))
        cells = [label, _fmt(before, digits)]
        for column in columns[1:]:
            after, _ = column.get(label, (None, digits))
            cells += [_fmt(after, digits), _delta(before, after, digits)]
        print("| " + " | ".join(cells) + " |")
    print()
    for note in notes:
        print(f"- {note}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    categories = list(dict.fromkeys(args.categories or ["gender", "immigration_status"]))
    mitigations = ["none", *(MITIGATIONS if args.mitigation == "both" else (args.mitigation,))]
    splits, classes = read_task(args.data_dir / "tweeteval" / TASK, None)
    full = {role: len(split.texts) for role, split in splits.items()}
    cleaned = {role: drop_blank(split) for role, split in splits.items()}
    blank = {role: dropped for role, (_, dropped) in cleaned.items()}
    splits = {role: split for role, (split, _) in cleaned.items()}
    wanted = {"train": args.train_rows, "validation": args.val_rows, "test": args.test_rows}
    splits = {role: sample(split, wanted[role], args.seed) for role, split in splits.items()}
    sizes = {role: len(split.texts) for role, split in splits.items()}
    # Explanations of a few test rows (SHAP etc.) cost ~25 s a run and measure nothing here.
    overrides = [f"train.seed={args.seed}", "evaluation.explain_examples=0"]
    overrides += [f"train.epochs={args.epochs}"] if args.epochs is not None else []
    overrides += args.sets

    with tempfile.TemporaryDirectory(prefix="tuneforge-fairness-") as scratch:
        workdir = Path(scratch)
        # A benchmark should measure cold runs and leave nothing behind, so `datasets` caches in the scratch folder.
        os.environ["HF_DATASETS_CACHE"] = str(workdir / "hf-datasets")
        from tuneforge.augment.identity import load_terms
        from tuneforge.cli.common import quiet_libraries
        from tuneforge.errors import TuneforgeError

        quiet_libraries()
        try:
            load_terms(categories)
        except TuneforgeError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        found = group_sizes(splits["test"])
        print(f"identity groups found on the test rows used ({sizes['test']}); audited: {', '.join(categories)}",
              file=sys.stderr)
        for category, groups in found.items():
            listed = ", ".join(f"{g} {n['rows']} ({POSITIVE} {n[POSITIVE]})" for g, n in groups.items()) or "none"
            print(f"  {'*' if category in categories else ' '} {category}: {listed}", file=sys.stderr)
        files = {role: write_csv(workdir / f"{role}.csv", split) for role, split in splits.items()}
        variants = []
        for mitigation in mitigations:
            print(f"tuneforge: fine-tuning the default recipe, mitigation {mitigation}, on {sizes['train']} tweets "
                  "(minutes on a CPU) ...", file=sys.stderr, flush=True)
            try:
                variants.append(train_and_audit(mitigation, files, workdir / f"run-{mitigation}", categories,
                                                overrides))
            except TuneforgeError as error:
                print(f"error: tuneforge failed ({mitigation}): {error}", file=sys.stderr)
                return 1

    host = machine()
    gpu = f", GPU {host['gpu']}" if host["gpu"] else ", no GPU"
    model = variants[0].metrics["model"]
    subsets = ", ".join(f"{role} {sizes[role]} of {full[role]}" for role in sizes)
    print(f"### TweetEval hate: fairness of tuneforge's default recipe ({model}) before and after mitigation")
    print(f"rows used (stratified, seed {args.seed}): {subsets}; identity categories: {', '.join(categories)}; "
          f"positive label '{POSITIVE}'\n")
    notes = [
        f"machine: {host['cpu']}, {host['cores']} cores, torch threads {host['torch_threads']}{gpu}; "
        f"torch {host['torch']}, python {host['python']}",
        f"classes: {', '.join(classes)}; same seed ({args.seed}) and rows for every variant; recipe overrides: "
        f"{', '.join(overrides)}; empty tweets dropped before sampling: "
        + ", ".join(f"{role} {n}" for role, n in blank.items()),
        "groups inferred from the shipped identity terms; 'multiple' (texts naming both) is shown in the JSON but "
        f"not compared; per-group rows list groups with >= {args.min_group_rows} test rows",
        "test group sizes: " + "; ".join(
            f"{c}: " + ", ".join(f"{g} {n['rows']}" for g, n in found[c].items()) for c in categories),
    ]
    for variant in variants[1:]:
        notes.append(f"{variant.mitigation}: {json.dumps(variant.data_summary.get('mitigation'))}")
    notes.append("run's own fairness.json (written by fine_tune) equals this audit: " + ", ".join(
        f"{v.mitigation} {'-' if v.in_run_audit_agrees is None else v.in_run_audit_agrees}" for v in variants))
    notes.append("wall time per variant (training + audit): " + ", ".join(
        f"{v.mitigation} {v.train_seconds + v.audit_seconds:.0f} s" for v in variants))
    notes.append(f"1-minute load average before / after each variant ({host['cores']} cores; above ~2.5 means "
                 "another process shared the CPU and wall times are inflated): " + ", ".join(
                     f"{v.mitigation} {v.load_average[0]:.1f} / {v.load_average[1]:.1f}" for v in variants))
    print_table(variants, categories, args.min_group_rows, notes)

    results = {
        "dataset": f"TweetEval {TASK}", "classes": classes, "positive_label": POSITIVE, "categories": categories,
        "seed": args.seed, "rows_used": sizes, "rows_available": full,
        "empty_tweets_dropped": blank, "overrides": overrides, "machine": host,
        "test_group_sizes": found,
        "variants": {v.mitigation: {
            "test": {key: v.metrics["test"].get(key) for key in ("accuracy", "f1_macro")},
            "validation_f1_macro": v.metrics.get("validation", {}).get("f1_macro"),
            "training": v.metrics["training"], "mitigation": v.data_summary.get("mitigation"),
            "train_seconds": v.train_seconds, "audit_seconds": v.audit_seconds, "load_average": v.load_average,
            "in_run_audit_agrees": v.in_run_audit_agrees,
            "audit": v.report,
        } for v in variants},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nfull audit reports: {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
