"""`tuneforge ensemble`: combine finished runs into one ensemble run directory."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.common import trust_option
from tuneforge.cli.display import console, fmt


def _summary(metrics: dict, role: str, task: str) -> None:
    """One table: each member's headline metrics beside the ensemble's, on one split."""
    from rich.table import Table

    keys = ("accuracy", "f1_macro") if task == "classification" else ("rmse", "mae")
    table = Table(title=f"Members and ensemble ({role})")
    table.add_column("run")
    for key in keys:
        table.add_column(key, justify="right")
    for run, scores in metrics["members"].items():
        table.add_row(run, *(fmt(scores.get(role, {}).get(key)) for key in keys))
    table.add_row(f"[bold]ensemble ({metrics['ensemble']['method']})[/bold]",
                  *(fmt(metrics[role].get(key)) for key in keys))
    console.print(table)


def register(app: typer.Typer) -> None:
    @app.command()
    def ensemble(
        runs: list[Path] = typer.Argument(..., exists=True, file_okay=False, help="Two or more finished runs of "
                                          "one task (same label set; model, seed or data may differ)."),
        method: str = typer.Option("mean", "--method", help="mean (soft voting), vote (hard voting), weighted "
                                   "(weights fitted on --validation) or stacking (logistic-regression "
                                   "meta-learner fitted on --validation)."),
        validation: Path = typer.Option(None, "--validation", exists=True, dir_okay=False,
                                        help="Labelled file to fit weighted/stacking on; scored for every method."),
        test: Path = typer.Option(None, "--test", exists=True, dir_okay=False, help="Labelled file to score."),
        output: Path = typer.Option(..., "--output", help="The ensemble's run directory."),
        device: str = typer.Option("auto", help="auto, cpu or cuda."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
        trust_run_code: bool = trust_option(),
    ) -> None:
        """Combine runs into an ensemble directory that evaluate, predict and serve accept like any run."""
        from tuneforge.cli.common import quiet_libraries
        from tuneforge.ensemble import METHODS
        from tuneforge.ensemble.build import build_ensemble
        from tuneforge.errors import TuneforgeError

        if method not in METHODS:
            raise TuneforgeError(f"unknown ensemble method '{method}'", fix=f"use --method {' | '.join(METHODS)}")
        quiet_libraries()
        run = build_ensemble(runs, method, output, validation=validation, test=test, device=device,
                             overwrite=overwrite, trust_run_code=trust_run_code)
        weights = run.metrics["ensemble"]["weights"]
        if weights:
            console.print("weights: " + ", ".join(f"{path.name}={weight:.3f}" for path, weight in zip(runs, weights,
                                                                                                      strict=True)))
        for role in ("validation", "test"):
            if role in run.metrics:
                _summary(run.metrics, role, run.metrics["task"])
        console.print(f"[green]ensemble written:[/green] {run.directory.resolve()}", soft_wrap=True, highlight=False)
