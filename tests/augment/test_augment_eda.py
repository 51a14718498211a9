"""EDA's four operations, each checked on its own: what it may change and what it must keep."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tuneforge.augment.eda import EasyDataAugmentation
from tuneforge.errors import RecipeError
from tuneforge.recipe import recipe_from_dict

TEXTS = ["the food was cheap and the staff were terrible", "a wonderful movie with a sad ending",
         "rude waiter", "good"]


def only(wordnet, operation: str, alpha: float = 0.3) -> EasyDataAugmentation:
    alphas = {name: 0.0 for name in ("alpha_sr", "alpha_ri", "alpha_rs", "alpha_rd")}
    return EasyDataAugmentation(wordnet, **{**alphas, operation: alpha})


def is_subsequence(short: list[str], long: list[str]) -> bool:
    remaining = iter(long)
    return all(word in remaining for word in short)


def test_swap_keeps_the_multiset_of_words(wordnet):
    variants = only(wordnet, "alpha_rs").augment(TEXTS, [3, 3, 3, 3], random.Random(0))
    assert variants[0] and variants[1]
    assert variants[2] == ["waiter rude"] and variants[3] == []  # two words swap one way; one word cannot
    for text, found in zip(TEXTS, variants, strict=True):
        for variant in found:
            assert Counter(variant.split()) == Counter(text.split()) and variant != text


def test_deletion_never_empties_a_text(wordnet):
    augmenter = only(wordnet, "alpha_rd", alpha=0.9)
    for seed in range(30):
        for text, found in zip(TEXTS, augmenter.augment(TEXTS, [2] * 4, random.Random(seed)), strict=True):
            for variant in found:
                assert variant.split(), text
                assert not Counter(variant.split()) - Counter(text.split())  # only deletions
                assert len(variant.split()) < len(text.split())


def test_insertion_adds_synonyms_of_the_texts_own_words(wordnet):
    text = TEXTS[0]
    variants = only(wordnet, "alpha_ri").augment([text], [3], random.Random(0))[0]
    assert variants
    synonyms = {s.lower() for word in text.split() for s in wordnet.synonyms(word)}
    for variant in variants:
        words = variant.split()
        assert words[0] == "the"  # never inserted before the first word
        assert is_subsequence(text.split(), words)
        inserted = " ".join(w for w in words if w not in text.split())
        assert inserted and all(part in " ".join(sorted(synonyms)) for part in inserted.split())


def test_replacement_uses_synonyms(wordnet):
    variants = only(wordnet, "alpha_sr").augment([TEXTS[0]], [3], random.Random(0))[0]
    assert variants
    for variant in variants:
        assert len(variant.split()) >= len(TEXTS[0].split())
        assert variant != TEXTS[0]


def test_operations_take_turns_and_the_seed_reproduces(wordnet):
    augmenter = EasyDataAugmentation(wordnet)
    first = augmenter.augment(TEXTS, [4] * 4, random.Random(5))
    assert first == augmenter.augment(TEXTS, [4] * 4, random.Random(5))
    assert first != augmenter.augment(TEXTS, [4] * 4, random.Random(6))
    assert len(first[0]) == 4 and len(set(first[0])) == 4


def test_eda_with_every_operation_off_is_a_recipe_error():
    with pytest.raises(RecipeError) as error:
        recipe_from_dict({"augment": {"methods": [{"method": "eda", "alpha_sr": 0, "alpha_ri": 0, "alpha_rs": 0,
                                                   "alpha_rd": 0}]}})
    assert "augment.methods.0" in str(error.value) and "alpha_rs" in str(error.value)
