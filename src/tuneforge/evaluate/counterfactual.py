"""Counterfactual probes: does the prediction move when only the identity terms of a text change?

Group metrics need labelled data and can hide a shortcut behind other differences between groups; a swap
("she was rude" -> "he was rude") holds everything else fixed, so any change in the prediction is caused by
the identity term alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from tuneforge.augment.identity import Lexicon, Terms, Variant
from tuneforge.errors import TuneforgeError


class ClassifierLike(Protocol):
    """What the probe needs from a predictor: `tuneforge.load(run_dir)` returns one."""

    labels: list[str] | None

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 64
                ) -> list[dict[str, Any]]: ...


def _plan(texts: Sequence[Any], lexicon: Lexicon, limit: int | None) -> tuple[int, list[tuple[int, Variant]]]:
    """(texts probed, [(row, variant)]) for one category; `limit` caps the texts, not the variants."""
    probed, pairs = 0, []
    for row, text in enumerate(texts):
        if limit is not None and probed >= limit:
            break
        variants = lexicon.variants(text)
        if variants:
            probed += 1
            pairs += [(row, variant) for variant in variants]
    return probed, pairs


def _default_positive(labels: list[str], predicted: list[str]) -> str:
    """Without a named positive label, watch the class the model predicts least often (of those it predicts)."""
    counts = Counter(predicted)
    seen = [label for label in labels if counts[label] > 0] or labels
    return min(seen, key=lambda label: counts[label])


def _summary(probed: int, rows: list[dict[str, Any]], worst: int) -> dict[str, Any]:
    changes = np.asarray([r["change"] for r in rows], dtype=float)
    flips = sum(r["flipped"] for r in rows)
    swaps: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["swap"] for r in rows):
        chosen = [r for r in rows if r["swap"] == name]
        swap_flips = sum(r["flipped"] for r in chosen)
        swaps[name] = {"pairs": len(chosen), "flips": swap_flips, "flip_rate": swap_flips / len(chosen),
                       "mean_change": float(np.mean([r["change"] for r in chosen]))}
    ranked = sorted(rows, key=lambda r: (r["flipped"], abs(r["change"])), reverse=True)
    return {
        "texts_probed": probed,
        "pairs": len(rows),
        "flips": flips,
        "flip_rate": flips / len(rows) if rows else None,
        "mean_abs_change": float(np.abs(changes).mean()) if rows else None,
        "max_abs_change": float(np.abs(changes).max()) if rows else None,
        "swaps": swaps,
        "worst": ranked[:worst],
    }


def counterfactual_probe(predictor: ClassifierLike, texts: Sequence[Any], terms: Terms, limit: int | None = None,
                         *, pairs: Sequence[Any] | None = None, positive_label: str | None = None,
                         batch_size: int = 64, worst: int = 5) -> dict[str, Any]:
    """Swap identity terms per category and measure how often the label flips and how far P(positive) moves.

    `terms` is {category: {group: aligned terms}} (see `identity.load_terms`). `limit` caps the texts probed per
    category. With text pairs, only the first text is swapped. Every distinct input is predicted once, in
    batches. `change` is P(positive | variant) - P(positive | original).
    """
    labels = predictor.labels
    if labels is None:
        raise TuneforgeError("counterfactual probes need a classification run",
                             fix="use a run trained with task: classification")
    plans = {category: _plan(texts, Lexicon(category, groups), limit) for category, groups in terms.items()}

    inputs: dict[tuple[str, Any], int] = {}

    def slot(text: str, pair: Any) -> int:
        return inputs.setdefault((text, pair), len(inputs))

    for _, planned in plans.values():
        for row, variant in planned:
            pair = pairs[row] if pairs is not None else None
            slot(str(texts[row]), pair)
            slot(variant.text, pair)
    keys = list(inputs)
    outputs = predictor.predict([text for text, _ in keys],
                                [pair for _, pair in keys] if pairs is not None else None,
                                batch_size=batch_size) if keys else []

    originals = [outputs[inputs[(str(texts[row]), pairs[row] if pairs is not None else None)]]["label"]
                 for _, planned in plans.values() for row, _ in planned]
    positive = positive_label if positive_label is not None else _default_positive(labels, originals)
    if positive not in labels:
        raise TuneforgeError(f"positive label '{positive}' is not a class of this model",
                             fix=f"use one of {', '.join(labels)}")

    categories = {}
    for category, (probed, planned) in plans.items():
        rows = []
        for row, variant in planned:
            pair = pairs[row] if pairs is not None else None
            before = outputs[inputs[(str(texts[row]), pair)]]
            after = outputs[inputs[(variant.text, pair)]]
            p_before, p_after = before["probabilities"][positive], after["probabilities"][positive]
            rows.append({
                "row": row, "swap": variant.swap, "original": str(texts[row]), "variant": variant.text,
                "original_label": before["label"], "variant_label": after["label"],
                "original_probability": p_before, "variant_probability": p_after,
                "change": p_after - p_before, "flipped": before["label"] != after["label"],
            })
        categories[category] = _summary(probed, rows, worst)
    return {"positive_label": positive, "categories": categories}
