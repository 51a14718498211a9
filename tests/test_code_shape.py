"""The pipelines stay one skeleton: no long functions and no copied blocks inside train/ and predict/."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tuneforge"
PIPELINES = ("train", "predict")
MAX_FUNCTION_LINES = 80
WINDOW = 6


def _files(name: str) -> list[Path]:
    return sorted((PACKAGE / name).rglob("*.py"))


@pytest.mark.parametrize("name", PIPELINES)
def test_no_function_is_over_80_lines(name: str) -> None:
    long = []
    for path in _files(name):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these functions: " + "; ".join(long)


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """Lines that carry code: no blanks, comments, imports, docstring-only or lone-punctuation lines."""
    kept = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = " ".join(raw.split("#", 1)[0].split())
        if not line or line.startswith(("import ", "from ", '"""', "'''")) or len(line.strip("()[]{},:")) == 0:
            continue
        kept.append((number, line))
    return kept


@pytest.mark.parametrize("name", PIPELINES)
def test_no_block_of_six_lines_is_repeated(name: str) -> None:
    seen: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for path in _files(name):
        lines = _code_lines(path)
        for start in range(len(lines) - WINDOW + 1):
            window = tuple(text for _, text in lines[start:start + WINDOW])
            seen[window].append(f"{path.relative_to(PACKAGE)}:{lines[start][0]}")
    repeated = [places for places in seen.values() if len(places) > 1]
    assert not repeated, "fold these repeated blocks into one helper: " + "; ".join(
        " ~ ".join(places) for places in repeated[:5])


def test_test_modules_have_unique_names() -> None:
    """pytest imports test files by basename (no packages here): two with one name break collection of all."""
    names = [path.name for path in (PACKAGE.parents[1] / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted({name for name in names if names.count(name) > 1})
