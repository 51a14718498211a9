"""How member predictions become one: pure functions on probability (or regression output) arrays.

Every function takes `members`, shaped (members, rows, classes) for classification or (members, rows) for
regression, and returns plain numpy arrays or small dataclasses that serialise to JSON, so an ensemble is fully
described by numbers on disk (no pickled estimator).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

EPSILON = 1e-12


def _stack(members: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    stacked = np.asarray(members, dtype=np.float64)
    if stacked.ndim < 2 or stacked.shape[0] == 0:
        raise ValueError("members must be shaped (members, rows[, classes]) with at least one member")
    return stacked


def _weights(weights: Sequence[float] | None, count: int) -> np.ndarray:
    if weights is None:
        return np.full(count, 1.0 / count)
    array = np.asarray(weights, dtype=np.float64)
    if array.shape != (count,) or (array < 0).any() or array.sum() <= 0:
        raise ValueError(f"weights must be {count} numbers, none negative, not all zero; got {list(array)}")
    return array / array.sum()


def mean(members: Sequence[np.ndarray] | np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """Soft voting: the (weighted) mean of the members' class probabilities, or of their regression outputs."""
    stacked = _stack(members)
    return np.tensordot(_weights(weights, stacked.shape[0]), stacked, axes=1)


def vote(members: Sequence[np.ndarray] | np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """Hard voting: each member's predicted class gets its (weighted) vote; rows of vote shares summing to 1.

    A tie is broken towards the class with the higher mean probability, by a margin far below any vote share
    (1e-9), so the shares stay readable as shares and argmax never depends on the class order.
    """
    stacked = _stack(members)
    if stacked.ndim != 3:
        raise ValueError("voting needs class probabilities shaped (members, rows, classes)")
    share = _weights(weights, stacked.shape[0])
    votes = np.zeros(stacked.shape[1:])
    picked = stacked.argmax(axis=2)  # (members, rows)
    for member, choice in enumerate(picked):
        votes[np.arange(stacked.shape[1]), choice] += share[member]
    votes += 1e-9 * mean(stacked, weights)
    return votes / votes.sum(axis=1, keepdims=True)


def fit_weights(members: Sequence[np.ndarray] | np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Member weights on the simplex that minimise the validation loss of the weighted mean.

    Classification minimises the negative log-likelihood of the weighted mean probability, regression the squared
    error of the weighted mean output. Weights are a softmax of free parameters, so they stay non-negative and sum
    to 1 without constraints; L-BFGS from equal weights.
    """
    stacked = _stack(members)
    labels = np.asarray(labels)
    count = stacked.shape[0]
    if count == 1:
        return np.ones(1)
    if stacked.ndim == 3:
        chosen = stacked[:, np.arange(stacked.shape[1]), labels.astype(int)]  # (members, rows)

        def loss(theta: np.ndarray) -> float:
            return float(-np.log(softmax(theta) @ chosen + EPSILON).mean())
    else:
        target = labels.astype(np.float64).reshape(-1)

        def loss(theta: np.ndarray) -> float:
            return float(((softmax(theta) @ stacked - target) ** 2).mean())
    result = minimize(loss, np.zeros(count), method="L-BFGS-B")
    weights = softmax(result.x)
    weights[weights < 1e-6] = 0.0  # a member the fit switched off gets exactly 0
    return weights / weights.sum()


@dataclass(frozen=True)
class Stacker:
    """The meta-learner of stacking: a linear model over the members' outputs.

    Classification: multinomial logistic regression on the members' log-probabilities, `coef` shaped
    (classes, members * classes); regression: a ridge regression on the members' outputs, `coef` shaped
    (members,). Plain lists of numbers, saved as JSON.
    """

    coef: np.ndarray
    intercept: np.ndarray
    kind: str  # "classification" or "regression"

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "coef": self.coef.tolist(), "intercept": self.intercept.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Stacker:
        return cls(np.asarray(data["coef"], dtype=np.float64), np.asarray(data["intercept"], dtype=np.float64),
                   str(data["kind"]))


def stacking_features(members: np.ndarray) -> np.ndarray:
    """(members, rows, classes) probabilities -> (rows, members * classes) log-probabilities, member-major."""
    stacked = _stack(members)
    if stacked.ndim == 2:
        return stacked.T
    logs = np.log(np.clip(stacked, EPSILON, 1.0))
    return np.concatenate(list(logs), axis=1)


def fit_stacker(members: Sequence[np.ndarray] | np.ndarray, labels: np.ndarray, regularisation: float = 1.0
                ) -> Stacker:
    """Fit the meta-learner on validation predictions (scikit-learn's LogisticRegression or Ridge).

    `regularisation` is the inverse strength C of the logistic regression (alpha = 1 / C for the ridge). Every class
    gets a row of coefficients even when the validation data lacks it (its intercept is then very low).
    """
    from sklearn.linear_model import LogisticRegression, Ridge

    stacked = _stack(members)
    features = stacking_features(stacked)
    labels = np.asarray(labels)
    if stacked.ndim == 2:
        ridge = Ridge(alpha=1.0 / regularisation).fit(features, labels.astype(np.float64).reshape(-1))
        return Stacker(np.asarray(ridge.coef_, dtype=np.float64), np.atleast_1d(float(ridge.intercept_)),
                       "regression")
    classes = stacked.shape[2]
    labels = labels.astype(int)
    present = np.unique(labels)
    if len(present) < 2:
        raise ValueError("stacking needs validation rows of at least two classes")
    model = LogisticRegression(C=regularisation, max_iter=2000).fit(features, labels)
    coef = np.zeros((classes, features.shape[1]))
    intercept = np.full(classes, -1e4)  # a class absent from validation is never predicted
    if len(model.classes_) == 2 and model.coef_.shape[0] == 1:  # binary: sklearn keeps one row, for class 1
        rows = np.vstack([-model.coef_[0] / 2, model.coef_[0] / 2])
        biases = np.array([-model.intercept_[0] / 2, model.intercept_[0] / 2])
    else:
        rows, biases = model.coef_, model.intercept_
    for position, label in enumerate(model.classes_):
        coef[int(label)] = rows[position]
        intercept[int(label)] = biases[position]
    return Stacker(coef, intercept, "classification")


def stack(members: Sequence[np.ndarray] | np.ndarray, stacker: Stacker) -> np.ndarray:
    """The meta-learner's output: class probabilities (rows, classes), or regression outputs (rows,)."""
    features = stacking_features(_stack(members))
    scores = features @ stacker.coef.T + stacker.intercept
    if stacker.kind == "regression":
        return scores.reshape(-1)
    return softmax(scores, axis=1)


def to_logits(probabilities: np.ndarray) -> np.ndarray:
    """Log-probabilities, which every softmax-based consumer turns back into exactly these probabilities."""
    return log_softmax(np.log(np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1.0)), axis=-1)


def align_columns(probabilities: np.ndarray, labels: Sequence[str], reference: Sequence[str]) -> np.ndarray:
    """Reorder a member's class columns from its own label order to the reference order, by label name."""
    if sorted(labels) != sorted(reference):
        raise ValueError(f"label sets differ: {sorted(labels)} vs {sorted(reference)}")
    position = {name: index for index, name in enumerate(labels)}
    return np.asarray(probabilities)[..., [position[name] for name in reference]]
