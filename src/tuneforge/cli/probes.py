"""`tuneforge bias-probe`: how often a language model prefers the stereotypical sentence of a CrowS-Pairs pair."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from tuneforge.errors import TuneforgeError

KINDS = ("auto", "mlm", "clm")


def _row(table: Table, name: str, group: dict[str, Any], style: str = "") -> None:
    low, high = group["ci95"]
    table.add_row(name, str(group["pairs"]), f"{group['pct_stereotype']:.1f}", f"{low:.1f}–{high:.1f}",
                  str(group["ties"]), style=style)


def result_table(result: dict[str, Any]) -> Table:
    """Overall, per direction and per bias type: % of pairs where the stereotypical sentence won."""
    # The model's folder name, not its path: a long path would squeeze the table's columns to ellipses.
    name = Path(str(result["model"])).name or str(result["model"])
    table = Table(title=f"Stereotype preference of {name} ({result['kind']}; 50 = no preference)")
    table.add_column("pairs of")
    for column in ("n", "% stereotypical", "95% CI", "ties"):
        table.add_column(column, justify="right")
    _row(table, "all", result, style="bold")
    for direction, group in result["by_direction"].items():
        _row(table, f"direction: {direction}", group, style="dim")
    for bias_type, group in result["by_bias_type"].items():
        _row(table, bias_type, group)
    return table


def register(app: typer.Typer) -> None:
    """Adds the verb to the application."""

    @app.command("bias-probe")
    def bias_probe(
        model: str = typer.Argument(..., help="A model folder (config.json + safetensors), a tuneforge run "
                                              "directory, or a bundled alias such as minilm."),
        data: Path = typer.Option(..., "--data", help="CrowS-Pairs CSV with columns sent_more, sent_less, "
                                                      "stereo_antistereo, bias_type."),
        kind: str = typer.Option("auto", "--kind", help="auto, mlm (masked LM: pseudo-log-likelihood of the "
                                                        "shared tokens) or clm (causal LM: sentence "
                                                        "log-likelihood)."),
        limit: int = typer.Option(None, "--limit", min=1, help="Score only the first N pairs (after --bias-type)."),
        bias_type: list[str] = typer.Option(None, "--bias-type", help="Keep only this bias type; repeat for "
                                                                      "several."),
        output: Path = typer.Option(None, "--output", help="Write the full result, with the most strongly "
                                                           "preferred stereotypical pairs, to this JSON file."),
        batch_size: int = typer.Option(32, min=1, help="Sequences per forward pass."),
        device: str = typer.Option("auto", help="auto, cpu or cuda."),
    ) -> None:
        """Measure stereotype preference on CrowS-Pairs-style sentence pairs (evaluation only)."""
        if kind not in KINDS:
            raise TuneforgeError(f"unknown --kind '{kind}'", fix=f"use one of {', '.join(KINDS)}")
        from tuneforge.cli.common import quiet_libraries

        quiet_libraries()
        from rich.progress import Progress

        from tuneforge import artifacts
        from tuneforge.cli.display import console
        from tuneforge.evaluate.bias_probes import load_crows_pairs, select_bias_types, stereotype_preference

        pairs = select_bias_types(load_crows_pairs(data), bias_type)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("scoring sentence pairs", total=None)
            result = stereotype_preference(
                model, pairs, kind=kind, limit=limit, batch_size=batch_size, device=device,  # type: ignore[arg-type]
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        result = {"data": str(data.resolve()), "bias_types": sorted(bias_type) if bias_type else None, **result}
        console.print(result_table(result))
        for warning in result["warnings"]:
            console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
        if output is not None:
            artifacts.write_json(output, result)
            console.print(f"result written to {output}", soft_wrap=True)
