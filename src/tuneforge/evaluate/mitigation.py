"""Training-time bias mitigation, as pure functions over the training rows (the trainer decides how to use them).

- `group_reweighting`: Kamiran & Calders (2012) reweighing. Each row gets w = P(group) P(label) / P(group, label),
  so in the weighted data every group has the same label distribution and the label no longer tells the
  model anything about the group.
- `counterfactual_augmentation`: add copies of rows with the identity terms swapped (same label), so an identity
  term stops being evidence for any label (Lu et al., 2020, counterfactual data augmentation).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from tuneforge.evaluate.identity import Lexicon, Terms, is_missing_group


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


def counterfactual_augmentation(texts: Sequence[str], labels: Sequence[Any], terms: Terms
                                ) -> tuple[list[str], list[Any]]:
    """The rows plus identity-swapped copies (same label) of every row that mentions identity terms.

    Originals come first, unchanged and in order; a copy is added once, and never when it equals an existing
    text (a swapped copy already in the data would only double its weight).
    """
    if len(texts) != len(labels):
        raise ValueError("texts and labels must have the same length")
    lexicons = [Lexicon(category, groups) for category, groups in terms.items()]
    out_texts, out_labels = list(texts), list(labels)
    seen = set(out_texts)
    for text, label in zip(texts, labels, strict=True):
        for lexicon in lexicons:
            for variant in lexicon.variants(text):
                if variant.text not in seen:
                    seen.add(variant.text)
                    out_texts.append(variant.text)
                    out_labels.append(label)
    return out_texts, out_labels
