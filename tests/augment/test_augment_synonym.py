"""Synonym replacement from the installed WordNet: real synonyms, names and stop-words left alone, case kept."""

from __future__ import annotations

import difflib
import random
import re
from pathlib import Path

import pytest

from tuneforge.augment.base import STOP_WORDS, WORD, match_case
from tuneforge.augment.synonym import SynonymReplacement
from tuneforge.augment.wordnet import find_wordnet
from tuneforge.errors import TuneforgeError


def replaced_pairs(original: str, variant: str) -> list[tuple[str, str]]:
    """(old words, new words) for each place the variant differs from the original."""
    before, after = original.split(), variant.split()
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    return [(" ".join(before[i1:i2]), " ".join(after[j1:j2]))
            for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def share_a_synset(folder: Path, first: str, second: str) -> bool:
    """Independent of the reader under test: some line of a data file lists both lemmas."""
    lemmas = {first.lower().replace(" ", "_"), second.lower().replace(" ", "_")}
    for pos in ("noun", "verb", "adj", "adv"):
        for line in (folder / f"data.{pos}").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(" "):
                continue
            parts = line.split()
            words = {re.sub(r"\(.*\)$", "", parts[4 + 2 * i]).lower() for i in range(int(parts[3], 16))}
            if lemmas <= words:
                return True
    return False


def strip(token: str) -> str:
    return token.strip(".,!?;:")


def test_a_replacement_is_a_wordnet_synonym_of_the_word_it_replaces(wordnet):
    text = "The movie was surprisingly cheap, and the staff were terrible."
    variants = SynonymReplacement(wordnet, fraction=0.5).augment([text], [6], random.Random(0))[0]
    assert len(variants) == 6
    checked = set()
    for variant in variants:
        pairs = replaced_pairs(text, variant)
        assert pairs, variant
        for old, new in pairs:
            old_word, new_word = strip(old), strip(new)
            assert new_word.lower() in {s.lower() for s in wordnet.synonyms(old_word)}, (old_word, new_word)
            checked.add((old_word.lower(), new_word.lower()))
    for old_word, new_word in sorted(checked)[:3]:
        assert share_a_synset(wordnet.folder, old_word, new_word), (old_word, new_word)


def test_reader_knows_common_synonyms_and_regular_plurals(wordnet):
    assert "film" in wordnet.synonyms("movie")
    assert "inexpensive" in wordnet.synonyms("cheap")
    assert "films" in wordnet.synonyms("movies")
    assert wordnet.synonyms("the") == ()


def test_stop_words_and_capitalised_names_stay(wordnet):
    # John (toilet), Paris (French capital), can (tin) and in (inch) all have WordNet entries.
    text = "Yesterday Mary can see the movie in Paris with John and the cheap tickets."
    variants = SynonymReplacement(wordnet, fraction=1.0).augment([text], [5], random.Random(1))[0]
    assert variants
    protected = {"Mary", "Paris", "John", "can", "in", "the", "with", "and"}
    for variant in variants:
        words = WORD.findall(variant)
        for word in protected:
            assert word in words, (word, variant)
        assert "movie" not in words and "cheap" not in words  # fraction 1.0: every eligible word changes
    assert all(word.lower() in STOP_WORDS for word in ("can", "in", "the", "with", "and"))


def test_case_follows_the_replaced_word(wordnet):
    variants = SynonymReplacement(wordnet, fraction=1.0).augment(["Cheap tickets."], [3], random.Random(2))[0]
    assert variants
    for variant in variants:
        first = variant.split()[0]
        assert first[0].isupper() and first.lower() != "cheap"
    assert match_case("GOOD", "full") == "FULL"
    assert match_case("Good", "full") == "Full"
    assert match_case("good", "Full") == "Full"  # a proper-noun synonym keeps its capital


def test_text_without_eligible_words_gets_no_variant(wordnet):
    assert SynonymReplacement(wordnet).augment(["And then it was."], [2], random.Random(0)) == [[]]


def test_missing_wordnet_names_the_package(tmp_path):
    with pytest.raises(TuneforgeError) as error:
        find_wordnet(tmp_path)
    assert "apt-get install wordnet-base" in error.value.fix
    assert str(tmp_path) in error.value.message
