"""`tuneforge registry list|show|register|promote|rollback|diff`: versions of named models (MLflow registry)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from tuneforge.cli.display import console, fmt

HOME_VARIABLE = "TUNEFORGE_HOME"
REGISTRY_VARIABLE = "TUNEFORGE_REGISTRY_URI"
FEEDBACK_VARIABLE = "TUNEFORGE_FEEDBACK_URL"
REGISTRY_HELP = ("MLflow tracking/registry URI: sqlite:///path/mlflow.db or a server URL (default: a SQLite registry "
                 f"in ${HOME_VARIABLE}, ~/.tuneforge).")


def tuneforge_home() -> Path:
    """Where the embedded registry, its artifacts and the feedback database live by default."""
    return Path(os.environ.get(HOME_VARIABLE) or Path.home() / ".tuneforge").expanduser()


def registry_option() -> Any:
    return typer.Option(None, "--registry-uri", envvar=REGISTRY_VARIABLE, show_default=False, help=REGISTRY_HELP)


def open_registry(uri: str | None) -> Any:
    from tuneforge.lifecycle.registry import Registry

    return Registry.at(uri, tuneforge_home())


def show_registered(info: Any, verb: str = "registered") -> None:
    aliases = f" ({', '.join(info.aliases)})" if info.aliases else ""
    console.print(f"[green]{verb}[/green] {info.name} version {info.version}{aliases}", highlight=False)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Versions of named models: list, show, register, promote, rollback, diff.",
                        no_args_is_help=True)
    app.add_typer(group, name="registry")

    @group.command("list")
    def list_models(registry_uri: str = registry_option()) -> None:
        """Registered models with their latest version and aliases."""
        from rich.table import Table

        models = open_registry(registry_uri).models()
        if not models:
            console.print("no registered models yet: `tuneforge train RECIPE --register NAME`")
            return
        table = Table(title="Registered models")
        for column in ("model", "latest", "champion", "challenger", "other aliases"):
            table.add_column(column)
        for model in models:
            aliases = dict(model.aliases)
            champion, challenger = aliases.pop("champion", None), aliases.pop("challenger", None)
            table.add_row(model.name, fmt(model.latest_version), fmt(champion), fmt(challenger),
                          ", ".join(f"{alias}={version}" for alias, version in sorted(aliases.items())))
        console.print(table)

    @group.command()
    def show(
        model: str = typer.Argument(..., help="NAME (every version) or NAME@VERSION / NAME@ALIAS (one version)."),
        registry_uri: str = registry_option(),
    ) -> None:
        """The versions of a model, or one version in detail (tags, headline metrics)."""
        from rich.table import Table

        from tuneforge.lifecycle.registry import parse_model_ref

        registry = open_registry(registry_uri)
        name, ref = parse_model_ref(model)
        if "@" not in model:
            table = Table(title=f"{name}: versions")
            for column in ("version", "aliases", "created (UTC)", "parent", "base model", "run"):
                table.add_column(column)
            for info in registry.versions(name):
                table.add_row(str(info.version), ", ".join(info.aliases), info.created.strftime("%Y-%m-%d %H:%M"),
                              fmt(info.parent_version), fmt(info.base_model), info.run_id)
            console.print(table)
            return
        info = registry.version(name, ref)
        console.print(f"[bold]{info.name}[/bold] version {info.version}  aliases: {', '.join(info.aliases) or '-'}",
                      highlight=False)
        console.print(f"run {info.run_id}  created {info.created:%Y-%m-%d %H:%M} UTC", highlight=False)
        console.print(f"artifacts: {info.source}", soft_wrap=True, highlight=False)
        for key, value in sorted(info.tags.items()):
            console.print(f"  {key.removeprefix('tuneforge.')}: {value}", soft_wrap=True, highlight=False)
        headline = {key: value for key, value in info.metrics.items()
                    if key.count(".") == 1 and key.split(".")[0] in ("test", "validation")}
        if headline:
            table = Table(title="metrics")
            table.add_column("metric")
            table.add_column("value", justify="right")
            for key, value in sorted(headline.items()):
                table.add_row(key, fmt(value))
            console.print(table)

    @group.command("register")
    def register_run(
        run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="A finished run directory."),
        name: str = typer.Option(..., "--name", help="Model name; the run becomes its next version."),
        alias: str = typer.Option("auto", help="Alias to set: auto (champion for the first version, challenger "
                                               "after), champion, challenger, another name, or none."),
        parent: int = typer.Option(None, help="Version this run was fine-tuned from, if any."),
        registry_uri: str = registry_option(),
    ) -> None:
        """Log a run (params, metrics, artifacts, recipe, data fingerprint) and register it as a new version."""
        info = open_registry(registry_uri).register(run_dir, name, alias=None if alias == "none" else alias,
                                                    parent_version=parent)
        show_registered(info)

    @group.command()
    def promote(
        model: str = typer.Argument(..., help="NAME@VERSION (or NAME@ALIAS) to promote."),
        version: str = typer.Argument(None, help="Version, when MODEL is a bare name."),
        alias: str = typer.Option("champion", help="Alias to point at the version."),
        registry_uri: str = registry_option(),
    ) -> None:
        """Point an alias (champion by default) at a version; running servers pick it up without a restart."""
        from tuneforge.errors import TuneforgeError
        from tuneforge.lifecycle.registry import parse_model_ref

        name, ref = parse_model_ref(model)
        if "@" not in model:
            if version is None:
                raise TuneforgeError("promote needs a version", fix=f"tuneforge registry promote {name}@3")
            ref = version
        show_registered(open_registry(registry_uri).promote(name, ref, alias=alias), verb="promoted")

    @group.command()
    def rollback(
        name: str = typer.Argument(..., help="Model name."),
        registry_uri: str = registry_option(),
    ) -> None:
        """Make the previous champion the champion again."""
        show_registered(open_registry(registry_uri).rollback(name), verb="rolled back to")

    @group.command()
    def diff(
        name: str = typer.Argument(..., help="Model name."),
        a: str = typer.Argument(..., help="First version (number or alias)."),
        b: str = typer.Argument(..., help="Second version (number or alias)."),
        registry_uri: str = registry_option(),
    ) -> None:
        """Recipe fields (flattened keys) and metrics that differ between two versions."""
        from rich.table import Table

        result = open_registry(registry_uri).diff(name, a, b)
        if not result.recipe:
            console.print(f"recipes of versions {result.a} and {result.b} are identical")
        else:
            table = Table(title=f"recipe: v{result.a} vs v{result.b}")
            for column in ("field", f"v{result.a}", f"v{result.b}"):
                table.add_column(column, overflow="fold")
            for key, first, second in result.recipe:
                table.add_row(key, fmt(first), fmt(second))
            console.print(table)
        if not result.metrics:
            console.print("metrics are identical")
            return
        table = Table(title=f"metrics: v{result.a} vs v{result.b}")
        for column in ("metric", f"v{result.a}", f"v{result.b}", "change"):
            table.add_column(column, justify="left" if column == "metric" else "right")
        for key, first, second in result.metrics:
            change = second - first if first is not None and second is not None else None
            table.add_row(key, fmt(first), fmt(second), "-" if change is None else f"{change:+.4f}")
        console.print(table)
