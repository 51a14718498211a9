"""Group reweighing (Kamiran & Calders): the weights by hand, and equal label shares in every group."""

from __future__ import annotations

import numpy as np
import pytest

from tuneforge.data.mitigation import group_reweighting


def weighted_label_shares(groups, labels, weights) -> dict:
    shares = {}
    for group in {g for g in groups if g is not None}:
        rows = [i for i, g in enumerate(groups) if g == group]
        total = sum(weights[i] for i in rows)
        shares[group] = {label: sum(weights[i] for i in rows if labels[i] == label) / total for label in set(labels)}
    return shares


def test_reweighting_hand_computed():
    groups = ["a"] * 6 + ["b"] * 4 + [None, None]
    labels = ["pos"] * 4 + ["neg"] * 2 + ["pos"] + ["neg"] * 3 + ["pos", "neg"]
    weights = group_reweighting(groups, labels)
    # On the 10 grouped rows: P(a) 0.6, P(b) 0.4, P(pos) = P(neg) = 0.5.
    # w(a,pos) = 0.6*0.5/0.4 = 0.75, w(a,neg) = 0.6*0.5/0.2 = 1.5, w(b,pos) = 0.4*0.5/0.1 = 2, w(b,neg) = 0.4*0.5/0.3.
    expected = [0.75] * 4 + [1.5] * 2 + [2.0] + [2 / 3] * 3 + [1.0, 1.0]
    assert weights == pytest.approx(expected)
    # Both groups now weigh pos and neg equally (a: 3 vs 3, b: 2 vs 2) and the grouped total is still 10.
    shares = weighted_label_shares(groups, labels, weights)
    assert shares["a"]["pos"] == pytest.approx(0.5) and shares["b"]["pos"] == pytest.approx(0.5)
    assert weights[:10].sum() == pytest.approx(10)


def test_reweighting_equalises_label_distribution_across_groups():
    rng = np.random.default_rng(0)
    groups = list(rng.choice(["x", "y", "z"], size=300, p=[0.5, 0.3, 0.2]))
    # A skewed label per group: the group predicts the label before weighting.
    bias = {"x": [0.7, 0.2, 0.1], "y": [0.2, 0.5, 0.3], "z": [0.1, 0.3, 0.6]}
    labels = [str(rng.choice(["l0", "l1", "l2"], p=bias[g])) for g in groups]
    shares = weighted_label_shares(groups, labels, group_reweighting(groups, labels))
    overall = {label: labels.count(label) / len(labels) for label in set(labels)}
    for group_shares in shares.values():
        assert group_shares == pytest.approx(overall)
