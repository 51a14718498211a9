"""Counterfactual augmentation: identity-swapped copies of the training rows, same label, each added once."""

from __future__ import annotations

from tuneforge.augment.counterfactual import counterfactual_augmentation
from tuneforge.augment.identity import load_terms


def test_counterfactual_augmentation_adds_swapped_copies_once():
    texts = ["she liked it", "he liked it", "the soup was cold", "The Woman smiled", "The Woman smiled"]
    labels = [0, 1, 0, 1, 1]
    new_texts, new_labels = counterfactual_augmentation(texts, labels, load_terms(["gender"]))
    # 'he liked it' and 'she liked it' already exist, the soup names no one, the woman's copy is added once.
    assert new_texts == texts + ["The Man smiled"]
    assert new_labels == labels + [1]


def test_augmentation_covers_every_category_and_keeps_labels():
    new_texts, new_labels = counterfactual_augmentation(["the Muslim cook"], ["positive"],
                                                        load_terms(["gender", "religion"]))
    assert new_texts[0] == "the Muslim cook"
    assert "the Jewish cook" in new_texts and len(new_texts) == 1 + 6  # one copy per other religion
    assert set(new_labels) == {"positive"}
