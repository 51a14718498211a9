"""Domain preprocessing rules: one text-normalising function applied identically at training and prediction.

A rule is a regular expression and its replacement; rule packs (legal, medical, financial) are YAML files
shipped with the package, so a user can read exactly what each does. The rules a run used are written, fully
expanded, into the run directory (`domain_rules.json`): a later version of a pack never changes how a trained
model sees its inputs. User functions (a dotted path to `text -> text`) cover what a regex cannot, such as
transliteration; only their path can be stored, so the code must stay importable where the model is used.
"""

from __future__ import annotations

import importlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from tuneforge import artifacts
from tuneforge.errors import Problem, RecipeError, TuneforgeError
from tuneforge.trust import RunCodeTrust

PACK_DIR = Path(__file__).with_name("rule_packs")
RULES_FILE = "domain_rules.json"
NORMALIZATIONS = ("none", "NFC", "NFKC", "NFKC_casefold")


@dataclass(frozen=True)
class Rule:
    pattern: str
    replacement: str
    ignore_case: bool = False
    source: str = "user"
    description: str = ""

    def compile(self) -> re.Pattern[str]:
        return re.compile(self.pattern, re.IGNORECASE if self.ignore_case else 0)


def available_packs() -> list[str]:
    """Pack names a recipe can list; `dates` is a building block the others include."""
    return sorted(path.stem for path in PACK_DIR.glob("*.yaml"))


def load_pack(name: str, _seen: tuple[str, ...] = ()) -> list[Rule]:
    """The rules of one shipped pack, its included packs first."""
    path = PACK_DIR / f"{name}.yaml"
    if not path.is_file():
        raise TuneforgeError(f"there is no rule pack named '{name}'",
                             fix=f"use one of {', '.join(available_packs())}, or write your own rules under "
                                 "domain.rules")
    if name in _seen:
        raise TuneforgeError(f"rule pack '{name}' includes itself through {' -> '.join(_seen)}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    rules: list[Rule] = []
    for included in data.get("include", []):
        rules += load_pack(included, (*_seen, name))
    for item in data.get("rules", []):
        rules.append(Rule(pattern=item["pattern"], replacement=item["replacement"],
                          ignore_case=bool(item.get("ignore_case", False)), source=name,
                          description=item.get("description", "")))
    return rules


def check_rules(rules: Iterable[Rule], where: str = "domain.rules") -> list[Problem]:
    """Every pattern must compile and every back-reference must name a group that exists."""
    problems = []
    for index, rule in enumerate(rules):
        try:
            compiled = rule.compile()
            compiled.sub(rule.replacement, "")
            references = [int(n) for n in re.findall(r"\\(\d+)", rule.replacement)]
            if references and max(references) > compiled.groups:
                raise re.error(f"the replacement refers to group {max(references)} but the pattern has "
                               f"{compiled.groups}")
        except re.error as error:
            problems.append(Problem(where=f"{where}[{index}]", message=f"pattern {rule.pattern!r}: {error}",
                                    fix="fix the regular expression (Python `re` syntax; write \\\\1 for the "
                                        "first group in the replacement)"))
    return problems


def _import_function(path: str) -> Callable[[str], str]:
    module_name, _, attribute = path.replace(":", ".").rpartition(".")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise TuneforgeError(f"domain function '{path}' cannot be imported ({error})",
                             fix="give a dotted path to a function text -> text that is importable here, e.g. "
                                 "mypackage.rules:transliterate") from None
    if not callable(function):
        raise TuneforgeError(f"domain function '{path}' is not callable", fix="point it at a function text -> text")
    return function


class TextRules:
    """Unicode normalisation, then the regex rules in order, then the user functions.

    Picklable and made of plain data, so `datasets` fingerprints a tokenisation that uses it and reuses the cache
    as long as the rules stay the same.
    """

    def __init__(self, rules: Sequence[Rule] = (), functions: Sequence[str] = (), normalization: str = "none",
                 packs: Sequence[str] = ()) -> None:
        if normalization not in NORMALIZATIONS:
            raise TuneforgeError(f"unknown unicode normalisation '{normalization}'",
                                 fix=f"use one of {', '.join(NORMALIZATIONS)}")
        self.rules = tuple(rules)
        self.functions = tuple(functions)
        self.normalization = normalization
        self.packs = tuple(packs)

    @property
    def enabled(self) -> bool:
        return bool(self.rules or self.functions or self.normalization != "none")

    @cached_property
    def _compiled(self) -> list[tuple[re.Pattern[str], str]]:
        return [(rule.compile(), rule.replacement) for rule in self.rules]

    @cached_property
    def _callables(self) -> list[Callable[[str], str]]:
        return [_import_function(path) for path in self.functions]

    def __call__(self, text: str) -> str:
        if self.normalization == "NFKC_casefold":
            text = unicodedata.normalize("NFKC", text).casefold()
        elif self.normalization != "none":
            text = unicodedata.normalize(self.normalization, text)
        for pattern, replacement in self._compiled:
            text = pattern.sub(replacement, text)
        for function in self._callables:
            text = str(function(text))
        return re.sub(r"[ \t]{2,}", " ", text).strip() if self.rules else text

    def apply(self, texts: Iterable[Any]) -> list[Any]:
        """Strings are rewritten; anything else (a missing pair, a word list) passes through."""
        return [self(text) if isinstance(text, str) else text for text in texts]

    def __getstate__(self) -> dict[str, Any]:  # compiled patterns and imported functions are rebuilt on demand
        return {"rules": self.rules, "functions": self.functions, "normalization": self.normalization,
                "packs": self.packs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def to_dict(self) -> dict[str, Any]:
        return {"normalization": self.normalization, "packs": list(self.packs),
                "rules": [asdict(rule) for rule in self.rules], "functions": list(self.functions)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextRules:
        return cls(rules=[Rule(**item) for item in data.get("rules", [])], functions=data.get("functions", []),
                   normalization=data.get("normalization", "none"), packs=data.get("packs", []))


def rules_from_recipe(recipe: Any) -> TextRules:
    """Expand the recipe's domain section (packs first, in the order listed, then the user's rules)."""
    spec = recipe.domain
    rules: list[Rule] = []
    for pack in spec.rule_packs:
        rules += load_pack(pack)
    user = [Rule(pattern=item.pattern, replacement=item.replacement, ignore_case=item.ignore_case)
            for item in spec.rules]
    problems = check_rules(user)
    if problems:
        raise RecipeError(problems)
    text_rules = TextRules(rules + user, spec.functions, spec.unicode_normalization, spec.rule_packs)
    _ = text_rules._callables  # a misnamed function fails before training, not after
    return text_rules


def write_rules(run_dir: Path, rules: TextRules) -> None:
    if rules.enabled:
        artifacts.write_json(Path(run_dir) / RULES_FILE, rules.to_dict())


def read_rules(run_dir: Path, trust_run_code: bool | RunCodeTrust = False) -> TextRules | None:
    """The rules a run was trained with, or None when it used none.

    The file can name functions, which every prediction would call: they are refused unless trusted (a run
    directory can come from anyone; see `tuneforge.trust`)."""
    path = Path(run_dir) / RULES_FILE
    if not path.is_file():
        return None
    try:
        rules = TextRules.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as error:
        raise TuneforgeError(f"{path} is not a valid rules file ({error})",
                             fix="restore it from the run, or retrain") from None
    if rules.functions:
        RunCodeTrust.resolve(trust_run_code).check(run_dir, [(f"{RULES_FILE} functions", str(function))
                                                             for function in rules.functions])
    return rules
