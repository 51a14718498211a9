"""Where a classifier goes wrong: confused class pairs, confident mistakes, error rate by text length and by group.

Aggregate metrics say how often a model fails; these tables say where to look next (which classes to relabel or
merge, which examples are probably mislabelled, whether long texts suffer from truncation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tuneforge.errors import TuneforgeError


def word_counts(texts: Sequence[str]) -> np.ndarray:
    """Whitespace word count per text: a tokenizer-free length that means the same for every model."""
    return np.asarray([len(str(text).split()) for text in texts], dtype=np.int64)


def confused_pairs(labels: np.ndarray, predicted: np.ndarray, label_names: Sequence[str],
                   top: int = 10) -> list[dict[str, Any]]:
    """The most frequent (true -> predicted) mistakes; `share` is the pair's fraction of all mistakes.

    Ordered by count, then by class order, so equal counts always come out the same way.
    """
    wrong = labels != predicted
    total = int(wrong.sum())
    if not total:
        return []
    k = len(label_names)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (labels[wrong], predicted[wrong]), 1)
    pairs = [(int(counts[t, p]), t, p) for t in range(k) for p in range(k) if counts[t, p]]
    pairs.sort(key=lambda item: (-item[0], item[1], item[2]))
    return [{"true": label_names[t], "predicted": label_names[p], "count": c, "share": c / total}
            for c, t, p in pairs[:top]]


def confident_mistakes(texts: Sequence[str], labels: np.ndarray, probabilities: np.ndarray,
                       label_names: Sequence[str], top: int = 10) -> list[dict[str, Any]]:
    """Wrong predictions with the highest confidence: often mislabelled rows or a shortcut the model learnt.

    `true_probability` is what the model gave the right class, to tell "sure and wrong" from "torn".
    """
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    # Stable sort on -confidence: ties keep input order, so the result is deterministic.
    ranked = wrong[np.argsort(-confidence[wrong], kind="stable")][:top]
    return [{"index": int(i), "text": str(texts[i]), "true": label_names[labels[i]],
             "predicted": label_names[predicted[i]], "confidence": float(confidence[i]),
             "true_probability": float(probabilities[i, labels[i]])}
            for i in ranked]


def length_buckets(lengths: np.ndarray, correct: np.ndarray, buckets: int = 4) -> list[dict[str, Any]]:
    """Error rate per length quantile bucket, shortest first; `lower`/`upper` are the bucket's shortest and longest
    length.

    Bucket i holds lengths in (q[i-1], q[i]] where q are the 1/b, 2/b, ..., 1 quantiles taken as data values
    (inverted CDF): every bucket holds at least its upper edge, and equal lengths always share a bucket (many
    equal lengths merge buckets rather than split identical texts apart).
    """
    lengths = np.asarray(lengths)
    correct = np.asarray(correct, dtype=bool)
    if lengths.size == 0:
        return []
    uppers = np.unique(np.quantile(lengths, np.arange(1, buckets + 1) / buckets, method="inverted_cdf"))
    index = np.searchsorted(uppers, lengths, side="left")
    rows = []
    for b in range(len(uppers)):
        members = index == b
        count = int(members.sum())
        errors = int((~correct[members]).sum())
        rows.append({"lower": int(lengths[members].min()), "upper": int(lengths[members].max()),
                     "examples": count, "errors": errors, "error_rate": errors / count})
    return rows


def per_group_error_rates(groups: Sequence[str | None], correct: np.ndarray) -> dict[str, dict[str, Any]]:
    """Examples, errors and error rate per group name, sorted by name; rows whose group is None are left out
    (an unknown group is not a group of its own)."""
    correct = np.asarray(correct, dtype=bool)
    if len(groups) != len(correct):
        raise TuneforgeError(f"got {len(groups)} group names for {len(correct)} predictions",
                             fix="pass one group (or None) per evaluated row")
    tally: dict[str, list[int]] = {}
    for group, right in zip(groups, correct, strict=True):
        if group is None:
            continue
        counts = tally.setdefault(str(group), [0, 0])
        counts[0] += 1
        counts[1] += int(not right)
    return {name: {"examples": n, "errors": e, "error_rate": e / n} for name, (n, e) in sorted(tally.items())}


def error_analysis(texts: Sequence[str], labels: np.ndarray, probabilities: np.ndarray, label_names: Sequence[str],
                   lengths: Sequence[int] | np.ndarray | None = None, top: int = 10,
                   buckets: int = 4, groups: Mapping[str, Sequence[str | None]] | None = None) -> dict[str, Any]:
    """Confused pairs, most confident mistakes and error rate per length bucket for a classifier's predictions.

    `labels` are class ids into `label_names`; `probabilities` is (n, k) and decides the prediction (argmax);
    `lengths` default to word counts of `texts`.
    `groups` maps an attribute (a sensitive column, an identity category) to one group name or None per text.
    Keys: examples, errors, error_rate, confused_pairs, confident_mistakes, length_buckets, group_error_rates.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    n = len(texts)
    if probabilities.shape != (n, len(label_names)) or labels.shape != (n,):
        raise TuneforgeError(
            f"error analysis got {n} texts, labels shaped {labels.shape} and probabilities shaped "
            f"{probabilities.shape} for {len(label_names)} classes",
            fix="pass one label id and one probability row (one column per class) per text")
    lengths = word_counts(texts) if lengths is None else np.asarray(lengths, dtype=np.int64)
    if lengths.shape != (n,):
        raise TuneforgeError(f"error analysis got {len(lengths)} lengths for {n} texts", fix="pass one length per text")
    predicted = probabilities.argmax(axis=1)
    correct = predicted == labels
    errors = int((~correct).sum())
    return {
        "examples": n,
        "errors": errors,
        "error_rate": errors / n if n else 0.0,
        "confused_pairs": confused_pairs(labels, predicted, label_names, top),
        "confident_mistakes": confident_mistakes(texts, labels, probabilities, label_names, top),
        "length_buckets": length_buckets(lengths, correct, buckets),
        "group_error_rates": {attribute: rates for attribute, names in (groups or {}).items()
                              if (rates := per_group_error_rates(names, correct))},
    }
