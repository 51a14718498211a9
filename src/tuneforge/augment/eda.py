"""Easy Data Augmentation (Wei & Zou, 2019): synonym replacement, random insertion, swap and deletion.

As in the paper, each variant applies one operation, the operations taking turns, and an operation touches
`alpha` of the words (at least one); an alpha of 0 turns that operation off.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tuneforge.augment.base import distinct_variants
from tuneforge.augment.synonym import candidates, replace_words
from tuneforge.augment.wordnet import WordNet

Operation = Callable[[str, float, random.Random], str]


@dataclass
class EasyDataAugmentation:
    wordnet: WordNet
    alpha_sr: float = 0.1
    alpha_ri: float = 0.1
    alpha_rs: float = 0.1
    alpha_rd: float = 0.1
    name: str = "eda"

    def augment(self, texts: list[str], counts: list[int], rng: random.Random) -> list[list[str]]:
        operations = [(op, alpha) for op, alpha in (
            (self.replace, self.alpha_sr), (self.insert, self.alpha_ri), (self.swap, self.alpha_rs),
            (self.delete, self.alpha_rd)) if alpha > 0]
        results = []
        for text, count in zip(texts, counts, strict=True):
            start = rng.randrange(len(operations))
            turns = itertools.cycle(operations[start:] + operations[:start])
            results.append(distinct_variants(text, count, functools.partial(self._next, text, turns, rng))
                           if count else [])
        return results

    @staticmethod
    def _next(text: str, turns: Iterator[tuple[Operation, float]], rng: random.Random) -> str:
        operation, alpha = next(turns)
        return operation(text, alpha, rng)

    @staticmethod
    def _how_many(words: int, alpha: float) -> int:
        return max(1, int(alpha * words))

    def replace(self, text: str, alpha: float, rng: random.Random) -> str:
        found = candidates(text, self.wordnet)
        if not found:
            return text
        size = min(len(found), self._how_many(len(text.split()), alpha))
        return replace_words(text, rng.sample(found, size), rng)

    def insert(self, text: str, alpha: float, rng: random.Random) -> str:
        """Insert synonyms of the text's own words at random places (never before the first word)."""
        words = text.split()
        found = candidates(text, self.wordnet)
        if not found:
            return text
        for _ in range(self._how_many(len(text.split()), alpha)):
            words.insert(rng.randint(1, len(words)), rng.choice(rng.choice(found).synonyms).lower())
        return " ".join(words)

    def swap(self, text: str, alpha: float, rng: random.Random) -> str:
        words = text.split()
        if len(words) < 2:
            return text
        for _ in range(self._how_many(len(words), alpha)):
            i, j = rng.sample(range(len(words)), 2)
            words[i], words[j] = words[j], words[i]
        return " ".join(words)

    def delete(self, text: str, alpha: float, rng: random.Random) -> str:
        """Drop each word with probability alpha; a text is never emptied (one random word stays)."""
        words = text.split()
        if len(words) < 2:
            return text
        kept = [word for word in words if rng.random() >= alpha]
        return " ".join(kept) if kept else rng.choice(words)
