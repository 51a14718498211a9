"""`tuneforge models`: the catalog of models to fine-tune, with what is usable offline now."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.table import Table

from tuneforge.cli.display import console
from tuneforge.errors import TuneforgeError

TASK_CODES = {"classification": "cls", "regression": "reg", "token-classification": "tok",
              "question-answering": "qa", "generation": "gen", "summarization": "sum", "translation": "mt",
              "seq2seq": "s2s", "causal-lm": "clm"}
WIDE = 150  # terminal columns from which the table shows every field
AVAILABILITY = {"bundled": "bundled", "local": "local", "run": "run", "hub-cache": "hub cache", "hub": "hub only"}


def _hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return home / "hub"


def search_dirs(directories: list[Path] | None) -> list[Path]:
    """Folders scanned for models and runs: --dir, else ./models and ./runs, plus $TUNEFORGE_MODELS_DIR."""
    search = list(directories or [Path("models"), Path("runs")])
    extra = os.environ.get("TUNEFORGE_MODELS_DIR")
    return [*search, Path(extra)] if extra else search


def catalog_entries(directories: list[Path] | None) -> list:
    from tuneforge.models.catalog import build_catalog

    return build_catalog(search_dirs(directories), _hub_cache())


def format_parameters(count: int | None) -> str:
    if not count:
        return "?"
    return f"{count / 1e9:.2f} B" if count >= 1e9 else f"{count / 1e6:.1f} M"


def _languages(codes: tuple[str, ...], wanted: str | None) -> str:
    if not codes:
        return "?"
    if len(codes) <= 3:
        return ", ".join(codes)
    return f"{len(codes)} incl. {wanted}" if wanted else f"{len(codes)}"


def _check_choice(name: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise TuneforgeError(f"unknown {name} '{value}'", fix=f"use one of {', '.join(allowed)}")


def catalog_table(entries: list, language: str | None, wide: bool) -> Table:
    """One row per model; a narrow terminal drops architecture, context and tasks (they are in --json)."""
    columns = ["name", "family", "parameters", "languages", "domain", "licence", "available"]
    if wide:
        columns[2:2] = ["architecture"]
        columns[4:4] = ["context"]
        columns.insert(-1, "tasks")
    table = Table(title="Models (tuneforge models --json for every field)")
    headers = {} if wide else {"parameters": "params", "languages": "langs"}
    for column in columns:
        table.add_column(headers.get(column, column), justify="right" if column in ("parameters", "context") else
                         "left", no_wrap=column == "parameters", overflow="fold", ratio=3 if column == "name" else 1)
    for entry in entries:
        available = AVAILABILITY[entry.availability]
        if entry.availability == "bundled":
            available = f"bundled ({entry.aliases[0] if entry.aliases else entry.name})"
        cells = {"name": entry.name, "family": entry.family or "?", "architecture": entry.architecture,
                 "parameters": format_parameters(entry.parameters), "context": str(entry.context_length or "?"),
                 "languages": _languages(entry.languages, language), "domain": entry.domain or "?",
                 "licence": entry.licence or "not stated",
                 "tasks": " ".join(TASK_CODES.get(task, task) for task in entry.tasks), "available": available}
        table.add_row(*(cells[column] for column in columns))
    return table


def register(app: typer.Typer) -> None:
    @app.command(name="models")
    def models_command(
        family: str = typer.Option(None, help="encoder, decoder or encoder-decoder."),
        domain: str = typer.Option(None, help="general, biomedical, legal, financial, code or multilingual."),
        language: str = typer.Option(None, help="ISO 639-1 code the model must list, e.g. sw, fr, en."),
        task: str = typer.Option(None, help="Only models suited to this task (classification, generation, ...)."),
        offline: bool = typer.Option(False, "--offline", help="Only models usable now without a network."),
        as_json: bool = typer.Option(False, "--json", help="Print the entries as JSON."),
        directories: list[Path] = typer.Option(None, "--dir", help="Also look for models and runs in this folder "
                                                                   "(default: ./models and ./runs)."),
    ) -> None:
        """List models to fine-tune: a curated catalog of hub models (sizes, languages, domain, licence) and the
        models usable offline now (bundled, local folders, finished runs, the hub cache)."""
        from tuneforge.models.catalog import DOMAINS, FAMILIES, TASKS, filter_catalog

        _check_choice("family", family, FAMILIES)
        _check_choice("domain", domain, DOMAINS)
        _check_choice("task", task, TASKS)
        entries = filter_catalog(catalog_entries(directories), family=family, domain=domain, language=language,
                                 task=task, offline=offline)
        if as_json:
            typer.echo(json.dumps([entry.to_json() for entry in entries], indent=2))
            return
        wide = console.width >= WIDE
        console.print(catalog_table(entries, language, wide))
        if not entries:
            console.print("no model matches these filters; drop one, or see `tuneforge models --json`")
        elif offline is False and not any(entry.offline for entry in entries):
            console.print("none of these is on this machine yet: they download from the hub on first use")
        if wide:
            console.print("tasks: cls classification, reg regression, tok token classification, qa question "
                          "answering, gen generation, sum summarisation, mt translation, s2s seq2seq, clm "
                          "causal-lm", style="dim")
