"""Active learning: which unlabelled texts are most worth a person's labelling time.

Uncertainty scores are pure functions of a (texts, classes) probability array; higher always means "label this
first". `diversity` spreads the choice over the model's sentence-embedding space (k-center greedy over the most
uncertain candidates), so a batch is not twenty near-copies of one confusing text. modAL and small-text implement
these too, but pull in their own estimator wrappers; the formulas are a few lines of numpy each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tuneforge.errors import TuneforgeError

UNCERTAINTY = ("entropy", "margin", "least-confidence")
STRATEGIES = (*UNCERTAINTY, "diversity", "random")
# diversity: k-center greedy runs over this many times the budget of the most uncertain candidates.
DIVERSITY_POOL_FACTOR = 4


def _checked(probabilities: np.ndarray) -> np.ndarray:
    array = np.asarray(probabilities, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ValueError(f"probabilities must be shaped (texts, classes >= 2); got {array.shape}")
    return array


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats: log(classes) for a uniform row, 0 for a certain one."""
    p = _checked(probabilities)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=1)


def margin(probabilities: np.ndarray) -> np.ndarray:
    """1 - (top probability - runner-up): 1 when the two best classes tie, 0 when one class has it all."""
    p = np.sort(_checked(probabilities), axis=1)
    return 1.0 - (p[:, -1] - p[:, -2])


def least_confidence(probabilities: np.ndarray) -> np.ndarray:
    """1 - top probability."""
    return 1.0 - _checked(probabilities).max(axis=1)


SCORERS = {"entropy": entropy, "margin": margin, "least-confidence": least_confidence}


def k_center_greedy(embeddings: np.ndarray, count: int, centers: np.ndarray | None = None) -> list[int]:
    """Indices of `count` rows picked one by one, each the farthest (Euclidean) from every row picked so far and
    from `centers` (e.g. the already labelled data); the first is the farthest from `centers`, or row 0 without
    them. Sener & Savarese's core-set selection, written here because scikit-learn has no k-center."""
    points = np.asarray(embeddings, dtype=np.float64)
    count = min(count, len(points))
    if count <= 0:
        return []
    if centers is not None and len(centers):
        known = np.asarray(centers, dtype=np.float64)
        distance = np.min(np.linalg.norm(points[:, None, :] - known[None, :, :], axis=2), axis=1)
        chosen = [int(np.argmax(distance))]
    else:
        chosen = [0]
        distance = np.full(len(points), np.inf)
    distance = np.minimum(distance, np.linalg.norm(points - points[chosen[0]], axis=1))
    while len(chosen) < count:
        nxt = int(np.argmax(distance))
        chosen.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(points - points[nxt], axis=1))
    return chosen


@dataclass(frozen=True)
class Selection:
    """Rows of the pool to label, most useful first, with the score each was chosen by."""

    indices: list[int]
    scores: list[float]
    strategy: str


def select(probabilities: np.ndarray, budget: int, strategy: str = "entropy", embeddings: np.ndarray | None = None,
           labelled_embeddings: np.ndarray | None = None, seed: int = 0) -> Selection:
    """Pick `budget` rows of the pool. Uncertainty strategies take the highest scores (ties by row order);
    `diversity` keeps the `DIVERSITY_POOL_FACTOR * budget` most uncertain rows by entropy and spreads the budget
    over them by k-center greedy on `embeddings`; `random` is the baseline every strategy has to beat."""
    if strategy not in STRATEGIES:
        raise TuneforgeError(f"unknown active-learning strategy '{strategy}'",
                             fix=f"use one of: {', '.join(STRATEGIES)}")
    if budget < 1:
        raise TuneforgeError(f"the budget must be at least 1 (got {budget})", fix="pass --budget N with N >= 1")
    p = _checked(probabilities)
    budget = min(budget, len(p))
    if strategy == "random":
        indices = np.random.default_rng(seed).permutation(len(p))[:budget].tolist()
        return Selection(indices, [float(s) for s in entropy(p)[indices]], strategy)
    if strategy in SCORERS:
        scores = SCORERS[strategy](p)
        indices = np.argsort(-scores, kind="stable")[:budget].tolist()
        return Selection(indices, [float(scores[i]) for i in indices], strategy)
    if embeddings is None or len(embeddings) != len(p):
        raise ValueError("diversity needs one embedding per probability row")
    scores = entropy(p)
    candidates = np.argsort(-scores, kind="stable")[:DIVERSITY_POOL_FACTOR * budget]
    picked = k_center_greedy(np.asarray(embeddings)[candidates], budget, labelled_embeddings)
    indices = [int(candidates[i]) for i in picked]
    return Selection(indices, [float(scores[i]) for i in indices], strategy)
