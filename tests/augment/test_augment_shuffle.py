"""Sentence shuffling keeps every sentence (and, with words on, every word) and only changes their order."""

from __future__ import annotations

import random
from collections import Counter

from tuneforge.augment.shuffle import SentenceShuffle, split_sentences

TEXT = "The food was great. The staff were rude! Would we go back? Maybe."


def test_shuffle_keeps_the_sentences():
    variants = SentenceShuffle().augment([TEXT], [4], random.Random(0))[0]
    assert len(variants) == 4 and len(set(variants)) == 4
    for variant in variants:
        assert variant != TEXT
        assert sorted(split_sentences(variant)) == sorted(split_sentences(TEXT))


def test_one_sentence_gives_no_variant_unless_words_shuffle():
    one = "The food was great and the staff were kind."
    assert SentenceShuffle().augment([one], [2], random.Random(0)) == [[]]
    variants = SentenceShuffle(words=True).augment([one], [2], random.Random(0))[0]
    assert len(variants) == 2
    for variant in variants:
        assert variant.endswith(".")
        assert Counter(variant.rstrip(".").split()) == Counter(one.rstrip(".").split())


def words_per_sentence(text: str) -> list[list[str]]:
    return sorted(sorted(sentence.rstrip(".!?").split()) for sentence in split_sentences(text))


def test_word_shuffle_keeps_each_sentences_words():
    variants = SentenceShuffle(words=True).augment([TEXT], [3], random.Random(1))[0]
    assert len(variants) == 3
    for variant in variants:
        assert words_per_sentence(variant) == words_per_sentence(TEXT)


def test_sentence_splitting_skips_abbreviations():
    assert split_sentences('Mr. Smith came. "It was late," he said. Then he left') == [
        "Mr. Smith came.", '"It was late," he said.', "Then he left"]
