"""`tuneforge annotate select|merge`: the active-learning loop around a run."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.common import quiet_libraries, trust_option
from tuneforge.cli.display import console, errors
from tuneforge.lifecycle.active_learning import STRATEGIES

annotate = typer.Typer(help="Choose unlabelled texts worth labelling, and merge the labelled rows back.",
                       no_args_is_help=True)


@annotate.command("select")
def select_command(
    run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="A classification run directory."),
    pool: Path = typer.Option(..., "--pool", help="Unlabelled texts (CSV, TSV, JSONL, Parquet) with a text column."),
    budget: int = typer.Option(..., "--budget", min=1, help="How many texts to choose."),
    strategy: str = typer.Option("entropy", "--strategy", help=f"One of: {', '.join(STRATEGIES)}. diversity spreads "
                                 "the choice over the model's embedding space among the most uncertain texts."),
    output: Path = typer.Option(Path("to_label.csv"), "--output", "-o", help="CSV to write for the annotators."),
    text_column: str = typer.Option(None, help="Text column in --pool (default: the run's)."),
    seed: int = typer.Option(0, help="Seed of the random strategy."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    trust_run_code: bool = trust_option(),
) -> None:
    """Write the BUDGET pool texts the run's model is least sure about, with an empty label column to fill in,
    the score they were chosen by and the model's guess."""
    quiet_libraries()
    from tuneforge.lifecycle.annotation import select_for_labelling, write_frame
    from tuneforge.predict import Predictor

    predictor = Predictor.from_run(run_dir, device, trust_run_code=trust_run_code)
    result = select_for_labelling(predictor, pool, budget, strategy, text_column, seed)
    write_frame(output, result.frame)
    note = f" ({result.duplicates_dropped} repeated texts counted once)" if result.duplicates_dropped else ""
    console.print(f"{len(result.frame)} of {result.pool_size} pool texts chosen by {strategy}{note}; label the "
                  f"'{predictor.recipe.data.label_column}' column of {output}", highlight=False, soft_wrap=True)
    console.print(f"then: tuneforge annotate merge --labelled {output} --into {predictor.recipe.data.train or 'TRAIN'}"
                  f" --output TRAIN_V2 --run {run_dir}", highlight=False, soft_wrap=True)


@annotate.command("merge")
def merge_command(
    labelled: Path = typer.Option(..., "--labelled", help="The labelled file (what `annotate select` wrote)."),
    into: Path = typer.Option(..., "--into", help="The existing labelled data to extend."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write existing + new rows (CSV, TSV, JSONL)."),
    run_dir: Path = typer.Option(None, "--run", exists=True, file_okay=False,
                                 help="Take the text and label columns and the allowed labels from this run."),
    text_column: str = typer.Option(None, help="Text column (default: the run's, else 'text')."),
    label_column: str = typer.Option(None, help="Label column (default: the run's, else 'label')."),
    labels: str = typer.Option(None, help="Allowed labels, comma-separated (default: the run's, else those "
                                          "already in --into)."),
    keep_duplicates: bool = typer.Option(False, help="Keep labelled texts that are already in --into."),
) -> None:
    """Append labelled rows to the training data after checking them: every row labelled, every label known;
    texts already present are reported (and left out)."""
    from tuneforge.lifecycle.annotation import merge_labelled, write_frame

    allowed = [name.strip() for name in labels.split(",") if name.strip()] if labels else None
    if run_dir is not None:
        from tuneforge.run import RunLayout, read_run_recipe

        spec = read_run_recipe(run_dir).data
        text_column, label_column = text_column or spec.text_column, label_column or spec.label_column
        if allowed is None:
            import json

            config = RunLayout(run_dir).model / "config.json"
            if config.is_file():
                id2label = json.loads(config.read_text(encoding="utf-8")).get("id2label") or {}
                allowed = [id2label[key] for key in sorted(id2label, key=int)] or None
    result = merge_labelled(labelled, into, text_column or "text", label_column or "label", allowed,
                            keep_duplicates)
    from rich.markup import escape

    for problem in result.warnings:
        errors.print(f"[yellow]warning:[/yellow] {escape(str(problem))}", highlight=False)
    write_frame(output, result.frame)
    console.print(f"{result.added} labelled rows added; {len(result.frame)} rows written to {output}",
                  highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(annotate, name="annotate")
