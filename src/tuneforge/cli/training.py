"""`tuneforge train` and `tuneforge demo`."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from tuneforge.cli.common import build_recipe, quiet_libraries, recipe_for_resume, trust_option
from tuneforge.cli.display import console, show_metrics, show_problems
from tuneforge.demo import demo_recipe
from tuneforge.kinds import MULTITASK, kind_of
from tuneforge.recipe import Recipe
from tuneforge.run import Run, RunLayout


def _train(recipe: Recipe, resume: bool, force: bool = False) -> Run:
    from tuneforge.cli.progress import RichProgressCallback
    from tuneforge.train.skeleton import fine_tune

    quiet_libraries()
    metric, _ = recipe.early_stopping_metric()
    if kind_of(recipe).name == MULTITASK:  # early stopping watches the mean over the tasks
        metric = "mean_score"
        console.print(f"[bold]model[/bold] {recipe.model.name}  [bold]tasks[/bold] "
                      f"{', '.join(f'{spec.name} ({spec.task})' for spec in recipe.tasks)}")
    else:
        console.print(f"[bold]model[/bold] {recipe.model.name}  [bold]task[/bold] {recipe.task}  "
                      f"[bold]train[/bold] {recipe.data.train}")
    run = fine_tune(recipe, resume=resume, force=force, callbacks=[RichProgressCallback(metric)],
                    on_warnings=show_problems, on_progress=_after_training)
    for name, entry in (run.metrics.get("tasks") or {}).items():
        show_metrics(entry, entry["task"], title=f"Results: task {name} ({recipe.model.name})")
    if not recipe.tasks:
        show_metrics(run.metrics, recipe.task, title=f"Results ({recipe.model.name})")
    training = run.metrics["training"]
    console.print(f"trained {training['global_steps']} steps in {training['runtime_seconds']:.0f} s"
                  f"{' (stopped early)' if training['stopped_early'] else ''}")
    choice = training.get("batch_size_choice") or {}
    if choice.get("method") not in (None, "given"):  # train.batch_size: auto
        console.print(f"batch size {choice['size']} ({choice['method']}: {choice['reason']})", highlight=False)
    _show_extras(RunLayout(run.directory.resolve()))
    console.print(f"[green]run directory:[/green] {run.directory.resolve()}", soft_wrap=True)
    return run


def _after_training(step: str, number: int, total: int) -> None:
    console.print(f"[dim]after training ({number}/{total}):[/dim] {step}", highlight=False)


def _show_extras(layout: RunLayout) -> None:
    """One line per after-training artifact, so the user knows the report and the audit exist."""
    import json

    if layout.fairness.is_file():
        audit = json.loads(layout.fairness.read_text(encoding="utf-8"))
        if audit.get("passed") is None:  # no attribute could be assessed (one group, one predicted class)
            verdict = "[yellow]not assessable[/yellow]"
        elif audit["passed"]:
            verdict = "[green]passed[/green]"
        else:
            verdict = f"[red]{len(audit.get('breaches', []))} threshold(s) breached[/red]"
        console.print(f"fairness audit of the test split: {verdict} ({layout.fairness.name})")
    if (layout.explanations / "explanations.html").is_file():
        console.print(f"example explanations: {layout.explanations / 'explanations.html'}", soft_wrap=True)
    if layout.report.is_file():
        console.print(f"[green]report:[/green] {layout.report}  (tuneforge report {layout.root} --open)",
                      soft_wrap=True)


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        recipe: Path = typer.Argument(None, exists=True, dir_okay=False, help="Recipe YAML (optional)."),
        sets: list[str] = typer.Option(None, "--set", help="Override a recipe field: --set train.epochs=5"),
        data: Path = typer.Option(None, "--data", help="Training file (data.train)."),
        validation: Path = typer.Option(None, help="Validation file (data.validation)."),
        test: Path = typer.Option(None, help="Test file (data.test)."),
        text_column: str = typer.Option(None, help="Text column (data.text_column)."),
        text_pair_column: str = typer.Option(None, help="Second text column for pairs (data.text_pair_column)."),
        label_column: str = typer.Option(None, help="Label column (data.label_column)."),
        target_column: str = typer.Option(None, help="seq2seq: output text column (data.target_column); the "
                                          "input is --text-column."),
        prompt_column: str = typer.Option(None, help="causal-lm: prompt column (data.prompt_column)."),
        response_column: str = typer.Option(None, help="causal-lm: response column (data.response_column)."),
        messages_column: str = typer.Option(None, help="causal-lm: chat column, lists of {role, content} "
                                            "(data.messages_column)."),
        model: str = typer.Option(None, help="Model alias, folder or hub id (model.name)."),
        task: str = typer.Option(None, help="classification, regression, token-classification (alias ner), "
                                 "multilabel, pair-classification, seq2seq or causal-lm."),
        output: Path = typer.Option(None, help="Run directory (output.dir)."),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last checkpoint."),
        force: bool = typer.Option(False, "--force", help="With --resume: resume a finished run too (it redoes "
                                   "the evaluation and report)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run in the output folder."),
        register_as: str = typer.Option(None, "--register", help="Register the finished run as the next version "
                                        "of this model name (see `tuneforge registry`)."),
        registry_uri: str = typer.Option(None, "--registry-uri", envvar="TUNEFORGE_REGISTRY_URI",
                                         show_default=False, help="MLflow registry URI for --register."),
        nproc: int = typer.Option(1, "--nproc", min=1, help="Processes on this machine, started through torchrun "
                                  "(DDP by default; train.distributed picks fsdp or deepspeed)."),
        trust_run_code: bool = trust_option(),
    ) -> None:
        """Fine-tune a model from a recipe, or from flags alone."""
        if os.environ.get("RANK", "0") != "0":  # a torchrun worker other than rank 0: rank 0 does the talking
            console.quiet = True
        if recipe is None and resume and output is not None and data is None:
            built = recipe_for_resume(output, trust_run_code)
        else:
            built = build_recipe(recipe, sets, data=data, validation=validation, test=test, text_column=text_column,
                                 text_pair_column=text_pair_column, label_column=label_column, model=model,
                                 task=task, output=output, target_column=target_column,
                                 prompt_column=prompt_column, response_column=response_column,
                                 messages_column=messages_column)
        if overwrite:
            built.output.overwrite = True
        if "mlflow" in built.train.report_to and not built.output.tracking_uri:  # the registry's local store
            from tuneforge.cli.registry import tuneforge_home
            from tuneforge.lifecycle.registry import Registry

            built.output.tracking_uri = Registry.local(tuneforge_home()).uri
        if nproc > 1:
            from tuneforge.train.distributed import launch
            from tuneforge.train.rundir import default_run_dir

            code, directory = launch(built, nproc, default_run_dir(built), resume=resume, force=force)
            if code != 0:
                raise typer.Exit(code)
            run = Run.open(directory)
        else:
            run = _train(built, resume, force)
        if register_as and os.environ.get("RANK", "0") == "0":  # registered once, by rank 0
            from tuneforge.cli.registry import open_registry, show_registered

            show_registered(open_registry(registry_uri).register(run.directory, register_as))

    @app.command()
    def demo(
        output: Path = typer.Option(Path("runs/demo"), help="Run directory."),
        sets: list[str] = typer.Option(None, "--set", help="Override a recipe field."),
    ) -> None:
        """Fine-tune the bundled model on the bundled sentiment data (NusaX English, CC BY-SA 4.0)."""
        recipe = demo_recipe(output.resolve(), sets)
        _train(recipe, resume=False)
