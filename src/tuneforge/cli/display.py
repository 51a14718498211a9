"""Rich rendering of results: metrics tables and problem lists (the training bar is in `cli.progress`)."""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.errors import MissingStyle, StyleSyntaxError
from rich.table import Table
from rich.text import Text

from tuneforge.errors import Problem

# Rich's markup tag: `[` then a lowercase letter, #, / or @, up to the next `]` (backslashes escape it).
_TAG = re.compile(r"(\\*)\[([a-z#/@][^\[]*?)\]")


class LiteralConsole(Console):
    """A console whose markup is only the styles tuneforge writes ([red]...[/red]): any other bracketed text in
    a message, such as the pip extra in `pip install 'tuneforge[onnx]'`, is printed as written where plain rich
    would read it as a tag and drop it."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        markup = kwargs.get("markup")
        if markup or (markup is None and self._markup):
            text = _TAG.sub(self._keep_or_escape, text)
        return super().render_str(text, **kwargs)

    def _keep_or_escape(self, match: re.Match[str]) -> str:
        backslashes, tag = match[1], match[2]
        if len(backslashes) % 2 or self._is_markup(tag):
            return match[0]
        return f"{backslashes}\\[{tag}]"

    def _is_markup(self, tag: str) -> bool:
        name = tag.removeprefix("/").strip()
        if not name or name.startswith(("@", "link")):
            return True
        try:
            self.get_style(name)
        except (MissingStyle, StyleSyntaxError):
            return False
        return True


console = LiteralConsole()
errors = LiteralConsole(stderr=True, soft_wrap=True)  # error lines stay whole so they can be grepped and copied

HEADLINE = {
    "classification": ("accuracy", "f1_macro", "f1_weighted", "ece", "loss"),
    "regression": ("rmse", "mae", "r2", "pearson", "spearman", "loss"),
    "token-classification": ("f1", "precision", "recall", "f1_macro", "token_accuracy", "loss"),
    "multilabel": ("f1_micro", "f1_macro", "f1_weighted", "precision_micro", "recall_micro", "subset_accuracy",
                   "hamming_loss", "loss"),
    "seq2seq": ("chrf", "bleu", "rouge1", "rouge2", "rougeL", "exact_match", "loss", "perplexity"),
    "causal-lm": ("accuracy", "f1_macro", "chrf", "bleu", "rougeL", "exact_match", "loss", "perplexity"),
}


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell: '-' for a missing figure, floats to `digits` decimals."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def metrics_table(metrics: dict[str, Any], task: str, title: str = "Metrics") -> Table:
    splits = [s for s in ("validation", "test", "evaluation") if isinstance(metrics.get(s), dict)]
    table = Table(title=title)
    table.add_column("metric")
    for split in splits:
        table.add_column(split, justify="right")
    for name in HEADLINE[task]:
        if any(name in metrics[s] for s in splits):
            table.add_row(name, *(fmt(metrics[s].get(name)) for s in splits))
    count = "sentences" if task == "token-classification" else "examples"
    table.add_row(count, *(fmt(metrics[s].get(count)) for s in splits))
    return table


def per_class_table(per_class: dict[str, dict[str, Any]], title: str, kind: str = "class") -> Table:
    table = Table(title=title)
    for column in (kind, "precision", "recall", "f1", "support"):
        table.add_column(column, justify="right" if column != kind else "left")
    for name, row in per_class.items():
        table.add_row(name, fmt(row["precision"]), fmt(row["recall"]), fmt(row["f1"]), str(row["support"]))
    return table


def show_metrics(metrics: dict[str, Any], task: str, title: str = "Metrics") -> None:
    console.print(metrics_table(metrics, task, title))
    for split in ("test", "evaluation", "validation"):
        scores = metrics.get(split) or {}
        per_class = scores.get("per_class") or scores.get("per_type")
        if per_class:
            kind = "entity type" if "per_type" in scores else "label" if task == "multilabel" else "class"
            console.print(per_class_table(per_class, f"Per {kind} ({split})", kind.split()[-1]))
            break


def show_problems(problems: list[Problem]) -> None:
    for problem in problems:
        colour = "red" if problem.severity == "error" else "yellow"
        errors.print(f"[{colour}]{problem.severity}[/{colour}] {problem.where}: {problem.message}", highlight=False)
        if problem.fix:
            errors.print(f"      fix: {problem.fix}", highlight=False)
