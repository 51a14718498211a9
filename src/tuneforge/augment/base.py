"""The one interface every augmenter implements, and the text helpers they share."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Protocol

# A word: letters, with inner apostrophes or hyphens ("don't", "well-known"); digits and punctuation are
# never replaced or inserted.
WORD = re.compile(r"[A-Za-z]+(?:['’-][A-Za-z]+)*")
_SENTENCE_END = re.compile(r"[.!?:;\n]")
# Attempts per wanted variant before a random augmenter gives up on a text (a two-word text has few
# distinct swaps): bounded, so a text that cannot yield new variants costs little.
TRIES_PER_VARIANT = 5

# English function words (the list EDA used): replacing them changes grammar, not wording.
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself
it its itself they them their theirs themselves what which who whom this that these those am is are was were be
been being have has had having do does did doing a an the and but if or because as until while of at by for with
about against between into through during before after above below to from up down in out on off over under
again further then once here there when where why how all any both each few more most other some such no nor not
only own same so than too very s t can will just don should now d ll m o re ve y ain aren couldn didn doesn
hadn hasn haven isn ma mightn mustn needn shan shouldn wasn weren won wouldn don't isn't wasn't aren't weren't
didn't doesn't haven't hasn't hadn't won't wouldn't shouldn't can't couldn't it's i'm you're he's she's we're
they're i've you've we've they've i'd you'd he'd she'd we'd they'd i'll you'll he'll she'll we'll they'll
""".split())


class Augmenter(Protocol):
    """Makes label-preserving variants of texts.

    `counts[i]` variants are wanted for `texts[i]`; an augmenter may return fewer when it cannot find that
    many distinct ones. All randomness comes from `rng`, so the same seed gives the same variants.
    """

    name: str

    def augment(self, texts: list[str], counts: list[int], rng: random.Random) -> list[list[str]]: ...


def normalise(text: str) -> str:
    """Identity of a text for de-duplication: case and spacing do not make a new example."""
    return " ".join(text.lower().split())


def distinct_variants(text: str, count: int, make: Callable[[], str]) -> list[str]:
    """Up to `count` variants from `make`, each different from the text and from each other."""
    seen = {normalise(text)}
    variants: list[str] = []
    for _ in range(count * TRIES_PER_VARIANT):
        if len(variants) == count:
            break
        variant = " ".join(make().split())
        key = normalise(variant)
        if key and key not in seen:
            seen.add(key)
            variants.append(variant)
    return variants


def match_case(original: str, replacement: str) -> str:
    """Write the replacement as the original was written: 'Good' -> 'Full', 'GOOD' -> 'FULL', 'good' -> 'full'."""
    if len(original) > 1 and original.isupper():
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def word_spans(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, starts_sentence) of every word: a capital is only a name's mark mid-sentence."""
    spans: list[tuple[int, int, bool]] = []
    for match in WORD.finditer(text):
        starts_sentence = not spans or bool(_SENTENCE_END.search(text, spans[-1][1], match.start()))
        spans.append((match.start(), match.end(), starts_sentence))
    return spans


def eligible_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the words an augmenter may replace: not stop-words (grammar, not wording) and not
    capitalised mid-sentence (likely a name or other named entity, whose replacement would change the facts).
    Shared by the synonym and contextual augmenters, so both leave the same words alone."""
    return [(start, end) for start, end, starts_sentence in word_spans(text)
            if text[start:end].lower() not in STOP_WORDS and not (text[start].isupper() and not starts_sentence)]
