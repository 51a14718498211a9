"""Which code named inside a run directory may run when the run is loaded.

A run directory travels: through registries, shared folders and downloads. Anything in it that names code —
`domain.functions` (dotted paths called on every input), `evaluation.plugins` (imported by `evaluate`) and
`model.trust_remote_code` (modelling code shipped beside weights) — is code execution for whoever loads it. So
loading a run runs none of it unless the user opts in: for one command (`--trust-run-code`, Python
`trust_run_code=True`), or for named paths in the user's settings file, which a run directory cannot write:

    # ~/.tuneforge/settings.yaml (or $TUNEFORGE_HOME/settings.yaml)
    trusted_run_code:
      - mypackage.rules:transliterate
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError

HOME_VARIABLE = "TUNEFORGE_HOME"
SETTINGS_NAME = "settings.yaml"
SETTINGS_KEY = "trusted_run_code"
REMOTE_CODE = "model.trust_remote_code"


def settings_path() -> Path:
    """The user's settings file: beside the embedded registry, in tuneforge's home folder."""
    return Path(os.environ.get(HOME_VARIABLE) or Path.home() / ".tuneforge").expanduser() / SETTINGS_NAME


class RunCodeRefused(TuneforgeError):
    """A run names code to run and the user has not trusted it."""

    exit_code = 4


@dataclass(frozen=True)
class RunCodeTrust:
    """`allow_all` trusts everything a run names; otherwise only the dotted paths in `allowed` may run."""

    allow_all: bool = False
    allowed: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def resolve(cls, trust: bool | RunCodeTrust | None = False, settings_file: Path | None = None) -> RunCodeTrust:
        """`True` trusts all; `False`/None trusts what the user's settings file allows; a trust object as given."""
        if isinstance(trust, RunCodeTrust):
            return trust
        if trust:
            return cls(allow_all=True)
        return cls(allowed=frozenset(read_allow_list(settings_file or settings_path())))

    def permits(self, path: str) -> bool:
        return self.allow_all or _normalised(path) in {_normalised(p) for p in self.allowed}

    def check(self, run_dir: str | Path, code: Iterable[tuple[str, str]]) -> None:
        """Refuse (naming every item) unless each (recipe field, dotted path) pair is trusted."""
        refused = [(where, path) for where, path in code if not self.permits(path)]
        if not refused:
            return
        listed = "; ".join(f"{where}: {path}" for where, path in refused)
        allow = "\n".join(f"  - {path}" for _, path in refused if path != REMOTE_CODE)
        raise RunCodeRefused(
            f"the run {run_dir} names code that loading it would run ({listed}). Loading it runs that code with "
            "your permissions, and a run directory can come from anyone",
            fix="if you trust whoever made this run, pass --trust-run-code (Python: trust_run_code=True)"
                + (f", or allow these paths for good in {settings_path()} under {SETTINGS_KEY}:\n{allow}"
                   if allow else ""))


def run_code(recipe: Any, plugins: bool = True) -> list[tuple[str, str]]:
    """The code a run's recipe would run, as (recipe field, dotted path): on loading (domain functions, remote
    model code) and, with `plugins`, on evaluating (evaluation plugins)."""
    code = [("domain.functions", str(path)) for path in recipe.domain.functions]
    if plugins:
        code += [("evaluation.plugins", str(path)) for path in recipe.evaluation.plugins]
    if recipe.model.trust_remote_code:
        code.append((REMOTE_CODE, REMOTE_CODE))
    return code


def check_run_code(run_dir: str | Path, recipe: Any, trust: bool | RunCodeTrust | None = False,
                   plugins: bool = True) -> None:
    """Refuse to use a run whose recipe names code the user has not trusted."""
    code = run_code(recipe, plugins)
    if code:
        RunCodeTrust.resolve(trust).check(run_dir, code)


def read_allow_list(path: Path) -> list[str]:
    if not path.is_file():
        return []
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise TuneforgeError(f"{path} cannot be read ({error})",
                             fix=f"fix the YAML, or remove the file; it holds {SETTINGS_KEY}: a list of dotted "
                                 "paths") from None
    listed = data.get(SETTINGS_KEY, []) if isinstance(data, dict) else None
    if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
        raise TuneforgeError(f"{path}: {SETTINGS_KEY} must be a list of dotted paths",
                             fix=f"write it as\n{SETTINGS_KEY}:\n  - mypackage.module:function")
    return listed


def _normalised(path: str) -> str:
    return str(path).strip().replace(":", ".")
