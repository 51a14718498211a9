"""Contextual replacement with a masked LM: which words change, into what, and a clear error without an MLM head."""

from __future__ import annotations

import random

import pytest

from tuneforge.augment.base import STOP_WORDS, WORD, eligible_spans
from tuneforge.augment.contextual import ContextualReplacement, load_masked_lm
from tuneforge.errors import TuneforgeError

TEXT = "The food was great but Maria said the service was slow"


def changed_words(original: str, variant: str) -> list[tuple[str, str]]:
    before, after = original.split(), variant.split()
    assert len(before) == len(after)  # one word in, one word out
    return [(a, b) for a, b in zip(before, after, strict=True) if a != b]


def test_eligibility_is_shared_with_synonym() -> None:
    words = [TEXT[s:e] for s, e in eligible_spans(TEXT)]
    assert words == ["food", "great", "said", "service", "slow"]  # no stop-words, not Maria (a name)


def test_replaces_only_eligible_words_with_whole_words(tiny_mlm) -> None:
    augmenter = ContextualReplacement(str(tiny_mlm), fraction=0.4, top_k=5)
    [variants] = augmenter.augment([TEXT], [4], random.Random(0))
    assert len(variants) == 4 and len(set(variants)) == 4
    eligible = {TEXT[s:e] for s, e in eligible_spans(TEXT)}
    for variant in variants:
        changes = changed_words(TEXT, variant)
        assert 1 <= len(changes) <= 2  # 40% of 5 eligible words
        for before, after in changes:
            assert before in eligible
            assert WORD.fullmatch(after) and after.lower() not in STOP_WORDS and after.lower() != before.lower()
        assert "Maria" in variant


def test_seeded_and_text_without_eligible_words(tiny_mlm) -> None:
    augmenter = ContextualReplacement(str(tiny_mlm), fraction=0.2)
    texts = [TEXT, "it was the", "good food"]
    first = augmenter.augment(texts, [2, 2, 1], random.Random(3))
    again = augmenter.augment(texts, [2, 2, 1], random.Random(3))
    assert first == again
    assert first[1] == []  # only stop-words: nothing to replace
    assert augmenter.augment(texts, [2, 2, 1], random.Random(4)) != first


def test_a_model_without_mlm_head_is_refused_with_the_reason(tiny_model) -> None:
    with pytest.raises(TuneforgeError) as raised:
        load_masked_lm(str(tiny_model))  # a BertModel checkpoint: encoder only, like the bundled minilm
    assert "no masked-LM head" in raised.value.message
    assert "minilm" in raised.value.fix


def test_recipe_needs_a_model_for_contextual() -> None:
    from tuneforge.errors import RecipeError
    from tuneforge.recipe import recipe_from_dict

    with pytest.raises(RecipeError, match="contextual needs model"):
        recipe_from_dict({"augment": {"methods": [{"method": "contextual"}]}})
    with pytest.raises(RecipeError, match="top_k is an option of contextual, not of synonym"):
        recipe_from_dict({"augment": {"methods": [{"method": "synonym", "top_k": 3}]}})


def test_word_start_marker_of_each_tokenizer_family(tiny_mlm, tiny_gpt2) -> None:
    from transformers import AutoTokenizer

    from tuneforge.augment.contextual import word_start_marker

    assert word_start_marker(AutoTokenizer.from_pretrained(tiny_mlm)) == ""  # WordPiece marks pieces with ##
    assert word_start_marker(AutoTokenizer.from_pretrained(tiny_gpt2)) == "Ġ"
