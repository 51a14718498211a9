"""Identity terms: which groups a text mentions, and the same text with one group's terms swapped for another's.

Group inference lets fairness metrics run on data that has no demographic column, and swapping is the basis of
counterfactual data augmentation (`augment.counterfactual`) and the counterfactual probes of `evaluate`. It lives
with the augmenters so that data preparation, augmentation and evaluation all reach it from above. All of them
read the aligned lists in `identity_terms.yaml` (term i of one group is the counterpart of term i of every other
group of the category).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tuneforge.errors import DataError, Problem, TuneforgeError

# category -> group -> aligned terms; None marks a position without a counterpart in that group.
Terms = dict[str, dict[str, list[str | None]]]

MULTIPLE = "multiple"  # the group of a text that mentions two or more groups of one category
SHIPPED = "identity_terms.yaml"


def _normalise(term: str) -> str:
    return " ".join(term.lower().split())


def _read_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise DataError([Problem(where=source, message=f"not valid YAML ({error})",
                                 fix="check indentation and quoting")]) from None


def _validated(data: Any, source: str) -> Terms:
    """Check the {category: {group: [terms]}} shape and normalise terms, collecting every problem."""
    shape_fix = "write {category: {group: [term, ...]}}, e.g. gender: {female: [she, woman], male: [he, man]}"
    if not isinstance(data, dict):
        raise DataError([Problem(where=source, message="identity terms must be a mapping of categories",
                                 fix=shape_fix)])
    problems: list[Problem] = []
    terms: Terms = {}
    for category, groups in data.items():
        if not isinstance(groups, dict) or not groups:
            problems.append(Problem(where=f"{source}: {category}", message="must map group names to term lists",
                                    fix=shape_fix))
            continue
        terms[str(category)] = {}
        for group, values in groups.items():
            where = f"{source}: {category}.{group}"
            if str(group) == MULTIPLE:
                problems.append(Problem(where=where, message=f"'{MULTIPLE}' is reserved for texts naming two groups",
                                        fix="rename the group"))
            if not isinstance(values, list):
                problems.append(Problem(where=where, message="must be a list of terms", fix=shape_fix))
                continue
            bad = [v for v in values if v is not None and (not isinstance(v, str) or not v.strip())]
            if bad:
                problems.append(Problem(where=where, message=f"terms must be non-empty text, found {bad[:3]!r}",
                                        fix="quote numbers, and use null for a position without a counterpart"))
                continue
            terms[str(category)][str(group)] = [None if v is None else _normalise(v) for v in values]
    if problems:
        raise DataError(problems)
    return terms


def _check_unambiguous(terms: Terms, source: str) -> None:
    """A term in two groups of one category would make both inference and swapping ambiguous."""
    problems = []
    for category, groups in terms.items():
        owner: dict[str, str] = {}
        for group, values in groups.items():
            for term in values:
                if term is None:
                    continue
                if owner.setdefault(term, group) != group:
                    problems.append(Problem(where=f"{source}: {category}",
                                            message=f"'{term}' is listed under both '{owner[term]}' and '{group}'",
                                            fix="keep each term in one group of a category"))
    if problems:
        raise DataError(problems)


def _merge(base: Terms, extra: Terms) -> Terms:
    """Append the extra terms group by group, so additions written in the same order stay aligned."""
    merged = copy.deepcopy(base)
    for category, groups in extra.items():
        target = merged.setdefault(category, {})
        for group, values in groups.items():
            target.setdefault(group, []).extend(values)
    return merged


def load_terms(categories: Iterable[str] | None = None, extra_file: str | Path | None = None) -> Terms:
    """The shipped identity terms, extended by a user YAML of the same shape, for the categories asked for.

    All categories come back when `categories` is None. An unknown category is a user error naming the known ones.
    """
    shipped_text = resources.files("tuneforge.augment").joinpath(SHIPPED).read_text(encoding="utf-8")
    terms = _validated(_read_yaml(shipped_text, SHIPPED), SHIPPED)
    source = SHIPPED
    if extra_file is not None:
        path = Path(extra_file)
        if not path.is_file():
            raise DataError([Problem(where=str(path), message="identity terms file not found",
                                     fix="check fairness.identity_terms_file (or --terms-file)")])
        extra = _validated(_read_yaml(path.read_text(encoding="utf-8"), str(path)), str(path))
        terms = _merge(terms, extra)
        source = f"{SHIPPED} + {path}"
    _check_unambiguous(terms, source)
    if categories is None:
        return terms
    wanted = list(dict.fromkeys(categories))
    unknown = [c for c in wanted if c not in terms]
    if unknown:
        raise TuneforgeError(f"unknown identity categor{'y' if len(unknown) == 1 else 'ies'}: {', '.join(unknown)}",
                             fix=f"use some of {', '.join(terms)}, or define them in fairness.identity_terms_file")
    return {c: terms[c] for c in wanted}


def match_case(original: str, replacement: str) -> str:
    """Write `replacement` in the capitalisation of `original` (she/She/SHE -> he/He/HE)."""
    letters = [c for c in original if c.isalpha()]
    if not letters or original.islower():
        return replacement
    if original.isupper() and len(letters) > 1:
        return replacement.upper()
    if original.istitle():
        return " ".join(word[:1].upper() + word[1:] for word in replacement.split(" "))
    if original[0].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


@dataclass(frozen=True)
class Variant:
    """A text with the terms of `source` and `target` exchanged; `swap` names it, e.g. 'female->male'."""

    text: str
    source: str
    target: str
    swap: str


class Lexicon:
    """The compiled terms of one category: one pattern, longest term first, so phrases beat their words."""

    def __init__(self, category: str, groups: Mapping[str, Sequence[str | None]]) -> None:
        self.category = category
        self.groups = {group: list(values) for group, values in groups.items()}
        self.owner: dict[str, tuple[str, int]] = {}
        for group, values in self.groups.items():
            for index, term in enumerate(values):
                if term is not None:
                    self.owner.setdefault(_normalise(term), (group, index))
        alternatives = [r"\s+".join(re.escape(word) for word in term.split())
                        for term in sorted(self.owner, key=lambda t: (-len(t), t))]
        body = "|".join(alternatives) or r"(?!x)x"
        self.pattern = re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE)

    def groups_in(self, text: str) -> list[str]:
        """Groups mentioned in `text`, in the order the category lists them."""
        found = {self.owner[_normalise(m.group(0))][0] for m in self.pattern.finditer(text)}
        return [group for group in self.groups if group in found]

    def group_of(self, text: Any) -> str | None:
        """One group, MULTIPLE when several are mentioned, None when none is (or the text is missing)."""
        if not isinstance(text, str):
            return None
        found = self.groups_in(text)
        if not found:
            return None
        return found[0] if len(found) == 1 else MULTIPLE

    def swap(self, text: str, first: str, second: str) -> str | None:
        """Exchange the terms of two groups; None when a term has no counterpart (a half swap measures nothing)."""
        missing = False

        def replace(match: re.Match[str]) -> str:
            nonlocal missing
            group, index = self.owner[_normalise(match.group(0))]
            if group not in (first, second):
                return match.group(0)
            counterparts = self.groups[second if group == first else first]
            counterpart = counterparts[index] if index < len(counterparts) else None
            if counterpart is None:
                missing = True
                return match.group(0)
            return match_case(match.group(0), counterpart)

        swapped = self.pattern.sub(replace, text)
        return None if missing else swapped

    def variants(self, text: Any) -> list[Variant]:
        """Every swap of a mentioned group with another group of the category.

        A group the text also mentions is swapped both ways at once ('she told him' -> 'he told her'), so
        each unordered pair of groups gives at most one variant.
        """
        if not isinstance(text, str):
            return []
        present = self.groups_in(text)
        done: set[frozenset[str]] = set()
        variants = []
        for source in present:
            for target in self.groups:
                pair = frozenset((source, target))
                if target == source or pair in done:
                    continue
                done.add(pair)
                swapped = self.swap(text, source, target)
                if swapped is None or swapped == text:
                    continue
                arrow = "<->" if target in present else "->"
                variants.append(Variant(swapped, source, target, f"{source}{arrow}{target}"))
        return variants


def _lexicon(category: str, terms: Terms | None) -> Lexicon:
    source = terms if terms is not None else load_terms([category])
    if category not in source:
        raise TuneforgeError(f"unknown identity category: {category}", fix=f"use one of {', '.join(source)}")
    return Lexicon(category, source[category])


def infer_groups(texts: Sequence[Any], category: str, terms: Terms | None = None) -> list[str | None]:
    """The group each text mentions for one category (word-boundary, case-insensitive); MULTIPLE or None."""
    lexicon = _lexicon(category, terms)
    return [lexicon.group_of(text) for text in texts]


def joint_groups(texts: Sequence[Any], terms: Terms) -> list[str | None]:
    """One key per text across categories, e.g. 'gender=female|religion=muslim'; None when nothing is mentioned.

    Training-time reweighting needs a single group per row; the joint key keeps intersections apart.
    """
    lexicons = [Lexicon(category, groups) for category, groups in terms.items()]
    keys: list[str | None] = []
    for text in texts:
        parts = [f"{lex.category}={group}" for lex in lexicons if (group := lex.group_of(text)) is not None]
        keys.append("|".join(parts) or None)
    return keys


def is_missing_group(value: Any) -> bool:
    """Rows without a group: None, NaN or an empty cell of a sensitive column (what `data.validation.is_blank`
    calls blank; spelled out here because the augmenters sit below data)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()
