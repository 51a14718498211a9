"""A small reader of the WordNet 3.0 database files, as Debian's `wordnet-base` installs them.

Why a reader of our own rather than NLTK's: the data-file format is documented (wndb(5WN)) and simple: an
index file maps a lemma to synset byte offsets, and a data file holds each synset's words at that offset.
Reading the installed files in place takes about a hundred lines, where NLTK's reader refuses folders
outside its data path and wants a `lexnames` file that the Debian package lacks, so it would need a copy
of the 28 MB database in a cache and another dependency. The same files ship in an NLTK data folder
(`nltk_data/corpora/wordnet`), so either install works here.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from tuneforge.errors import TuneforgeError

POS_FILES = ("noun", "verb", "adj", "adv")
SEARCH_DIRS = (Path("/usr/share/wordnet"), Path("/usr/local/share/wordnet"), Path("/usr/local/WordNet-3.0/dict"),
               Path("/opt/homebrew/share/wordnet"), Path.home() / "nltk_data" / "corpora" / "wordnet")
# Only the most frequent senses of a word, of its most frequent part of speech: rare senses and other parts of
# speech give replacements that change the meaning or the grammar ("good" -> "commodity", "goodness"). Index
# files list a lemma's synsets by frequency of use; cntlist.rev counts tagged uses per sense and part of speech.
SENSES_PER_POS = 2
_SS_TYPE_POS = {"1": "noun", "2": "verb", "3": "adj", "4": "adv", "5": "adj"}
# Regular noun plurals (WordNet's own detachment rules for nouns); inflected verbs and adjectives are left
# alone because re-inflecting their synonyms needs more than suffix rules.
_NOUN_PLURALS = (("ies", "y"), ("ches", "ch"), ("shes", "sh"), ("xes", "x"), ("ses", "s"), ("zes", "z"),
                 ("s", ""))
_MARKER = re.compile(r"\([a-z]+\)$")  # adjective position markers in data.adj: "(a)", "(p)", "(ip)"


def find_wordnet(folder: str | Path | None = None) -> Path:
    """The folder holding index.noun/data.noun: the one given, or the first standard install found."""
    candidates = [Path(folder).expanduser()] if folder else list(SEARCH_DIRS)
    for candidate in candidates:
        if all((candidate / f"{kind}.{pos}").is_file() for pos in POS_FILES for kind in ("index", "data")):
            return candidate
    where = f"'{folder}' holds" if folder else f"none of {', '.join(str(c) for c in SEARCH_DIRS)} holds"
    raise TuneforgeError(
        f"synonym augmentation needs the WordNet database, and {where} its files (index.noun, data.noun, ...)",
        fix="install it with `apt-get install wordnet-base` (Debian/Ubuntu), or set the method's wordnet_dir to a "
            "folder with the WordNet 3.0 dict files",
    )


class WordNet:
    """Synonyms of English words from the installed WordNet database; lookups are cached per word."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._index: dict[str, dict[str, list[int]]] = {pos: self._read_index(pos) for pos in POS_FILES}
        self._data = {pos: (folder / f"data.{pos}").read_bytes() for pos in POS_FILES}
        self._usual_pos = self._read_counts()
        self._cache: dict[str, tuple[str, ...]] = {}

    def _read_index(self, pos: str) -> dict[str, list[int]]:
        # lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt synset_offset [synset_offset...]
        index: dict[str, list[int]] = {}
        with (self.folder / f"index.{pos}").open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(" "):  # the licence header
                    continue
                parts = line.split()
                count = int(parts[2])
                index[parts[0]] = [int(offset) for offset in parts[-count:][:SENSES_PER_POS]]
        return index

    def _read_counts(self) -> dict[str, str]:
        """Each lemma's most used part of speech in the tagged corpus (cntlist.rev: `lemma%ss_type:... n count`)."""
        path = self.folder / "cntlist.rev"
        if not path.is_file():
            return {}
        totals: dict[str, dict[str, int]] = {}
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) != 3 or "%" not in parts[0]:
                    continue
                lemma, _, key = parts[0].partition("%")
                pos = _SS_TYPE_POS.get(key[:1])
                if pos:
                    counts = totals.setdefault(lemma.lower(), {})
                    counts[pos] = counts.get(pos, 0) + int(parts[2])
        return {lemma: max(counts, key=counts.__getitem__) for lemma, counts in totals.items()}

    def _synset_words(self, pos: str, offset: int) -> list[str]:
        # synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id...] p_cnt ...
        data = self._data[pos]
        line = data[offset:data.index(b"\n", offset)].decode("utf-8", errors="replace").split()
        count = int(line[3], 16)
        return [_MARKER.sub("", line[4 + 2 * i]).replace("_", " ") for i in range(count)]

    def is_word(self, word: str) -> bool:
        return any(word.lower() in self._index[pos] for pos in POS_FILES)

    def synonyms(self, word: str) -> tuple[str, ...]:
        """Other lemmas of the word's most frequent senses, in the word's inflection (regular noun plurals)."""
        key = word.lower()
        if key not in self._cache:
            self._cache[key] = self._lookup(key)
        return self._cache[key]

    def _lookup(self, word: str) -> tuple[str, ...]:
        lemma = word.replace(" ", "_")
        found: list[str] = []
        usual = self._usual_pos.get(lemma)
        for pos in (usual,) if usual else POS_FILES:
            for offset in self._index[pos].get(lemma, ()):
                found += self._synset_words(pos, offset)
        if not found:
            for suffix, replacement in _NOUN_PLURALS:
                base = lemma[: -len(suffix)] + replacement if lemma.endswith(suffix) else None
                if base and len(base) > 2 and base in self._index["noun"]:
                    found = [pluralise(w) for offset in self._index["noun"][base]
                             for w in self._synset_words("noun", offset)]
                    break
        seen = {word}
        synonyms = []
        for candidate in found:
            if candidate.lower() not in seen and not any(ch.isdigit() for ch in candidate):
                seen.add(candidate.lower())
                synonyms.append(candidate)
        return tuple(synonyms)


def pluralise(phrase: str) -> str:
    head, _, last = phrase.rpartition(" ")
    if last.endswith(("s", "x", "z", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last += "s"
    return f"{head} {last}" if head else last


@functools.lru_cache(maxsize=2)
def load_wordnet(folder: str | None = None) -> WordNet:
    """One reader per folder and process: parsing the index files takes about a second."""
    return WordNet(find_wordnet(folder))
