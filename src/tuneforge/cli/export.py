"""`tuneforge export`: a run's model as a standalone folder (an adapter merged into its base, or copied)."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.display import console


def register(app: typer.Typer) -> None:
    """Adds the verb to the application."""

    @app.command()
    def export(
        run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="A run directory."),
        output: Path = typer.Option(..., "--output", "-o", help="Folder to write the model into."),
        merge: bool = typer.Option(False, "--merge", help="Merge a LoRA/(IA)3 adapter into its base model and "
                                   "write one standalone Transformers model (safetensors + tokenizer)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
    ) -> None:
        """Write RUN_DIR's model to OUTPUT: merged with --merge, else the adapter (PEFT runs) or the full model."""
        from tuneforge.cli.common import quiet_libraries
        from tuneforge.models.export import export_run

        quiet_libraries()
        path = export_run(run_dir, output, merge=merge, overwrite=overwrite)
        what = "merged model" if merge else "model"
        console.print(f"[green]{what} written:[/green] {path.resolve()}", soft_wrap=True, highlight=False)
