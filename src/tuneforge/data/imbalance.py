"""The imbalance report: class counts of the training split, the imbalance ratio, rare classes, and advice.

Computed on the split as it came from the data (before oversampling and augmentation add rows), so the
figures describe the data the user has rather than what tuneforge made of it.
"""

from __future__ import annotations

from typing import Any

from tuneforge.data.class_weights import decide_class_weights
from tuneforge.errors import Problem
from tuneforge.recipe import Recipe


def imbalance_report(counts: dict[str, int], recipe: Recipe, weights_on: bool | None = None) -> dict[str, Any]:
    """{class_counts, shares, imbalance_ratio, majority, minority, rare_classes, class_weights_on, advice}."""
    spec = recipe.imbalance
    total = sum(counts.values())
    present = {name: n for name, n in counts.items() if n > 0}
    if not total or not present:
        return {"class_counts": counts, "imbalance_ratio": None, "rare_classes": [], "advice": []}
    ratio = max(present.values()) / min(present.values())
    largest = max(present.values())
    # Few rows alone is a small data set, not imbalance: a class is rare by its share, or by having few rows
    # and less than half of what the largest class has.
    rare = sorted((name for name, n in counts.items()
                   if n / total < spec.rare_class_share or (n < spec.rare_class_rows and 2 * n < largest)),
                  key=lambda k: counts[k])
    if weights_on is None:  # the run's decision when it has one; else the same rule on these counts
        weights_on = decide_class_weights(recipe, list(counts), list(counts.values())).on
    return {
        "class_counts": counts,
        "shares": {name: round(n / total, 4) for name, n in counts.items()},
        "imbalance_ratio": round(ratio, 3),
        "majority": max(present, key=lambda k: present[k]),
        "minority": min(present, key=lambda k: present[k]),
        "rare_classes": rare,
        "class_weights_on": weights_on,
        "advice": advice(recipe, weights_on) if rare else [],
    }


def advice(recipe: Recipe, weights_on: bool) -> list[str]:
    """What to do about a rare class, leaving out what the recipe already does."""
    tips = []
    if not weights_on and recipe.loss_name() not in ("weighted_cross_entropy", "focal"):
        tips.append("weight the loss by class (imbalance.class_weights: on, or loss.class_weights: balanced)")
    if recipe.task == "classification" and not recipe.imbalance.oversample:
        tips.append("oversample the rare classes (imbalance.oversample: true)")
    if recipe.loss_name() != "focal" and recipe.task == "classification":
        tips.append("use the focal loss, which down-weights easy examples (loss.name: focal)")
    if not recipe.augment.enabled:
        tips.append("add augmented variants (augment.methods)")
    tips.append("collect or label more examples of the rare classes: nothing helps as much")
    return tips


def imbalance_warning(report: dict[str, Any], where: str) -> Problem | None:
    """One data warning naming the rare classes with their counts, and the advice as the fix."""
    rare = report.get("rare_classes") or []
    if not rare:
        return None
    counts, shares = report["class_counts"], report["shares"]
    listed = ", ".join(f"'{name}' ({counts[name]} rows, {shares[name]:.1%})" for name in rare)
    return Problem(where=where, severity="warning",
                   message=f"rare class(es) in training: {listed}; imbalance ratio {report['imbalance_ratio']:g} "
                           f"(largest / smallest class)",
                   fix="; ".join(report["advice"]))
