"""Synonym replacement: swap some content words for WordNet synonyms of the same sense and part of speech."""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from tuneforge.augment.base import distinct_variants, eligible_spans, match_case
from tuneforge.augment.wordnet import WordNet


@dataclass(frozen=True)
class Candidate:
    start: int
    end: int
    word: str
    synonyms: tuple[str, ...]


def candidates(text: str, wordnet: WordNet) -> list[Candidate]:
    """Words that may be replaced: not stop-words, not capitalised mid-sentence (likely names), with synonyms."""
    found = []
    for start, end in eligible_spans(text):
        word = text[start:end]
        synonyms = wordnet.synonyms(word)
        if synonyms:
            found.append(Candidate(start, end, word, synonyms))
    return found


def replace_words(text: str, chosen: list[Candidate], rng: random.Random) -> str:
    pieces, cursor = [], 0
    for candidate in sorted(chosen, key=lambda c: c.start):
        pieces += [text[cursor:candidate.start], match_case(candidate.word, rng.choice(candidate.synonyms))]
        cursor = candidate.end
    return "".join(pieces) + text[cursor:]


@dataclass
class SynonymReplacement:
    """Replaces up to `fraction` of the eligible words (at least one) in each variant."""

    wordnet: WordNet
    fraction: float = 0.15
    name: str = "synonym"

    def augment(self, texts: list[str], counts: list[int], rng: random.Random) -> list[list[str]]:
        results = []
        for text, count in zip(texts, counts, strict=True):
            found = candidates(text, self.wordnet) if count else []
            if not found:
                results.append([])
                continue
            size = min(len(found), max(1, int(self.fraction * len(found))))
            results.append(distinct_variants(text, count, functools.partial(self._variant, text, found, size, rng)))
        return results

    @staticmethod
    def _variant(text: str, found: list[Candidate], size: int, rng: random.Random) -> str:
        return replace_words(text, rng.sample(found, size), rng)
