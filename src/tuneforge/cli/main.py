"""`tuneforge` entry point: registers the verbs and turns tuneforge errors into messages and exit codes."""

from __future__ import annotations

import sys

import typer

from tuneforge import __version__
from tuneforge.cli import annotate as annotate_verb
from tuneforge.cli import augment as augment_verb
from tuneforge.cli import auto as auto_verb
from tuneforge.cli import chat as chat_verb
from tuneforge.cli import clean as clean_verb
from tuneforge.cli import ensemble as ensemble_verb
from tuneforge.cli import explain, export, fairness, inference, models, probes, recipes, report, serve, training
from tuneforge.cli import languages as language_verbs
from tuneforge.cli import monitor as monitor_verb
from tuneforge.cli import refresh as refresh_verb
from tuneforge.cli import registry as registry_verbs
from tuneforge.cli import search as search_verb
from tuneforge.cli import selection as selection_verbs
from tuneforge.cli.display import errors
from tuneforge.errors import DataError, RecipeError, TuneforgeError

app = typer.Typer(
    name="tuneforge",
    help="Fine-tune, evaluate and use pretrained language models from one recipe.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (training, inference, recipes, models, fairness, explain, probes, report, export, serve, augment_verb,
               selection_verbs, annotate_verb, monitor_verb, ensemble_verb,
               registry_verbs, refresh_verb, clean_verb, language_verbs, search_verb, auto_verb, chat_verb):
    module.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tuneforge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Fine-tune, evaluate and use pretrained language models from one recipe."""


def report(error: TuneforgeError) -> int:
    if isinstance(error, (RecipeError, DataError)):
        from tuneforge.cli.display import show_problems

        kind = "recipe" if isinstance(error, RecipeError) else "data"
        errors.print(f"[red bold]error:[/red bold] the {kind} has {len(error.problems)} problem(s)")
        show_problems(error.problems)
    else:
        errors.print(f"[red bold]error:[/red bold] {error.message}", highlight=False)
        if error.fix:
            errors.print(f"  fix: {error.fix}", highlight=False)
    return error.exit_code


def main(argv: list[str] | None = None) -> int:
    try:
        # Outside standalone mode click returns a command's exit code instead of calling sys.exit.
        result = app(args=argv, standalone_mode=False)
        if isinstance(result, int):
            return result
    except TuneforgeError as error:
        return report(error)
    except KeyboardInterrupt:
        errors.print("[yellow]interrupted[/yellow]")
        return 130
    except typer.Exit as done:
        return done.exit_code
    except Exception as error:  # click usage errors carry their own exit code and message
        import click

        if isinstance(error, click.ClickException):
            error.show()
            return error.exit_code
        if isinstance(error, click.exceptions.Abort):
            return 130
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
