"""Profanity and slur flags from a real word list: the one shipped by the `better-profanity` package (MIT).

Only the list is taken from the package: its own matcher walks every text character by character (about
10 ms per tweet), so a few thousand rows took most of a minute. Here each word is normalised once (lower case,
the usual leetspeak digits and symbols read as letters) and looked up in a set; the list's few multi-word
entries are matched on the normalised word sequence. A flag is a hint for a person to look at, not a verdict:
word lists miss context ("kill the process") and catch innocent uses.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

from tuneforge.errors import TuneforgeError

# Leetspeak and masking characters as the letters they stand for ("sh1t", "@ss", "$hit").
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s",
                       "!": "i", "+": "t", "|": "l"})
_TOKEN = re.compile(r"[\w@$!+|*'-]+")


@dataclass(frozen=True)
class WordList:
    words: frozenset[str]
    phrases: tuple[tuple[str, ...], ...]


@functools.lru_cache(maxsize=1)
def default_word_list() -> WordList:
    try:
        text = resources.files("better_profanity").joinpath("profanity_wordlist.txt").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise TuneforgeError(f"the profanity word list is not available ({error})",
                             fix="pip install better-profanity, or set clean.toxicity: off") from None
    return word_list(text.splitlines())


def word_list(entries: list[str]) -> WordList:
    words, phrases = set(), []
    for entry in entries:
        parts = tuple(_normalise(part) for part in entry.split())
        if len(parts) == 1:
            words.add(parts[0])
        elif parts:
            phrases.append(parts)
    return WordList(frozenset(words), tuple(phrases))


def _normalise(token: str) -> str:
    # A trailing "!" or "|" ends a sentence rather than standing for a letter ("heck no!").
    return token.lower().rstrip("!|").translate(_LEET).strip("'-")


def _masked_forms(token: str) -> list[str]:
    """'f*ck' could be any letter under the star: try the vowels, which is what such masks hide."""
    if "*" not in token or token.strip("*") == "":
        return [token]
    return [token.replace("*", vowel) for vowel in "aeiou"]


def profanity_in(text: str, words: WordList | None = None) -> list[str]:
    """The listed words and phrases in `text`, as written there, in order."""
    listed = words or default_word_list()
    tokens = _TOKEN.findall(text)
    normal = [_normalise(token) for token in tokens]
    found: list[str] = []
    for token, key in zip(tokens, normal, strict=True):
        if any(form in listed.words for form in _masked_forms(key)):
            found.append(token)
    for phrase in listed.phrases:
        size = len(phrase)
        for start in range(len(normal) - size + 1):
            if tuple(normal[start:start + size]) == phrase:
                found.append(" ".join(tokens[start:start + size]))
    return found
