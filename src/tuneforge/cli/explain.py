"""`tuneforge explain`: why a trained run predicts what it does, for a few texts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tuneforge.cli.common import quiet_libraries, trust_option
from tuneforge.errors import TuneforgeError
from tuneforge.kinds import MULTIMODAL


def _summary(results: list[Any]) -> Any:
    """Per text: the prediction, then one line per method with its three strongest tokens."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Most influential tokens (signed score towards the explained class)")
    table.add_column("#", justify="right")
    table.add_column("text / method", max_width=48, overflow="ellipsis", no_wrap=True)
    table.add_column("prediction / top tokens")
    for index, result in enumerate(results):
        prediction = result.prediction
        predicted = (f"{prediction['label']} ({prediction['score']:.2f})" if "label" in prediction
                     else f"{prediction['score']:.4g}")
        table.add_row(str(index + 1), f"[bold]{escape(result.text)}[/bold]", escape(predicted))
        for method, attribution in result.attributions.items():
            tokens = "  ".join(f"{token} {score:+.3g}" for token, score in attribution.top(3))
            table.add_row("", f"  {method}", escape(tokens))
        table.add_section()
    return table


def register(app: typer.Typer) -> None:
    """Adds the verb to the application."""

    @app.command()
    def explain(
        run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="A run directory."),
        text: list[str] = typer.Option(None, "--text", help="A text to explain; repeat for several."),
        data: Path = typer.Option(None, "--data", help="File with the run's text column; its first --limit rows "
                                                       "are explained."),
        limit: int = typer.Option(20, min=1, help="Rows of --data to explain (each takes about a second)."),
        method: list[str] = typer.Option(["all"], "--method", help="ig, shap, lime, attention or all; repeat or "
                                                                    "separate with commas."),
        output: Path = typer.Option(None, help="Folder for the files (default: RUN_DIR/explanations)."),
        label: str = typer.Option(None, help="Explain this class instead of the predicted one."),
        text_column: str = typer.Option(None, help="Text column in --data (default: the run's)."),
        ig_steps: int = typer.Option(50, min=2, help="Integrated Gradients integration steps."),
        shap_evals: int = typer.Option(200, min=10, help="SHAP model evaluations per text."),
        lime_samples: int = typer.Option(300, min=10, help="LIME perturbed samples per text."),
        device: str = typer.Option("auto", help="auto, cpu or cuda."),
        trust_run_code: bool = trust_option(),
    ) -> None:
        """Explain predictions: token attributions (Integrated Gradients, SHAP, LIME) and attention maps,
        written as JSON, a self-contained HTML page and PNG heatmaps."""
        if not text and data is None:
            raise TuneforgeError("nothing to explain", fix='pass --text "..." (repeatable) or --data FILE')
        if text and data is not None:
            raise TuneforgeError("both --text and --data were given", fix="pass one of them")
        quiet_libraries()
        from rich.progress import Progress

        from tuneforge.cli.display import console
        from tuneforge.explain.pipeline import ExplainSettings, explain_texts, parse_methods, write_explanations
        from tuneforge.predict import Predictor
        from tuneforge.predict.io import read_texts

        predictor = Predictor.from_run(run_dir, device, trust_run_code=trust_run_code)
        if predictor.kind.name == MULTIMODAL:  # each modality's contribution, by ablation
            from tuneforge.explain.modality import explain_file, modality_table

            results, written = explain_file(predictor, data, limit, output or run_dir / "explanations")
            console.print(modality_table(results))
            console.print(f"modality contributions written to {written}")
            return
        methods = parse_methods(method, predictor.recipe.task)
        if data is not None:
            texts, pairs = read_texts(data, text_column or predictor.recipe.data.text_column,
                                      predictor.recipe.data.text_pair_column, limit)
            source = str(data.resolve())
        else:
            if predictor.recipe.data.text_pair_column:
                raise TuneforgeError("this run reads text pairs, which --text cannot give",
                                     fix=f"pass --data with columns {predictor.recipe.data.text_column} and "
                                         f"{predictor.recipe.data.text_pair_column}")
            texts, pairs, source = list(text), None, "command line"
        if not texts:
            raise TuneforgeError(f"{data} has no rows to explain", fix="pass a file with at least one row")
        settings = ExplainSettings(methods=methods, label=label, ig_steps=ig_steps, shap_evals=shap_evals,
                                   lime_samples=lime_samples)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"explaining with {', '.join(methods)}", total=len(texts))
            results = explain_texts(predictor, texts, settings, pairs,
                                    on_text=lambda _: progress.advance(task))
        target = output or run_dir / "explanations"
        written = write_explanations(results, target, source=source, title=f"Explanations for {run_dir.name}")
        console.print(_summary(results))
        console.print(f"explanations written to {target} ({len(written)} files; open {written['html'].name})")
