"""Group fairness of a classifier: per-group quality and error rates, and the disparities between groups.

Multi-class problems are compared one-vs-rest on one positive label (by default the minority class, where
unequal treatment usually costs most): selection rate is how often a group is predicted positive, and
false-positive/false-negative rates are the errors on that label. Metrics go through fairlearn's MetricFrame so
figures agree with the reference implementation, except that a rate with nothing to count (no actual negatives
for a false-positive rate) stays undefined instead of counting as 0.

Some data cannot answer the question at all, and then the result says "not assessable" with the reason instead
of reporting a parity that only looks perfect: fewer than two groups to compare, or a positive label the model
never (or always) predicts, which makes every selection rate 0 (or 1). Groups smaller than `min_group_size`
are left out with a note: one row's prediction is a selection rate of 0 or 1, not a measurement.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from fairlearn import metrics as fl
from sklearn.metrics import accuracy_score, f1_score

from tuneforge.augment.identity import is_missing_group
from tuneforge.errors import TuneforgeError

if TYPE_CHECKING:
    from tuneforge.recipe import FairnessSpec

GROUP_METRICS = ("count", "accuracy", "f1_macro", "selection_rate", "false_positive_rate", "false_negative_rate")
DISPARITIES = ("demographic_parity_difference", "demographic_parity_ratio",
               "equalized_odds_difference", "equalized_odds_ratio")


def _as_names(values: Sequence[Any], label_names: Sequence[str]) -> np.ndarray:
    """Labels as class names: integers index `label_names`, anything else is read as a name."""
    names = []
    known = set(label_names)
    for value in values:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            names.append(label_names[int(value)])
            continue
        name = str(value)
        if name not in known:
            raise ValueError(f"label {value!r} is not one of {list(label_names)}")
        names.append(name)
    return np.asarray(names, dtype=object)


def minority_label(y_true: Sequence[Any], label_names: Sequence[str]) -> str:
    """The rarest class that occurs in `y_true`; ties go to the class listed first."""
    counts = Counter(_as_names(y_true, label_names))
    present = [name for name in label_names if counts[name] > 0]
    if not present:
        raise ValueError("y_true is empty")
    return min(present, key=lambda name: counts[name])


def check_positive_label(positive_label: str, label_names: Sequence[str]) -> str:
    if positive_label not in label_names:
        raise TuneforgeError(f"positive label '{positive_label}' is not a class of this model",
                             fix=f"use one of {', '.join(label_names)} (fairness.positive_label or --positive-label)")
    return positive_label


def _number(value: Any) -> float | None:
    """JSON-ready: NaN (an undefined rate) becomes None."""
    value = float(value)
    return None if np.isnan(value) else value


# One-vs-rest rates on binarised arrays (1 = the positive label). A rate whose denominator is empty is
# undefined (NaN), not 0: fairlearn's own rate functions return 0 there, which would invent a disparity for a
# group that has, say, no actual negatives.
def _selection_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return fl.selection_rate(y_true, y_pred, pos_label=1)


def _false_positive_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return fl.false_positive_rate(y_true, y_pred, pos_label=1) if (y_true == 0).any() else np.nan


def _false_negative_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return fl.false_negative_rate(y_true, y_pred, pos_label=1) if (y_true == 1).any() else np.nan


def _true_positive_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return fl.true_positive_rate(y_true, y_pred, pos_label=1) if (y_true == 1).any() else np.nan


def _frame(true_names: np.ndarray, pred_names: np.ndarray, groups: np.ndarray, positive: str) -> fl.MetricFrame:
    binary_true = (true_names == positive).astype(int)
    binary_pred = (pred_names == positive).astype(int)
    # MetricFrame slices one y_true/y_pred pair per group; quality metrics need the class names, rates the
    # binarised labels, so rows carry an id and each metric looks up what it needs.
    ids = np.arange(len(true_names))

    def by_id(metric: Callable[..., float], source_true: np.ndarray, source_pred: np.ndarray
              ) -> Callable[[np.ndarray, np.ndarray], float]:
        def wrapped(row_true: np.ndarray, row_pred: np.ndarray) -> float:
            rows = np.asarray(row_true, dtype=int)
            return metric(source_true[rows], source_pred[rows])
        return wrapped

    metrics = {
        "count": fl.count,
        "accuracy": by_id(accuracy_score, true_names, pred_names),
        "f1_macro": by_id(partial(f1_score, average="macro", zero_division=0), true_names, pred_names),
        "selection_rate": by_id(_selection_rate, binary_true, binary_pred),
        "false_positive_rate": by_id(_false_positive_rate, binary_true, binary_pred),
        "false_negative_rate": by_id(_false_negative_rate, binary_true, binary_pred),
    }
    return fl.MetricFrame(metrics=metrics, y_true=ids, y_pred=ids, sensitive_features=pd.Series(groups, name="group"))


def _disparities(true_names: np.ndarray, pred_names: np.ndarray, groups: np.ndarray, positive: str
                 ) -> dict[str, float | None]:
    binary_true = (true_names == positive).astype(int)
    binary_pred = (pred_names == positive).astype(int)
    dp_difference = fl.demographic_parity_difference(binary_true, binary_pred, sensitive_features=groups)
    dp_ratio = fl.demographic_parity_ratio(binary_true, binary_pred, sensitive_features=groups)
    # Equalised odds is fairlearn's definition (worst of the TPR and FPR gaps) over the groups where each rate
    # is defined; fairlearn.metrics.equalized_odds_* would count an undefined rate as 0.
    rates = fl.MetricFrame(metrics={"tpr": _true_positive_rate, "fpr": _false_positive_rate},
                           y_true=binary_true, y_pred=binary_pred, sensitive_features=groups)
    differences = rates.difference(method="between_groups")
    ratios = rates.ratio(method="between_groups")
    return {
        "demographic_parity_difference": _number(dp_difference),
        "demographic_parity_ratio": _number(dp_ratio),
        "equalized_odds_difference": _number(differences.max()) if differences.notna().any() else None,
        "equalized_odds_ratio": _number(ratios.min()) if ratios.notna().any() else None,
    }


def group_metrics(y_true: Sequence[Any], y_pred: Sequence[Any], groups: Sequence[Any], label_names: Sequence[str],
                  positive_label: str | None = None, *, exclude_from_disparity: Collection[str] = (),
                  min_group_size: int = 1) -> dict[str, Any]:
    """Per-group metrics and between-group disparities for one sensitive attribute.

    Labels are class names or integer indices into `label_names`. Rows whose group is None (or NaN, or blank)
    are left out, and so are groups with fewer than `min_group_size` rows (listed in `small_groups`). Groups in
    `exclude_from_disparity` (e.g. texts naming several groups) are shown but not compared. Undefined rates (a
    group without actual negatives has no false-positive rate) are None. `assessable` is False, with the reason
    in `not_assessable`, when the figures cannot show a disparity whatever the model does.
    """
    label_names = [str(name) for name in label_names]
    if not (len(y_true) == len(y_pred) == len(groups)):
        raise ValueError("y_true, y_pred and groups must have the same length")
    true_names = _as_names(y_true, label_names)
    pred_names = _as_names(y_pred, label_names)
    positive = check_positive_label(positive_label, label_names) if positive_label is not None \
        else minority_label(true_names, label_names)
    keep = np.asarray([not is_missing_group(g) for g in groups], dtype=bool)
    sizes = Counter(str(g) for g, kept in zip(groups, keep, strict=True) if kept)
    small = {group: count for group, count in sorted(sizes.items()) if count < min_group_size}
    keep &= np.asarray([not kept or str(g) not in small for g, kept in zip(groups, keep, strict=True)], dtype=bool)
    group_values = np.asarray([str(g) for g, kept in zip(groups, keep, strict=True) if kept], dtype=object)
    result: dict[str, Any] = {
        "positive_label": positive,
        "examples": len(true_names),
        "examples_with_group": int(keep.sum()),
        "groups": {},
        "overall": None,
        "compared_groups": [],
        "gaps": {},
        **{name: None for name in DISPARITIES},
        "min_group_size": min_group_size,
        "small_groups": small,
        "assessable": False,
        "not_assessable": None,
    }
    if small:
        result["note"] = (f"left out {len(small)} group(s) with fewer than {min_group_size} rows: "
                          + ", ".join(f"{group} ({count})" for group, count in small.items()))
    if not keep.any():
        result["not_assessable"] = "no row has a group" + (f" of at least {min_group_size} rows" if small else "")
        return result
    true_kept, pred_kept = true_names[keep], pred_names[keep]
    frame = _frame(true_kept, pred_kept, group_values, positive)
    for group, row in frame.by_group.iterrows():
        result["groups"][str(group)] = {name: (int(row[name]) if name == "count" else _number(row[name]))
                                        for name in GROUP_METRICS}
    result["overall"] = {name: (int(frame.overall[name]) if name == "count" else _number(frame.overall[name]))
                         for name in GROUP_METRICS}

    compared = np.asarray([g not in exclude_from_disparity for g in group_values], dtype=bool)
    result["compared_groups"] = sorted(set(group_values[compared]))
    if len(result["compared_groups"]) < 2:
        found = ", ".join(result["compared_groups"]) or "none"
        sized = f" with at least {min_group_size} rows" if small else ""
        result["not_assessable"] = f"fewer than two groups{sized} to compare ({found})"
        return result
    table = frame.by_group.loc[result["compared_groups"]]
    result["gaps"] = {name: _number(table[name].max() - table[name].min())
                      for name in GROUP_METRICS if name != "count" and table[name].notna().any()}
    result.update(_disparities(true_kept[compared], pred_kept[compared], group_values[compared], positive))
    predicted_positive = (pred_kept[compared] == positive).mean()
    if predicted_positive in (0.0, 1.0):
        never = predicted_positive == 0.0
        result["not_assessable"] = (
            f"the model {'never' if never else 'always'} predicts '{positive}' for these rows, so every group's "
            f"selection rate is {0 if never else 1} and parity holds whatever the groups are; choose another "
            "positive label (--positive-label / fairness.positive_label) or audit on data where the model "
            "predicts both")
    result["assessable"] = result["not_assessable"] is None
    return result


def _threshold_breaches(report: dict[str, Any], figure: str, limit: float | None, setting: str) -> list[str]:
    if limit is None:
        return []
    breaches = []
    for attribute, result in (report.get("attributes") or {}).items():
        value = result.get(figure)
        if value is not None and value > limit:
            breaches.append(f"{figure.replace('_', ' ')} {value:.3f} on '{attribute}' exceeds {limit:g} "
                            f"(fairness.{setting})")
    return breaches


def fairness_verdict(report: dict[str, Any], spec: FairnessSpec) -> list[str]:
    """Every threshold of `spec` that the report breaches, one sentence each; empty means pass.

    `report` has `attributes` ({name: group_metrics result}) and optionally `counterfactual`
    ({"categories": {category: probe result}}), as `audit` and `fairness.json` hold them.
    """
    breaches = _threshold_breaches(report, "demographic_parity_difference",
                                   spec.max_demographic_parity_difference, "max_demographic_parity_difference")
    breaches += _threshold_breaches(report, "equalized_odds_difference",
                                    spec.max_equalized_odds_difference, "max_equalized_odds_difference")
    limit = spec.max_counterfactual_flip_rate
    categories = ((report.get("counterfactual") or {}).get("categories")) or {}
    if limit is not None:
        for category, probe in categories.items():
            rate = probe.get("flip_rate")
            if rate is not None and rate > limit:
                breaches.append(f"counterfactual flip rate {rate:.3f} on '{category}' exceeds {limit:g} "
                                "(fairness.max_counterfactual_flip_rate)")
    return breaches
