"""The live training bar: a transformers callback, kept apart from `display` so `--help` never imports transformers."""

from __future__ import annotations

from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from transformers import TrainerCallback

from tuneforge.cli.display import console


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
