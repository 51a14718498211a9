"""Errors a user can act on: each carries what went wrong, where, and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One finding about a recipe or its data; `where` points at the file, row or field."""

    where: str
    message: str
    fix: str = ""
    severity: str = "error"  # "error" stops a run, "warning" is reported and training goes on

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}"
        return f"{text} Fix: {self.fix}" if self.fix else text


class TuneforgeError(Exception):
    """Base class; the CLI turns it into a short message and a non-zero exit code instead of a traceback."""

    exit_code = 1

    def __init__(self, message: str, fix: str = "") -> None:
        self.message = message
        self.fix = fix
        super().__init__(f"{message} Fix: {fix}" if fix else message)


class RecipeError(TuneforgeError):
    """The recipe is malformed; lists every field problem at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"The recipe has {len(problems)} problem(s):\n{lines}")


class DataError(TuneforgeError):
    """The data does not fit the recipe; lists every problem found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = [p for p in problems if p.severity == "error"]
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"The data has {len(self.problems)} problem(s):\n{lines}")


class ModelNotFoundError(TuneforgeError):
    """A model name resolves to nothing usable offline or online."""
