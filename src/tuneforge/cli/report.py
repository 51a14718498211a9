"""`tuneforge report`: write a run's self-contained HTML report and model card."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.display import console


def register(app: typer.Typer) -> None:
    """Adds the verb to the application."""

    @app.command()
    def report(
        run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="A run directory."),
        open_browser: bool = typer.Option(False, "--open", help="Open the report in the default web browser."),
    ) -> None:
        """Write RUN_DIR/report.html (one self-contained page) and RUN_DIR/model_card.md."""
        import webbrowser

        from tuneforge.report.html import build_report

        path = build_report(run_dir)
        console.print(str(path), highlight=False, soft_wrap=True)
        if open_browser:
            try:
                opened = webbrowser.open(path.resolve().as_uri())
            except webbrowser.Error:
                opened = False
            if not opened:
                console.print("no web browser found; open the file above yourself", style="yellow")
