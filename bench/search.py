"""What does a hyperparameter study buy over the default recipe? A small real study, then both recipes scored.

A `tuneforge search` study (TPE, median pruning, >= 12 trials) tunes the learning rate, batch size, epochs and
frozen layers of `minilm` on a subsample of TweetEval emotion, comparing trials on the validation split only.
Then the default recipe and the study's best_recipe.yaml are each trained once more on the same rows and scored
on the held-out test split, which no trial saw. One command, one table:

    python bench/search.py                            # 120 training tweets, 12 trials
    python bench/search.py --trials 3 --train-rows 60 --validation-rows 40    # quick smoke run

Data: ../shared/data/tweeteval/emotion, as read by bench/quality.py.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import DEFAULT_DATA_DIR, Split, drop_blank, machine, read_task, write_csv  # noqa: E402

SPACE = {
    "train.learning_rate": {"type": "float", "low": 1e-5, "high": 3e-4, "log": True},
    "train.batch_size": {"type": "categorical", "choices": [16, 32]},
    "train.epochs": {"type": "int", "low": 1, "high": 2},
    "freeze.layers": {"type": "int", "low": 0, "high": 4},
}
# The same settings for every run, trials and both final runs: short tweets, the last epoch's weights (no
# checkpoints written), and no after-training extras (explanations, fairness audit), which cost time and change
# no score.
COMMON = {"train": {"max_length": 64, "save_checkpoints": False}, "early_stopping": {"restore_best": False},
          "evaluation": {"explain_examples": 0}, "fairness": {"identity_categories": []}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--task", default="emotion", help="TweetEval task folder (default: emotion)")
    parser.add_argument("--train-rows", type=int, default=120, help="first N training tweets (default 120)")
    parser.add_argument("--validation-rows", type=int, default=80, help="first N validation tweets (default 80)")
    parser.add_argument("--trials", type=int, default=12, help="trial budget (default 12)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return parser.parse_args(argv)


def _head(split: Split, rows: int) -> Split:
    return Split(split.texts[:rows], split.labels[:rows])


def _final_run(recipe_data: dict[str, Any], files: dict[str, Path], output: Path) -> dict[str, Any]:
    """Train one recipe on the training rows and score it on the test split."""
    from tuneforge.recipe import recipe_from_dict
    from tuneforge.train.skeleton import fine_tune

    data = json.loads(json.dumps(recipe_data))
    data["data"] = {**data.get("data", {}), **{role: str(path) for role, path in files.items()}}
    data["output"] = {"dir": str(output), "overwrite": True}
    started = time.time()
    run = fine_tune(recipe_from_dict(data, source=str(output)))
    return {"validation_f1_macro": run.metrics["validation"]["f1_macro"],
            "test_accuracy": run.metrics["test"]["accuracy"], "test_f1_macro": run.metrics["test"]["f1_macro"],
            "wall_seconds": time.time() - started, "steps": run.metrics["training"]["global_steps"]}


def _describe(recipe: Any) -> str:
    spec = recipe.train
    return (f"lr {spec.learning_rate:.2g}, batch {spec.batch_size}, {spec.epochs:g} epochs, "
            f"{recipe.freeze.layers} frozen layers")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    splits, classes = read_task(args.data_dir / "tweeteval" / args.task, None)
    splits = {role: drop_blank(split)[0] for role, split in splits.items()}
    splits["train"] = _head(splits["train"], args.train_rows)
    splits["validation"] = _head(splits["validation"], args.validation_rows)

    with tempfile.TemporaryDirectory(prefix="tuneforge-bench-search-") as scratch:
        workdir = Path(scratch)
        os.environ["HF_DATASETS_CACHE"] = str(workdir / "hf-datasets")
        import optuna

        from tuneforge.cli.common import quiet_libraries
        from tuneforge.recipe import Recipe, load_recipe, recipe_from_dict
        from tuneforge.search import run_study
        from tuneforge.search.space import recipe_data

        quiet_libraries()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        files = {role: write_csv(workdir / f"{role}.csv", split) for role, split in splits.items()}
        search_files = {role: str(files[role]) for role in ("train", "validation")}  # no test split in trials
        study_recipe = recipe_from_dict({**COMMON, "data": search_files, "search": {
            "trials": args.trials, "sampler": "tpe", "pruner": "median", "seed": 0, "dir": str(workdir / "study"),
            "space": SPACE}})

        print(f"study: {args.trials} trials on {len(splits['train'].texts)} tweets ...", file=sys.stderr)
        started = time.time()
        result = run_study(study_recipe, workers=args.workers,
                           on_trial=lambda row: print(f"  trial {row.number}: {row.state.lower()} "
                                                      f"{row.value if row.value is not None else '-'} "
                                                      f"{row.params}", file=sys.stderr))
        study_seconds = time.time() - started
        if result.best_recipe is None:
            print("error: no trial completed", file=sys.stderr)
            return 1
        best = load_recipe(result.best_recipe)
        default = recipe_from_dict(COMMON)

        print("training the default recipe and the best recipe, scoring both on test ...", file=sys.stderr)
        scores = {
            "default": _final_run(recipe_data(default), files, workdir / "default"),
            "best": _final_run(recipe_data(best), files, workdir / "best"),
        }
        completed, pruned = result.count("COMPLETE"), result.count("PRUNED")
        describe = {"default": _describe(Recipe()), "best": _describe(best)}

    host = machine()
    sizes = {role: len(split.texts) for role, split in splits.items()}
    report(scores, describe, host, sizes, classes, completed, pruned, study_seconds, result.best.value)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": host, "splits": sizes, "scores": scores, "recipes": describe,
                                         "trials": {"completed": completed, "pruned": pruned},
                                         "study_seconds": study_seconds}, indent=2) + "\n", encoding="utf-8")
    return 0


def report(scores: dict[str, dict[str, Any]], describe: dict[str, str], host: dict[str, Any], sizes: dict[str, int],
           classes: list[str], completed: int, pruned: int, study_seconds: float, best_value: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="TweetEval emotion: default recipe vs the study's best recipe (held-out test split)")
    for column in ("recipe", "settings", "validation macro-F1", "test accuracy", "test macro-F1", "train + eval s"):
        table.add_column(column, justify="left" if column in ("recipe", "settings") else "right")
    for name in ("default", "best"):
        score = scores[name]
        table.add_row(f"{name} recipe", describe[name], f"{score['validation_f1_macro']:.4f}",
                      f"{score['test_accuracy']:.4f}", f"{score['test_f1_macro']:.4f}",
                      f"{score['wall_seconds']:.0f}")
    Console(width=160).print(table)
    gpu = f", GPU {host['gpu']}" if host["gpu"] else ", no GPU"
    print(f"machine: {host['cpu']}, {host['cores']} cores, torch threads {host['torch_threads']}{gpu}; "
          f"torch {host['torch']}")
    print(f"data: {', '.join(f'{role} {n}' for role, n in sizes.items())} tweets; {len(classes)} classes")
    print(f"study: {completed + pruned} trials ({completed} completed, {pruned} pruned), best validation "
          f"macro-F1 {best_value:.4f}, {study_seconds:.0f} s = "
          f"{study_seconds / scores['default']['wall_seconds']:.1f}x one default run")
    gain = scores["best"]["test_f1_macro"] - scores["default"]["test_f1_macro"]
    print(f"test macro-F1, best - default: {gain:+.4f} ({100 * gain:+.1f} points); ratio "
          f"{scores['best']['test_f1_macro'] / scores['default']['test_f1_macro']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
