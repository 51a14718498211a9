"""What a finished run gets after its metrics: a fairness audit, example explanations, report.html.

Each step reads only the saved run directory and the held-out test split, so it sees exactly what a later
`tuneforge fairness`, `explain` or `report` would. None of them may cost the user a finished training: a
failing step becomes a warning that names the command to run it again, and the next step still runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import datasets

from tuneforge import artifacts
from tuneforge.data import validation as checks
from tuneforge.errors import Problem, TuneforgeError
from tuneforge.recipe import Recipe
from tuneforge.run import RunLayout


def wants_fairness_audit(recipe: Recipe) -> bool:
    fairness = recipe.fairness
    return recipe.task == "classification" and bool(fairness.sensitive_columns or fairness.identity_categories)


def audit_test_split(layout: RunLayout, recipe: Recipe, test: datasets.Dataset, predictor: Any) -> dict[str, Any]:
    """The fairness audit of the test split, written as fairness.json (the report's fairness table)."""
    from tuneforge.augment.identity import is_missing_group
    from tuneforge.evaluate.fairness_audit import AuditData, audit

    spec = recipe.data
    missing = [column for column in recipe.fairness.sensitive_columns if column not in test.column_names]
    if missing:
        raise TuneforgeError(f"the test split has no column {', '.join(missing)}",
                             fix="add the sensitive columns to the test file, or fix fairness.sensitive_columns")
    data = AuditData(
        path=str(spec.test or f"{spec.train} (test split carved from it)"),
        texts=[str(text) for text in test[spec.text_column]],
        pairs=[str(pair) for pair in test[spec.text_pair_column]] if spec.text_pair_column else None,
        labels=[checks.label_key(value) for value in test[spec.label_column]],
        sensitive={column: [None if is_missing_group(v) else checks.label_key(v) for v in test[column]]
                   for column in recipe.fairness.sensitive_columns},
    )
    report = {"run": str(layout.root), **audit(predictor, data, recipe.fairness)}
    artifacts.write_json(layout.fairness, report)
    return report


def explain_test_examples(layout: RunLayout, recipe: Recipe, test: datasets.Dataset, predictor: Any) -> None:
    """The first `evaluation.explain_examples` test rows, explained with every method, into explanations/."""
    from tuneforge.explain.pipeline import ExplainSettings, explain_texts, parse_methods, write_explanations

    spec = recipe.data
    rows = test.select(range(min(recipe.evaluation.explain_examples, len(test))))
    texts = [str(text) for text in rows[spec.text_column]]
    pairs = [str(pair) for pair in rows[spec.text_pair_column]] if spec.text_pair_column else None
    methods = parse_methods(recipe.evaluation.explain_methods, recipe.task)
    if recipe.task != "classification":  # the gradient and model-agnostic methods explain class probabilities
        methods = tuple(method for method in methods if method == "attention") or ("attention",)
    settings = ExplainSettings(methods=methods, seed=recipe.train.seed)
    results = explain_texts(predictor, texts, settings, pairs)
    write_explanations(results, layout.explanations, source="test split",
                       title=f"Explanations for {layout.root.name}")


def finish_run(layout: RunLayout, recipe: Recipe, steps: list[tuple[str, str, Callable[[], Any]]],
               on_warnings: Callable[[list[Problem]], None] | None = None,
               on_progress: Callable[[str, int, int], None] | None = None) -> list[Problem]:
    """Run the run kind's after-training steps, then the report; returns (and reports) the ones that failed.

    Each step's time goes into metrics.json (`post_training_seconds`), so a slow end of a run is visible.
    """
    from tuneforge.report.html import build_report

    steps = [*steps, ("report", f"tuneforge report {layout.root}", lambda: build_report(layout.root))]
    failures, seconds = [], {}
    for number, (name, command, step) in enumerate(steps, 1):
        if on_progress is not None:  # (step name, its number, how many): the CLI shows the end of a run
            on_progress(name, number, len(steps))
        if name == "report":
            _record_times(layout, seconds)  # the report shows them
        started = time.perf_counter()
        try:
            step()
        except Exception as error:  # noqa: BLE001 - the trained model is safe on disk; say what failed, go on
            failures.append(Problem(where=str(layout.root), severity="warning",
                                    message=f"the {name} after training failed: {error}",
                                    fix=f"run it again with `{command}`"))
        seconds[name] = round(time.perf_counter() - started, 3)
    _record_times(layout, seconds)
    if failures and on_warnings is not None:
        on_warnings(failures)
    return failures


def _record_times(layout: RunLayout, seconds: dict[str, float]) -> None:
    if layout.metrics.is_file():
        metrics = json.loads(layout.metrics.read_text(encoding="utf-8"))
        metrics["post_training_seconds"] = dict(seconds)
        artifacts.write_json(layout.metrics, metrics)
