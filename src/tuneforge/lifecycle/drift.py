"""Drift statistics between a model's training data and the traffic it now serves, and the verdict they add up to.

Every function is pure (lists and arrays in, numbers out). Each check returns a `Check` with a status (ok,
warning, drift) and a one-line reason; `verdict` is the worst of them. Thresholds follow common practice:
PSI 0.1 / 0.25 (credit-scoring's stable / shifted bands), a domain classifier's AUC 0.7 / 0.8, and statistical
tests only count when the shift is also large enough to matter (a big sample makes any tiny shift "significant").
Evidently and alibi-detect compute similar statistics, but pull in their own stacks for a few formulas.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

OK, WARNING, DRIFT = "ok", "warning", "drift"
SEVERITY = {OK: 0, WARNING: 1, DRIFT: 2}
INSUFFICIENT = "insufficient"  # too few rows to judge; never raises the verdict
TOKEN = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Thresholds:
    """Where a statistic turns from ok to warning to drift."""

    psi_warning: float = 0.1
    psi_drift: float = 0.25
    js_warning: float = 0.1  # Jensen-Shannon divergence (base 2, 0..1) above the same-distribution baseline
    js_drift: float = 0.2
    oov_warning: float = 0.05  # out-of-vocabulary rate above the same-distribution baseline
    oov_drift: float = 0.15
    auc_warning: float = 0.7  # domain classifier telling training from recent embeddings (0.5 = cannot)
    auc_drift: float = 0.8
    confidence_warning: float = 0.05  # drop of mean confidence
    confidence_drift: float = 0.1
    accuracy_warning: float = 0.05  # drop of accuracy on fed-back labels below the test accuracy
    accuracy_drift: float = 0.1
    p_value: float = 0.01
    min_rows: int = 30
    min_labels: int = 20


@dataclass
class Check:
    name: str
    status: str
    reason: str
    values: dict[str, Any] = field(default_factory=dict)


def _status(value: float, warning: float, drift: float) -> str:
    return DRIFT if value >= drift else WARNING if value >= warning else OK


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens: the vocabulary a person would recognise, independent of the model's tokenizer."""
    return TOKEN.findall(str(text).lower())


def psi(reference: Sequence[float], current: Sequence[float], bins: int = 10) -> float:
    """Population stability index over the reference's quantile bins: sum (c - r) * ln(c / r); 0 when the two
    histograms match. Empty bins get a small floor so one missing bin does not make it infinite."""
    ref, cur = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    # Right-closed bins at the distinct quantiles, with one more bin above the reference's maximum: a discrete
    # measure such as a word count (many ties) keeps its bins, and values beyond the training range count.
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    size = len(edges) + 1
    return categorical_psi(np.bincount(np.digitize(ref, edges, right=True), minlength=size),
                           np.bincount(np.digitize(cur, edges, right=True), minlength=size))


def categorical_psi(reference_counts: Sequence[float], current_counts: Sequence[float], floor: float = 1e-4
                    ) -> float:
    r = np.asarray(reference_counts, dtype=float)
    c = np.asarray(current_counts, dtype=float)
    r = np.maximum(r / r.sum(), floor)
    c = np.maximum(c / c.sum(), floor)
    return float(np.sum((c - r) * np.log(c / r)))


def token_js(reference: Counter, current: Counter) -> float:
    """Jensen-Shannon divergence (base 2, between 0 and 1) of two token frequency distributions."""
    vocabulary = sorted(set(reference) | set(current))
    if not vocabulary:
        return 0.0
    p = np.array([reference[t] for t in vocabulary], dtype=float)
    q = np.array([current[t] for t in vocabulary], dtype=float)
    if p.sum() == 0 or q.sum() == 0:
        return 1.0
    return float(jensenshannon(p / p.sum(), q / q.sum(), base=2) ** 2)


def oov_rate(vocabulary: set[str], texts: Sequence[str]) -> float:
    words = [t for text in texts for t in tokens(text)]
    return sum(w not in vocabulary for w in words) / len(words) if words else 0.0


def _too_few(name: str, reference: int, current: int, minimum: int) -> Check | None:
    if min(reference, current) < minimum:
        return Check(name, INSUFFICIENT, f"too few rows to judge ({reference} reference, {current} recent; "
                                         f"{minimum} needed)", {"reference_rows": reference, "current_rows": current})
    return None


