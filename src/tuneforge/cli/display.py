"""Rich rendering of results: metrics tables, problem lists, progress."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from transformers import TrainerCallback

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


class RichProgressCallback(TrainerCallback):
    """A live bar with the step, the latest training loss and the latest validation metric."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.progress: Progress | None = None
        self.task_id: Any = None
        self.loss = "-"
        self.score = "-"

    def _description(self) -> str:
        return f"loss {self.loss}  val {self.metric} {self.score}"

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        if not state.is_world_process_zero:
            return
        self.progress = Progress(
            TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
        )
        self.progress.start()
        self.task_id = self.progress.add_task(self._description(), total=state.max_steps,
                                              completed=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.progress is not None:
            self.progress.update(self.task_id, completed=state.global_step, description=self._description())

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        logs = logs or {}
        if "loss" in logs:
            self.loss = f"{logs['loss']:.4f}"
        key = f"eval_{self.metric}"
        if key in logs:
            self.score = f"{logs[key]:.4f}"
            if self.progress is not None:
                self.progress.console.print(
                    f"epoch {state.epoch:.2f}: validation {self.metric} {logs[key]:.4f}, "
                    f"loss {logs.get('eval_loss', float('nan')):.4f}"
                )
        if self.progress is not None:
            self.progress.update(self.task_id, description=self._description())

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
