"""Counterfactual data augmentation: copies of training rows with the identity terms swapped, same label, so an
identity term stops being evidence for any label (Lu et al., 2020). `fairness.mitigation: counterfactual_augmentation`
applies it to the training split; the swaps come from `augment.identity`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuneforge.augment.identity import Lexicon, Terms


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
