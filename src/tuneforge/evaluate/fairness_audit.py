"""A fairness audit of a trained run on labelled data: group metrics, counterfactual probe, verdict.

This is what `tuneforge fairness` prints and writes as fairness.json; it sits apart from `fairness.py` so the
metric functions stay free of models and files.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sklearn.metrics import accuracy_score, f1_score

from tuneforge.augment.identity import MULTIPLE, Terms, infer_groups, is_missing_group, load_terms
from tuneforge.data import validation as checks
from tuneforge.data.loading import read_table
from tuneforge.errors import DataError, Problem, TuneforgeError
from tuneforge.evaluate.counterfactual import counterfactual_probe
from tuneforge.evaluate.fairness import check_positive_label, fairness_verdict, group_metrics, minority_label
from tuneforge.evaluate.scoring import Scorable
from tuneforge.recipe import FairnessSpec

# Groups with fewer rows are left out of the audit (with a note): a handful of predictions measures nothing.
MIN_GROUP_SIZE = 5


@dataclass
class AuditData:
    """Labelled rows read with the run's columns, plus the sensitive columns asked for."""

    path: str
    texts: list[str]
    pairs: list[str] | None
    labels: list[str]
    sensitive: dict[str, list[str | None]]


def _sensitive_problems(path: str, columns: list[str], wanted: list[str]) -> list[Problem]:
    problems = []
    for column in wanted:
        if column in columns:
            continue
        close = difflib.get_close_matches(column, columns, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        problems.append(Problem(where=path, message=f"sensitive column '{column}' is missing (the file has: "
                                                    f"{', '.join(columns)})",
                                fix=f"{hint}fix --sensitive-column / fairness.sensitive_columns, or leave them "
                                    "out to infer groups from identity terms"))
    return problems


def read_audit_data(predictor: Scorable, path: str | Path, sensitive_columns: list[str]) -> AuditData:
    """Read and check a labelled file the way `tuneforge evaluate` does, listing every problem at once."""
    if predictor.labels is None:
        raise TuneforgeError("fairness metrics need a classification run",
                             fix="audit a run trained with task: classification")
    spec = predictor.recipe.data
    path = str(path)
    table = read_table(path, "test")
    required = [spec.text_column, spec.label_column] + ([spec.text_pair_column] if spec.text_pair_column else [])
    problems = checks.check_columns(path, table.column_names, required)
    problems += _sensitive_problems(path, table.column_names, sensitive_columns)
    if problems:
        raise DataError(problems)
    texts, raw_labels = table[spec.text_column], table[spec.label_column]
    problems += checks.check_texts(path, spec.text_column, texts)
    problems += checks.check_labels_present(path, spec.label_column, raw_labels)
    problems += checks.check_unseen_labels(path, spec.label_column, raw_labels, set(predictor.labels))
    if problems:
        raise DataError(problems)
    sensitive = {column: [None if is_missing_group(v) else checks.label_key(v) for v in table[column]]
                 for column in sensitive_columns}
    return AuditData(path=path, texts=[str(t) for t in texts],
                     pairs=[str(p) for p in table[spec.text_pair_column]] if spec.text_pair_column else None,
                     labels=[checks.label_key(v) for v in raw_labels], sensitive=sensitive)


def audit(predictor: Scorable, data: AuditData, spec: FairnessSpec, *, terms: Terms | None = None,
          counterfactual_limit: int | None = None, batch_size: int = 64,
          min_group_size: int = MIN_GROUP_SIZE) -> dict[str, Any]:
    """The fairness.json report: per-attribute group metrics, the counterfactual probe, thresholds, breaches.

    Groups come from `data.sensitive` when it has columns, otherwise from the identity terms of each category of
    `spec.identity_categories` (texts naming two groups form the group 'multiple', shown but not compared).
    Groups under `min_group_size` rows are left out. `passed` is False on a breach, True when nothing breached
    and at least one attribute could be assessed, and None when none could (`not_assessable` says why for each,
    e.g. the positive label is never predicted): a parity nobody could measure is no pass.
    """
    labels = predictor.labels
    if labels is None:
        raise TuneforgeError("fairness metrics need a classification run",
                             fix="audit a run trained with task: classification")
    if terms is None:
        terms = load_terms(spec.identity_categories, spec.identity_terms_file)
    positive = check_positive_label(spec.positive_label, labels) if spec.positive_label \
        else minority_label(data.labels, labels)
    predictions = predictor.predict(data.texts, data.pairs, batch_size=batch_size)
    predicted = [row["label"] for row in predictions]

    attributes: dict[str, Any] = {}
    if data.sensitive:
        for column, groups in data.sensitive.items():
            attributes[column] = {"source": "column",
                                  **group_metrics(data.labels, predicted, groups, labels, positive,
                                                  min_group_size=min_group_size)}
    else:
        searched = data.texts if data.pairs is None else [f"{t} {p}" for t, p in zip(data.texts, data.pairs,
                                                                                       strict=True)]
        for category in spec.identity_categories:
            groups = infer_groups(searched, category, terms)
            attributes[category] = {"source": "identity_terms",
                                    **group_metrics(data.labels, predicted, groups, labels, positive,
                                                    exclude_from_disparity=(MULTIPLE,),
                                                    min_group_size=min_group_size)}

    counterfactual = None
    if spec.counterfactual:
        probed = {category: terms[category] for category in spec.identity_categories}
        counterfactual = counterfactual_probe(predictor, data.texts, probed, counterfactual_limit, pairs=data.pairs,
                                              positive_label=positive, batch_size=batch_size)
    report: dict[str, Any] = {
        "data": data.path,
        "examples": len(data.texts),
        "accuracy": float(accuracy_score(data.labels, predicted)),
        "f1_macro": float(f1_score(data.labels, predicted, labels=list(labels), average="macro", zero_division=0)),
        "label_names": list(labels),
        "positive_label": positive,
        "group_source": "columns" if data.sensitive else "identity_terms",
        "attributes": attributes,
        "counterfactual": counterfactual,
        "thresholds": {
            "max_demographic_parity_difference": spec.max_demographic_parity_difference,
            "max_equalized_odds_difference": spec.max_equalized_odds_difference,
            "max_counterfactual_flip_rate": spec.max_counterfactual_flip_rate,
        },
    }
    report["breaches"] = fairness_verdict(report, spec)
    report["not_assessable"] = [f"{name}: {result['not_assessable']}" for name, result in attributes.items()
                                if result.get("not_assessable")]
    report["assessable"] = not attributes or any(result.get("assessable") for result in attributes.values())
    report["passed"] = False if report["breaches"] else (True if report["assessable"] else None)
    return report


COMPARED_FIGURES = ("demographic_parity_difference", "equalized_odds_difference")


def compare_audits(reports: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of a side-by-side table (one column per named audit) of the figures a mitigation should move:
    overall quality, disparities per attribute, counterfactual flip rate and mean change per category.

    Every audit must come from the same data and settings, otherwise the columns do not measure the same thing.
    """
    names = list(reports)
    datasets_seen = {report.get("data") for report in reports.values()}
    if len(datasets_seen) > 1:
        raise TuneforgeError("the audits to compare were made on different data",
                             fix="audit every run on the same file (one `tuneforge fairness ... --compare` call)")
    rows = [{"figure": figure, "scope": "all rows", **{name: reports[name].get(figure) for name in names}}
            for figure in ("accuracy", "f1_macro")]
    attributes = [a for a in reports[names[0]].get("attributes", {}) if any(
        (r.get("attributes", {}).get(a) or {}).get(COMPARED_FIGURES[0]) is not None for r in reports.values())]
    for attribute in attributes:
        for figure in COMPARED_FIGURES:
            rows.append({"figure": figure, "scope": attribute,
                         **{name: (reports[name].get("attributes", {}).get(attribute) or {}).get(figure)
                            for name in names}})
    categories = ((reports[names[0]].get("counterfactual") or {}).get("categories")) or {}
    for category, probe in categories.items():
        if not probe.get("pairs"):
            continue
        for figure in ("flip_rate", "mean_abs_change"):
            rows.append({"figure": f"counterfactual_{figure}", "scope": category,
                         **{name: (((reports[name].get("counterfactual") or {}).get("categories") or {})
                                   .get(category) or {}).get(figure) for name in names}})
    return rows
