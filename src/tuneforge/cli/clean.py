"""`tuneforge clean`: clean one data file with the recipe's clean: steps and write the rows kept and the report."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.common import build_recipe, quiet_libraries
from tuneforge.cli.display import console
from tuneforge.errors import DataError, TuneforgeError

FLAGS_COLUMN = "clean_flags"  # "step: reason" for every flag on a kept row, joined by " | "


def register(app: typer.Typer) -> None:
    @app.command()
    def clean(
        recipe: Path = typer.Argument(None, exists=True, dir_okay=False,
                                      help="Recipe YAML: cleans its training file with its clean: section."),
        data: Path = typer.Option(None, "--data", help="The file to clean (data.train)."),
        text_column: str = typer.Option(None, help="Text column (data.text_column)."),
        label_column: str = typer.Option(None, help="Label column (data.label_column); without one, the steps "
                                                    "that need labels (conflicting_labels, mislabelled) are skipped."),
        task: str = typer.Option(None, help="classification (default), multilabel or regression."),
        sets: list[str] = typer.Option(None, "--set", help="Choose a step's action: --set clean.toxicity=drop, "
                                                           "--set clean.mislabelled=off, --set clean.pii=flag"),
        output: Path = typer.Option(None, "--output", help="CSV of the rows kept (masked where masked), with a "
                                                           f"'{FLAGS_COLUMN}' column naming each row's flags."),
        report: Path = typer.Option(None, "--report", help="JSON data report: every row dropped, flagged or "
                                                           "masked, with the step and the reason."),
        show: int = typer.Option(10, "--show", min=0, help="Rows of the report to print."),
    ) -> None:
        """Find duplicates, near duplicates, garbage, length outliers, label errors, personal data and profanity."""
        if recipe is None and data is None:
            raise TuneforgeError("nothing to clean", fix="pass --data FILE (or a recipe with data.train)")
        quiet_libraries()
        built = build_recipe(recipe, ["clean.enabled=true"] + list(sets or []), data=data, text_column=text_column,
                             label_column=label_column, task=task)
        spec = built.data
        if not spec.train:
            raise TuneforgeError("the recipe names no training file", fix="pass --data FILE")

        from tuneforge.data import validation as checks
        from tuneforge.data.cleaning import clean_dataset, describe
        from tuneforge.data.loading import read_table

        dataset = read_table(spec.train, "train", spec.cache_dir)
        required = [spec.text_column] + ([spec.label_column] if label_column else []) + \
            ([spec.text_pair_column] if spec.text_pair_column else [])
        problems = checks.check_columns(spec.train, dataset.column_names, required)
        if problems:
            raise DataError(problems)
        has_labels = spec.label_column in dataset.column_names
        if not has_labels:
            console.print(f"no '{spec.label_column}' column: conflicting_labels and mislabelled are skipped "
                          "(name the label column with --label-column)", highlight=False, soft_wrap=True)
        result, found = clean_dataset(dataset, built.clean, spec.text_column, spec.label_column if has_labels else None,
                                      pair_column=spec.text_pair_column, task=built.task, path=spec.train)
        _show(found, show)
        console.print(f"{found.rows_before} rows, {found.rows_after} kept. {describe(found)}"
                      if found.findings else f"{found.rows_before} rows, nothing to clean",
                      highlight=False, soft_wrap=True)
        from tuneforge import artifacts

        if report is not None:
            artifacts.write_json(report, {"source": spec.train, **found.to_json()})
            console.print(f"report written to {report}", highlight=False, soft_wrap=True)
        if output is not None:
            frame = result.to_pandas()
            flags: dict[int, list[str]] = {}
            for finding in found.findings:
                if finding.action == "flag":
                    flags.setdefault(finding.row, []).append(f"{finding.step}: {finding.reason}")
            frame[FLAGS_COLUMN] = [" | ".join(flags.get(row, [])) for row in _kept_rows(found)]
            artifacts.write_with(output, lambda path: frame.to_csv(path, index=False))
            console.print(f"cleaned rows written to {output}", highlight=False, soft_wrap=True)


def _kept_rows(found) -> list[int]:  # noqa: ANN001 - a CleaningReport
    dropped = {f.row for f in found.findings if f.action == "drop"}
    return [row for row in range(found.rows_before) if row not in dropped]


def _show(found, limit: int) -> None:  # noqa: ANN001 - a CleaningReport
    if not found.findings or not limit:
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"Cleaning ({min(limit, len(found.findings))} of {len(found.findings)} findings)")
    for column in ("where", "step", "action", "reason", "text"):
        table.add_column(column, overflow="fold")
    for finding in found.findings[:limit]:
        table.add_row(Text(finding.where), Text(finding.step), Text(finding.action), Text(finding.reason),
                      Text(finding.text))
    console.print(table)
    for note in found.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