def length_drift(reference: Sequence[str], current: Sequence[str], limits: Thresholds = Thresholds()) -> Check:
    """Text length in words: PSI and the two-sample Kolmogorov-Smirnov test."""
    early = _too_few("length", len(reference), len(current), limits.min_rows)
    if early:
        return early
    ref = np.array([len(tokens(t)) for t in reference], dtype=float)
    cur = np.array([len(tokens(t)) for t in current], dtype=float)
    index = psi(ref, cur)
    test = stats.ks_2samp(ref, cur)
    status = _status(index, limits.psi_warning, limits.psi_drift)
    if test.pvalue >= limits.p_value:
        status = OK  # the histograms differ no more than sampling explains
    values = {"psi": index, "ks_statistic": float(test.statistic), "ks_p_value": float(test.pvalue),
              "reference_mean_words": float(ref.mean()), "current_mean_words": float(cur.mean())}
    return Check("length", status, f"mean length {ref.mean():.1f} → {cur.mean():.1f} words; PSI {index:.3f}, "
                                   f"KS p = {test.pvalue:.2g}", values)


def vocabulary_drift(reference: Sequence[str], current: Sequence[str], limits: Thresholds = Thresholds(),
                     seed: int = 0) -> Check:
    """Out-of-vocabulary rate and token-distribution divergence, each measured against a same-distribution
    baseline: a held-out sample of the reference as large as the recent traffic, scored the same way, so small
    samples (which always look divergent) do not raise alarms on their own."""
    early = _too_few("vocabulary", len(reference), len(current), limits.min_rows)
    if early:
        return early
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(reference))
    held = order[:max(1, min(len(current), len(reference) // 3))]
    rest = order[len(held):]
    rest_texts = [reference[i] for i in rest]
    held_texts = [reference[i] for i in held]
    rest_counts = Counter(t for text in rest_texts for t in tokens(text))
    vocabulary = set(rest_counts)
    baseline_oov, current_oov = oov_rate(vocabulary, held_texts), oov_rate(vocabulary, current)
    baseline_js = token_js(rest_counts, Counter(t for text in held_texts for t in tokens(text)))
    current_js = token_js(rest_counts, Counter(t for text in current for t in tokens(text)))
    oov_excess, js_excess = current_oov - baseline_oov, current_js - baseline_js
    status = max(_status(oov_excess, limits.oov_warning, limits.oov_drift),
                 _status(js_excess, limits.js_warning, limits.js_drift), key=SEVERITY.get)
    values = {"oov_rate": current_oov, "baseline_oov_rate": baseline_oov, "js_divergence": current_js,
              "baseline_js_divergence": baseline_js, "baseline_rows": len(held)}
    return Check("vocabulary", status, f"out-of-vocabulary {current_oov:.1%} (baseline {baseline_oov:.1%}); "
                                       f"token JS divergence {current_js:.3f} (baseline {baseline_js:.3f})", values)


def embedding_drift(reference: np.ndarray, current: np.ndarray, limits: Thresholds = Thresholds(),
                    seed: int = 0) -> Check:
    """How well a logistic regression tells training from recent texts by their embeddings (cross-validated ROC
    AUC: 0.5 = indistinguishable), with the cosine distance between the two mean embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    early = _too_few("embedding", len(reference), len(current), limits.min_rows)
    if early:
        return early
    rng = np.random.default_rng(seed)
    size = min(len(reference), len(current))  # balanced classes, so the AUC is not skewed by the larger side
    ref = np.asarray(reference)[rng.choice(len(reference), size, replace=False)]
    cur = np.asarray(current)[rng.choice(len(current), size, replace=False)]
    features = np.vstack([ref, cur])
    features = (features - features.mean(0)) / (features.std(0) + 1e-8)
    target = np.r_[np.zeros(size), np.ones(size)]
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    scores = cross_val_predict(LogisticRegression(C=0.1, max_iter=1000), features, target, cv=folds,
                               method="predict_proba")[:, 1]
    auc = float(roc_auc_score(target, scores))
    a, b = np.asarray(reference).mean(0), np.asarray(current).mean(0)
    cosine = float(1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return Check("embedding", _status(auc, limits.auc_warning, limits.auc_drift),
                 f"domain classifier AUC {auc:.3f} (0.5 = indistinguishable); mean-embedding cosine distance "
                 f"{cosine:.4f}", {"domain_auc": auc, "mean_cosine_distance": cosine, "rows_per_side": size})


def prediction_drift(reference: Sequence[str], current: Sequence[str], labels: Sequence[str],
                     limits: Thresholds = Thresholds(), reference_name: str = "reference") -> Check:
    """Share of each predicted label now vs the reference distribution: PSI, and a chi-square goodness-of-fit
    test of the recent counts against the reference shares."""
    early = _too_few("prediction", len(reference), len(current), limits.min_rows)
    if early:
        return early
    ref_counts, cur_counts = Counter(map(str, reference)), Counter(map(str, current))
    names = list(labels) + sorted((set(ref_counts) | set(cur_counts)) - set(labels))
    r = np.array([ref_counts[n] for n in names], dtype=float)
    c = np.array([cur_counts[n] for n in names], dtype=float)
    index = categorical_psi(r, c)
    expected = np.maximum(r / r.sum(), 1e-4)
    expected = expected / expected.sum() * c.sum()
    test = stats.chisquare(c, expected)
    status = _status(index, limits.psi_warning, limits.psi_drift) if test.pvalue < limits.p_value else OK
    shares = {n: {"reference": float(r[i] / r.sum()), "current": float(c[i] / c.sum())} for i, n in enumerate(names)}
    moved = max(names, key=lambda n: abs(shares[n]["current"] - shares[n]["reference"]))
    return Check("prediction", status, f"predicted '{moved}' {shares[moved]['reference']:.1%} ({reference_name}) → "
                                       f"{shares[moved]['current']:.1%}; PSI {index:.3f}, χ² p = {test.pvalue:.2g}",
                 {"psi": index, "chi2_p_value": float(test.pvalue), "shares": shares})


def confidence_drift(reference: Sequence[float], current: Sequence[float], limits: Thresholds = Thresholds()
                     ) -> Check:
    """The model's top-class probability: a falling mean is the earliest sign it meets inputs it was not
    trained on, before any label comes back."""
    early = _too_few("confidence", len(reference), len(current), limits.min_rows)
    if early:
        return early
    ref, cur = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    drop = float(ref.mean() - cur.mean())
    test = stats.ks_2samp(ref, cur)
    status = _status(drop, limits.confidence_warning, limits.confidence_drift) if test.pvalue < limits.p_value \
        else OK
    return Check("confidence", status, f"mean confidence {ref.mean():.3f} → {cur.mean():.3f}; KS p = "
                                       f"{test.pvalue:.2g}",
                 {"reference_mean": float(ref.mean()), "current_mean": float(cur.mean()), "drop": drop,
                  "ks_statistic": float(test.statistic), "ks_p_value": float(test.pvalue)})


def feedback_accuracy(predicted: Sequence[str], corrected: Sequence[str], reference_accuracy: float | None,
                      limits: Thresholds = Thresholds()) -> Check:
    """Accuracy of served predictions on the labels people sent back, against the run's test accuracy."""
    count = len(predicted)
    if count < limits.min_labels:
        return Check("feedback_accuracy", INSUFFICIENT, f"{count} fed-back labels ({limits.min_labels} needed)",
                     {"labels": count})
    accuracy = float(np.mean([str(p) == str(c) for p, c in zip(predicted, corrected, strict=True)]))
    values: dict[str, Any] = {"labels": count, "accuracy": accuracy, "reference_accuracy": reference_accuracy}
    if reference_accuracy is None:
        return Check("feedback_accuracy", OK, f"accuracy {accuracy:.3f} on {count} fed-back labels (no test "
                                              "accuracy to compare with)", values)
    drop = reference_accuracy - accuracy
    # A drop within two standard errors of a binomial proportion is noise, whatever its size.
    noise = 2 * np.sqrt(max(reference_accuracy * (1 - reference_accuracy), 1e-6) / count)
    status = _status(drop, limits.accuracy_warning, limits.accuracy_drift) if drop > noise else OK
    values["drop"] = drop
    return Check("feedback_accuracy", status, f"accuracy {accuracy:.3f} on {count} fed-back labels vs "
                                              f"{reference_accuracy:.3f} on the test split", values)


def verdict(checks: Sequence[Check]) -> str:
    judged = [c.status for c in checks if c.status in SEVERITY]
    return max(judged, key=SEVERITY.get) if judged else OK


def as_dict(check: Check) -> dict[str, Any]:
    return asdict(check)
