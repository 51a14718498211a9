"""CoNLL-style files for token classification: one token per line, its tag in the last column, a blank line
between sentences.

`datasets` has no loader for this plain format (its conll2003 builder downloads the original corpus), so the
reader is written here; it checks every line and reports all problems with their line numbers at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.errors import DataError, Problem

TOKEN_FIELD = "tokens"
TAG_FIELD = "tags"
DOCUMENT_MARKER = "-DOCSTART-"
CONLL_SUFFIXES = (".conll", ".conllu", ".bio", ".iob", ".iob2", ".txt")


@dataclass
class Sentences:
    """Sentences of one file; `lines[i]` is the line on which sentence i starts, for error messages."""

    tokens: list[list[str]] = field(default_factory=list)
    tags: list[list[str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tokens)


def is_conll(path: str | Path) -> bool:
    return Path(path).suffix.lower() in CONLL_SUFFIXES


def read_conll(path: str | Path) -> Sentences:
    """Tokens and tags per sentence; columns are split on tabs or spaces, the first is the token and the last
    the tag (CoNLL-2003's POS and chunk columns in between are ignored)."""
    path = Path(path)
    if not path.is_file():
        raise DataError([Problem(where=str(path), message="file not found", fix="check the path")])
    sentences = Sentences()
    problems: list[Problem] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 1

    def close() -> None:
        if tokens:
            sentences.tokens.append(list(tokens))
            sentences.tags.append(list(tags))
            sentences.lines.append(start)
            tokens.clear()
            tags.clear()

    with path.open(encoding="utf-8-sig") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip("\n\r")
            if not line.strip():
                close()
                continue
            columns = line.split("\t") if "\t" in line else line.split()
            if columns[0] == DOCUMENT_MARKER:
                close()
                continue
            if len(columns) < 2:
                if len(problems) < 20:
                    problems.append(Problem(where=f"{path}:{number}", message=f"'{line.strip()}' has no tag column",
                                            fix="write 'token<space or tab>tag' on every line, a blank line "
                                                "between sentences"))
                continue
            if not tokens:
                start = number
            tokens.append(columns[0].strip())
            tags.append(columns[-1].strip())
    close()
    if problems:
        raise DataError(problems)
    if not sentences.tokens:
        raise DataError([Problem(where=str(path), message="no sentences found",
                                 fix="write one 'token tag' pair per line, a blank line between sentences")])
    return sentences


def tag_problems(path: str, sentences: Sentences, known: set[str] | None = None) -> list[Problem]:
    """Tags that are not BIO/IOB2 (`O`, `B-X`, `I-X`), and, for evaluation files, tags training never saw."""
    problems = []
    bad: dict[str, int] = {}
    unseen: dict[str, int] = {}
    for line, row in zip(sentences.lines, sentences.tags, strict=True):
        for tag in row:
            if tag != "O" and not (len(tag) > 2 and tag[:2] in ("B-", "I-")):
                bad.setdefault(tag, line)
            elif known is not None and tag not in known:
                unseen.setdefault(tag, line)
    for tag, line in bad.items():
        problems.append(Problem(where=f"{path}:{line}", message=f"tag '{tag}' is not in BIO form",
                                fix="use O, B-TYPE and I-TYPE tags (IOB2), e.g. B-PER I-PER O"))
    for tag, line in unseen.items():
        problems.append(Problem(where=f"{path}:{line}", message=f"tag '{tag}' never occurs in the training file",
                                fix="add examples of it to the training data, or map it to O"))
    return problems


def sort_tags(tags: set[str]) -> list[str]:
    """O first, then each entity type's B- and I- tags together, so label ids are stable across runs."""
    types = sorted({tag[2:] for tag in tags if tag != "O"})
    ordered = ["O"] if "O" in tags else []
    for kind in types:
        ordered += [tag for tag in (f"B-{kind}", f"I-{kind}") if tag in tags]
    return ordered
