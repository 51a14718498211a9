"""Rich rendering of results: metrics tables and problem lists (the training bar is in `cli.progress`)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tuneforge.errors import Problem

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # error lines stay whole so they can be grepped and copied

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
