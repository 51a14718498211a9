"""`tuneforge search`: a hyperparameter study over a recipe's `search:` section."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from tuneforge.cli.common import build_recipe, quiet_libraries
from tuneforge.cli.display import console, fmt
from tuneforge.recipe import Recipe

if TYPE_CHECKING:  # importing tuneforge.search loads transformers, which `--help` must not
    from tuneforge.search.outputs import TrialRow

LEADERBOARD_ROWS = 10


def _params(row: TrialRow) -> str:
    return "  ".join(f"{name}={fmt(value, 6) if isinstance(value, float) else value}"
                     for name, value in row.params.items())


def _trial_line(row: TrialRow, metric: str) -> str:
    colour = {"COMPLETE": "green", "PRUNED": "yellow"}.get(row.state, "red")
    score = f"{metric} {fmt(row.value)}" if row.value is not None else ""
    where = f"after {row.evaluations} evaluation(s)" if row.state == "PRUNED" else ""
    duration = f"({row.duration_s:.0f} s)" if row.duration_s is not None else ""
    return (f"trial {row.number:>3}  [{colour}]{row.state.lower():<8}[/{colour}] {score} {where}  {_params(row)}  "
            f"{duration}")


def leaderboard_table(rows: list[TrialRow], metric: str, limit: int = LEADERBOARD_ROWS) -> Table:
    names = sorted({name for row in rows for name in row.params})
    table = Table(title=f"Leaderboard (validation {metric})")
    for column in ("rank", "trial", "state", metric, *names, "s"):
        table.add_column(column, justify="left" if column == "state" else "right")
    for rank, row in enumerate(rows[:limit], start=1):
        table.add_row(str(rank), str(row.number), row.state.lower(), fmt(row.value),
                      *(fmt(row.params.get(name), 6) for name in names), fmt(row.duration_s, 0))
    return table


def _apply_flags(recipe: Recipe, recipe_path: Path, output: Path | None, trials: int | None,
                 timeout_minutes: float | None, storage: str | None, sampler: str | None) -> None:
    spec = recipe.search
    if output is not None:
        spec.dir = str(output)
    elif spec.dir is None and recipe.output.dir is None:
        spec.dir = str(Path("studies") / recipe_path.stem)  # one study per recipe file, found again on resume
    if trials is not None:
        spec.trials = trials
    if timeout_minutes is not None:
        spec.timeout_minutes = timeout_minutes
    if storage is not None:
        spec.storage = storage
    if sampler is not None:
        spec.sampler = sampler


def register(app: typer.Typer) -> None:
    @app.command()
    def search(
        recipe: Path = typer.Argument(..., exists=True, dir_okay=False, help="Recipe YAML with a search: section."),
        sets: list[str] = typer.Option(None, "--set", help="Override a recipe field: --set search.trials=30"),
        output: Path = typer.Option(None, "--output", help="Study directory (search.dir); default "
                                    "studies/<recipe name>."),
        workers: int = typer.Option(1, "--workers", help="Worker processes sharing the study's storage."),
        trials: int = typer.Option(None, "--trials", help="Trial budget (search.trials)."),
        timeout_minutes: float = typer.Option(None, "--timeout-minutes", help="Wall-time budget of this command "
                                              "(search.timeout_minutes)."),
        storage: str = typer.Option(None, "--storage", help="SQLAlchemy URL of a shared study database "
                                    "(search.storage); default SQLite in the study directory."),
        sampler: str = typer.Option(None, "--sampler", help="tpe, random or grid (search.sampler)."),
    ) -> None:
        """Search hyperparameters: the recipe as it is first, then trials pruned early when hopeless; resumable."""
        import optuna

        from tuneforge.cli.progress import RichProgressCallback
        from tuneforge.search import run_study, study_directory

        built = build_recipe(recipe, sets)
        _apply_flags(built, recipe, output, trials, timeout_minutes, storage, sampler)
        built = Recipe.model_validate(built.model_dump())  # the search section is checked again after the flags
        quiet_libraries()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        metric, _ = built.early_stopping_metric()
        spec = built.search
        budget = " and ".join(part for part in (f"{spec.trials} trials" if spec.trials else "",
                                                f"{spec.timeout_minutes:g} min" if spec.timeout_minutes else "")
                              if part)
        console.print(f"[bold]study[/bold] {study_directory(built).resolve()}  [bold]budget[/bold] {budget}  "
                      f"[bold]sampler[/bold] {spec.sampler}  [bold]pruner[/bold] {spec.pruner}  "
                      f"[bold]workers[/bold] {workers}", soft_wrap=True)
        progress = RichProgressCallback(metric) if workers == 1 else None

        def on_trial(row: TrialRow) -> None:
            if progress is not None:
                progress.on_train_end(None, None, None)  # a pruned trial never reached its train-end hook
            console.print(_trial_line(row, metric), highlight=False, soft_wrap=True)

        def on_warning(message: str) -> None:
            console.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)

        result = run_study(built, workers=workers, callbacks=[progress] if progress else [], on_trial=on_trial,
                           on_warning=on_warning)
        console.print(leaderboard_table(result.trials, metric))
        counts = ", ".join(f"{result.count(state)} {state.lower()}" for state in ("COMPLETE", "PRUNED", "FAIL")
                           if result.count(state))
        console.print(f"{len(result.trials)} trials ({counts}); {result.ran_now} run by this command")
        if result.best is None:
            console.print("[yellow]no trial has completed yet[/yellow]; run the same command again to continue")
        else:
            console.print(f"[green]best:[/green] trial {result.best.number}, validation {metric} "
                          f"{fmt(result.best.value)}  {_params(result.best)}", highlight=False, soft_wrap=True)
            console.print(f"best run: {result.best.run_dir}", soft_wrap=True)
            console.print(f"best recipe: {result.best_recipe}  (tuneforge train {result.best_recipe})",
                          soft_wrap=True)
        console.print(f"leaderboard: {result.leaderboard}", soft_wrap=True)
        for path in result.plots:
            console.print(f"plot: {path}", soft_wrap=True)
        for name, reason in result.skipped_plots.items():
            console.print(f"[dim]plot {name} skipped: {reason}[/dim]")
