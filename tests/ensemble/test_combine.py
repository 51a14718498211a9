"""Known answers for the ensemble arithmetic on hand-made member outputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from tuneforge.ensemble import combine

# Three members, two rows, three classes.
MEMBERS = np.array([
    [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]],
    [[0.2, 0.5, 0.3], [0.2, 0.2, 0.6]],
    [[0.6, 0.3, 0.1], [0.5, 0.4, 0.1]],
])


def test_mean_is_the_average_probability() -> None:
    expected = np.array([[0.5, 1.0 / 3, 0.5 / 3], [0.8 / 3, 0.3, 1.3 / 3]])
    np.testing.assert_allclose(combine.mean(MEMBERS), expected)
    np.testing.assert_allclose(combine.mean(MEMBERS).sum(axis=1), 1.0)


def test_weighted_mean_uses_normalised_weights() -> None:
    result = combine.mean(MEMBERS, weights=[2, 0, 2])  # same as members 0 and 2 at 0.5 each
    np.testing.assert_allclose(result, (MEMBERS[0] + MEMBERS[2]) / 2)


def test_vote_counts_predicted_classes() -> None:
    shares = combine.vote(MEMBERS)
    # Row 0: votes class 0, 1, 0 -> 2/3, 1/3, 0. Row 1: class 2, 2, 0 -> 1/3, 0, 2/3.
    np.testing.assert_allclose(shares, [[2 / 3, 1 / 3, 0], [1 / 3, 0, 2 / 3]], atol=1e-6)


def test_vote_tie_goes_to_the_higher_mean_probability() -> None:
    members = np.array([[[0.9, 0.1]], [[0.45, 0.55]]])  # one vote each; mean favours class 0
    assert combine.vote(members).argmax(axis=1).tolist() == [0]
    flipped = members[:, :, ::-1]
    assert combine.vote(flipped).argmax(axis=1).tolist() == [1]


def test_weighted_vote_lets_a_heavy_member_win() -> None:
    shares = combine.vote(MEMBERS, weights=[0.2, 0.6, 0.2])
    assert shares.argmax(axis=1).tolist() == [1, 2]


def test_fit_weights_moves_to_the_member_that_is_right() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=200)
    right = np.full((200, 3), 0.05)
    right[np.arange(200), labels] = 0.9
    noise = softmax(rng.normal(size=(200, 3)), axis=1)
    weights = combine.fit_weights(np.stack([noise, right]), labels)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[1] > 0.95


def test_fit_weights_for_regression_finds_the_mixture() -> None:
    target = np.linspace(-1, 1, 50)
    # target = 0.25 * a + 0.75 * b exactly
    a = target + 3.0
    b = target - 1.0
    weights = combine.fit_weights(np.stack([a, b]), target)
    np.testing.assert_allclose(weights, [0.25, 0.75], atol=1e-3)


def test_stacking_learns_to_trust_the_informative_member() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=300)
    good = np.full((300, 3), 0.1)
    good[np.arange(300), labels] = 0.8
    bad = softmax(rng.normal(size=(300, 3)), axis=1)
    stacker = combine.fit_stacker(np.stack([bad, good]), labels)
    assert stacker.coef.shape == (3, 6)
    probabilities = combine.stack(np.stack([bad, good]), stacker)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert (probabilities.argmax(axis=1) == labels).mean() == 1.0
    restored = combine.Stacker.from_json(stacker.to_json())  # JSON round trip gives the same outputs
    np.testing.assert_allclose(combine.stack(np.stack([bad, good]), restored), probabilities)


def test_binary_stacking_matches_sklearn() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, size=120)
    members = softmax(rng.normal(size=(2, 120, 2)) + 2 * np.eye(2)[labels], axis=2)
    stacker = combine.fit_stacker(members, labels)
    reference = LogisticRegression(max_iter=2000).fit(combine.stacking_features(members), labels)
    np.testing.assert_allclose(combine.stack(members, stacker),
                               reference.predict_proba(combine.stacking_features(members)), atol=1e-8)


def test_stacking_for_regression_is_a_ridge_on_outputs() -> None:
    target = np.linspace(0, 1, 40)
    stacker = combine.fit_stacker(np.stack([2 * target, target + 5]), target, regularisation=1e6)
    np.testing.assert_allclose(combine.stack(np.stack([2 * target, target + 5]), stacker), target, atol=1e-4)


def test_logits_round_trip_to_the_same_probabilities() -> None:
    probabilities = combine.mean(MEMBERS)
    np.testing.assert_allclose(softmax(combine.to_logits(probabilities), axis=1), probabilities)


def test_columns_are_aligned_by_label_name() -> None:
    member = np.array([[0.1, 0.2, 0.7]])  # order c, a, b
    aligned = combine.align_columns(member, ["c", "a", "b"], ["a", "b", "c"])
    np.testing.assert_allclose(aligned, [[0.2, 0.7, 0.1]])
    with pytest.raises(ValueError, match="label sets differ"):
        combine.align_columns(member, ["c", "a", "x"], ["a", "b", "c"])


def test_bad_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="weights"):
        combine.mean(MEMBERS, weights=[1, -1, 1])
