"""Group reweighting, the `fairness.mitigation: reweight` step of data preparation: Kamiran & Calders (2012).

Each row gets w = P(group) P(label) / P(group, label), so in the weighted data every group has the same label
distribution and the label no longer tells the model anything about the group. It is a pure function over the
training rows; the trainer decides how to use the weights. (The other mitigation, counterfactual augmentation,
adds rows and lives with the augmenters in `augment.counterfactual`.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from tuneforge.augment.identity import is_missing_group


def group_reweighting(groups: Sequence[Any], labels: Sequence[Hashable]) -> np.ndarray:
    """One weight per row: P(group) P(label) / P(group, label) over the rows that have a group; 1 for the rest.

    Probabilities are estimated on the grouped rows only, so the weighted label distribution is exactly the same
    in every group (a group lacking a label entirely cannot gain it by weighting). The weights of grouped rows
    sum to their count, so the overall scale of the loss does not change.
    """
    if len(groups) != len(labels):
        raise ValueError("groups and labels must have the same length")
    weights = np.ones(len(labels), dtype=float)
    rows = [i for i, group in enumerate(groups) if not is_missing_group(group)]
    if not rows:
        return weights
    total = len(rows)
    group_counts = Counter(groups[i] for i in rows)
    label_counts = Counter(labels[i] for i in rows)
    cell_counts = Counter((groups[i], labels[i]) for i in rows)
    for i in rows:
        group, label = groups[i], labels[i]
        weights[i] = group_counts[group] * label_counts[label] / (total * cell_counts[(group, label)])
    return weights
