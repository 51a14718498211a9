"""Sentence shuffling: the same sentences in another order (and, optionally, each sentence's words shuffled).

For labels that depend on what is said rather than on its order (topic, sentiment of a review), a text's
sentences in another order are a new example of the same class.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from tuneforge.augment.base import distinct_variants

# A sentence ends at . ! or ? (with closing quotes or brackets) before white space; common abbreviations
# do not end one.
_BOUNDARY = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+")
_ABBREVIATIONS = frozenset({"mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "vs.", "etc.", "e.g.", "i.e.", "no.",
                            "jr.", "sr.", "inc.", "ltd.", "co."})
_END = re.compile(r"[.!?\"'”’)\]]+$")


def split_sentences(text: str) -> list[str]:
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        piece = text[start:match.start()].strip()
        last_word = piece.rsplit(maxsplit=1)[-1].lower() if piece else ""
        if last_word in _ABBREVIATIONS:
            continue
        sentences.append(text[start:match.end()].strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return [s for s in sentences if s]


def shuffle_words(sentence: str, rng: random.Random) -> str:
    """Shuffle a sentence's words, keeping its closing punctuation at the end."""
    end = _END.search(sentence)
    body, closing = (sentence[:end.start()], end.group()) if end else (sentence, "")
    words = body.split()
    rng.shuffle(words)
    return " ".join(words) + closing


@dataclass
class SentenceShuffle:
    words: bool = False  # also shuffle the words inside each sentence
    name: str = "shuffle"

    def augment(self, texts: list[str], counts: list[int], rng: random.Random) -> list[list[str]]:
        results = []
        for text, count in zip(texts, counts, strict=True):
            sentences = split_sentences(text)
            if count == 0 or (len(sentences) < 2 and not self.words):
                results.append([])
                continue

            def one(sentences: list[str] = sentences) -> str:
                order = rng.sample(sentences, len(sentences))
                if order == sentences:  # a draw of the same order (one in two for two sentences) is wasted
                    order = order[1:] + order[:1]
                if self.words:
                    order = [shuffle_words(sentence, rng) for sentence in order]
                return " ".join(order)

            results.append(distinct_variants(text, count, one))
        return results
