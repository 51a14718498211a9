"""`tuneforge auto`: strategies tried within a wall-clock budget, one run directory (or ensemble) out."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tuneforge.cli.common import build_recipe, quiet_libraries
from tuneforge.cli.display import console, fmt
from tuneforge.errors import TuneforgeError

if TYPE_CHECKING:  # importing tuneforge.search loads transformers, which `--help` must not
    from tuneforge.search.auto import AutoProgress

_UNITS = {"h": 3600.0, "m": 60.0, "min": 60.0, "s": 1.0}


def parse_budget(text: str) -> float:
    """Seconds in '45m', '1h30m', '90s', '2h' or a plain number of minutes."""
    cleaned = text.strip().lower().replace(" ", "")
    try:
        return float(cleaned) * 60
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|min|m|s)", cleaned)
    if not parts or "".join(number + unit for number, unit in parts) != cleaned:
        raise TuneforgeError(f"--budget '{text}' is not a duration", fix="write e.g. 45m, 1h30m, 90s or 2h")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise TuneforgeError(f"--budget '{text}' is no time at all", fix="give auto some minutes, e.g. 30m")
    return seconds


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes:d}:{rest:02d}"


def register(app: typer.Typer) -> None:
    @app.command()
    def auto(
        recipe: Path = typer.Argument(None, exists=True, dir_okay=False, help="Recipe YAML (optional)."),
        data: Path = typer.Option(None, "--data", help="Training file (data.train)."),
        validation: Path = typer.Option(None, help="Validation file (data.validation); carved from train when "
                                        "absent."),
        test: Path = typer.Option(None, help="Test file (data.test), read once, by the chosen run."),
        text_column: str = typer.Option(None, help="Text column (data.text_column)."),
        label_column: str = typer.Option(None, help="Label column (data.label_column)."),
        model: str = typer.Option(None, help="Model alias, folder or hub id (model.name)."),
        task: str = typer.Option(None, help="classification or regression."),
        budget: str = typer.Option(None, "--budget", help="Wall-clock budget, e.g. 45m, 1h30m (auto.budget_minutes; "
                                   "default 30m)."),
        output: Path = typer.Option(None, "--output", help="Auto directory (auto.dir): trials/, auto.json and the "
                                    "chosen run in run/."),
        sets: list[str] = typer.Option(None, "--set", help="Override a recipe field: --set auto.seeds=3"),
    ) -> None:
        """Try strategies within a time budget (the recipe first); keep the best run, or an ensemble that beats it."""
        budget_s = parse_budget(budget) if budget is not None else None
        built = build_recipe(recipe, sets, data=data, validation=validation, test=test, text_column=text_column,
                             label_column=label_column, model=model, task=task)
        if output is not None:
            built.auto.dir = str(output)
        quiet_libraries()
        from tuneforge.search.auto import auto_directory, run_auto

        seconds = budget_s if budget_s is not None else built.auto.budget_minutes * 60
        metric, _ = built.early_stopping_metric()
        console.print(f"[bold]auto[/bold] {auto_directory(built).resolve()}  [bold]model[/bold] {built.model.name}  "
                      f"[bold]budget[/bold] {_clock(seconds)}  [bold]strategies[/bold] "
                      f"{', '.join(built.auto.strategies)}", soft_wrap=True)

        def on_progress(progress: AutoProgress) -> None:
            used = f"[{_clock(progress.elapsed_s)} / {_clock(progress.budget_s)}]"
            best = f"best {metric} {fmt(progress.best_value)} (trial {progress.best_trial})" \
                if progress.best_value is not None else "no trial finished yet"
            if progress.last is None:
                console.print(f"{used} starting: trial 0 is the recipe as it is", highlight=False)
                return
            row = progress.last
            colour = {"COMPLETE": "green", "PRUNED": "yellow"}.get(row.state, "red")
            score = f"{metric} {fmt(row.value)}" if row.value is not None else ""
            console.print(f"{used} trial {row.number:>3} [{colour}]{row.state.lower():<8}[/{colour}] {score:<18} "
                          f"{progress.last_label}  | {progress.trials_done} done, {best}", highlight=False,
                          soft_wrap=True)

        result = run_auto(built, budget_s=budget_s, on_progress=on_progress)
        summary = result.summary
        if summary["interrupted"]:
            console.print("[yellow]interrupted:[/yellow] kept the best trial finished so far")
        for warning in summary["warnings"]:
            console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
        console.print(f"[bold]decision:[/bold] {summary['decision']}", highlight=False, soft_wrap=True)
        for row in summary["ablation"]:
            spread = f" ± {row['spread']:.4f}" if row.get("spread") is not None else ""
            effect = f"{row['effect']:+.4f}{spread}" if row.get("effect") is not None else "—"
            console.print(f"  {row['strategy']:<28} {row['seeds']} seed(s)  mean {fmt(row['mean'])}  effect "
                          f"{effect}", highlight=False, soft_wrap=True)
        if summary["test"]:
            console.print(f"test {metric}: {fmt(summary['test'].get(metric))}  (read once, by the chosen run)",
                          highlight=False)
        console.print(f"[green]run directory:[/green] {result.run_dir.resolve()}", soft_wrap=True)
        console.print(f"[green]report:[/green] {result.run_dir.resolve() / 'report.html'}", soft_wrap=True)
