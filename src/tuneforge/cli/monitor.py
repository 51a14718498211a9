"""`tuneforge monitor MODEL|RUN`: recent traffic against the training data; a verdict, a report, an exit code.

Exit codes, for cron and CI: 0 ok (or warnings; `--fail-on warning` makes those 3 too), 3 drift, 1 error."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import typer

from tuneforge.cli.common import trust_option
from tuneforge.cli.display import console
from tuneforge.errors import TuneforgeError

DURATION = re.compile(r"^(\d+(?:\.\d+)?)([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
FEEDBACK_VARIABLE = "TUNEFORGE_FEEDBACK_URL"


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """'7d', '24h', '30m', '2w' back from now, or an ISO date/time (UTC when it names no zone)."""
    if not text:
        return None
    match = DURATION.match(text.strip())
    if match:
        return (now or datetime.now(timezone.utc)) - timedelta(**{UNITS[match[2]]: float(match[1])})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TuneforgeError(f"--since '{text}' is neither a duration nor a date",
                             fix="write e.g. 7d, 24h, 30m, 2w or 2026-11-01T00:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def resolve_model(target: str, registry_uri: str | None) -> tuple[Path, str, str | None]:
    """(run directory, model name in the feedback store, version) for a run folder or NAME[@alias|@version]."""
    path = Path(target)
    if path.is_dir():
        return path, path.resolve().name, None  # the name `tuneforge serve RUN` logs under
    from tuneforge.cli.registry import open_registry
    from tuneforge.lifecycle.registry import parse_model_ref

    name, ref = parse_model_ref(target)
    info, folder = open_registry(registry_uri).run_dir(name, ref)
    return folder, name, str(info.version)


def register(app: typer.Typer) -> None:
    """Adds the verb to the application."""

    @app.command()
    def monitor(
        target: str = typer.Argument(..., metavar="MODEL|RUN", help="A run directory, or a registered model "
                                     "NAME, NAME@alias or NAME@version."),
        store: str = typer.Option(None, "--store", envvar=FEEDBACK_VARIABLE, show_default=False,
                                  help="Feedback store URL the server logs to (default: the SQLite store in "
                                       "$TUNEFORGE_HOME, ~/.tuneforge)."),
        since: str = typer.Option("7d", "--since", help="Traffic from this far back (7d, 24h) or since an ISO "
                                                        "date; '' for all of it."),
        limit: int = typer.Option(5000, "--limit", min=1, help="At most this many of the newest predictions."),
        report: Path = typer.Option(None, "--report", help="Write the report here: .json, or .html for a page."),
        embeddings: bool = typer.Option(True, "--embeddings/--no-embeddings",
                                        help="Also compare the model's sentence embeddings (loads the model)."),
        all_versions: bool = typer.Option(False, "--all-versions", help="With a registered model, use traffic of "
                                          "every version, not only the resolved one."),
        fail_on: str = typer.Option("drift", "--fail-on", help="drift (exit 3 on drift) or warning (exit 3 on "
                                    "warnings too)."),
        registry_uri: str = typer.Option(None, "--registry-uri", envvar="TUNEFORGE_REGISTRY_URI",
                                         show_default=False, help="MLflow registry URI for NAME@alias."),
        trust_run_code: bool = trust_option(),
    ) -> int:
        """Compare recent traffic with the training data (lengths, vocabulary, embeddings, predicted labels,
        confidence, accuracy on fed-back labels); print the verdict, write the report; exit 3 on drift."""
        from rich.markup import escape
        from rich.table import Table

        from tuneforge.cli.common import quiet_libraries
        from tuneforge.lifecycle import drift
        from tuneforge.lifecycle.feedback import FeedbackStore, default_store_url
        from tuneforge.lifecycle.monitor import (
            COLOURS,
            EXIT_CODES,
            build_report,
            reference_from_run,
            traffic_from_store,
            write_report,
        )
        from tuneforge.lifecycle.monitor import monitor as run_checks

        if fail_on not in ("drift", "warning"):
            raise TuneforgeError(f"--fail-on '{fail_on}' is not drift or warning", fix="use --fail-on drift|warning")
        quiet_libraries()
        moment = parse_since(since)
        run_dir, name, version = resolve_model(target, registry_uri)
        if store is None:
            from tuneforge.cli.registry import tuneforge_home

            store = default_store_url(tuneforge_home())
        reference = reference_from_run(run_dir)
        opened = FeedbackStore.open(store)
        try:
            traffic = traffic_from_store(opened, name, None if all_versions else version, moment, limit)
        finally:
            opened.close()
        if not traffic.texts:
            raise TuneforgeError(f"the feedback store {opened.url} has no predictions of model '{name}'"
                                 f"{' version ' + version if version and not all_versions else ''}"
                                 f"{' since ' + moment.isoformat(timespec='minutes') if moment else ''}",
                                 fix="check --store and the model name (a run is logged under its folder name), "
                                     "or widen --since")
        reference_embeddings = traffic_embeddings = None
        if embeddings and len(traffic.texts) >= drift.Thresholds().min_rows:
            from tuneforge.lifecycle.embeddings import sentence_embeddings
            from tuneforge.predict import Predictor

            predictor = Predictor.from_run(run_dir, "cpu", trust_run_code=trust_run_code)
            reference_embeddings = sentence_embeddings(predictor, reference.texts)
            traffic_embeddings = sentence_embeddings(predictor, traffic.texts)
        checks = run_checks(reference, traffic, reference_embeddings, traffic_embeddings)
        result = build_report(name, version, run_dir, moment, reference, traffic, checks)
        table = Table(title=f"{name}{' version ' + version if version else ''}: {len(traffic.texts)} recent "
                            f"predictions vs {len(reference.texts)} training texts")
        for column in ("check", "status", "finding"):
            table.add_column(column)
        for check in checks:
            table.add_row(check.name, f"[{COLOURS.get(check.status, 'white')}]{check.status}[/]", escape(check.reason))
        console.print(table)
        console.print(f"verdict: [bold {COLOURS[result.verdict]}]{result.verdict.upper()}[/]")
        if report is not None:
            write_report(result, report)
            console.print(f"report written to {report}", highlight=False, soft_wrap=True)
        code = EXIT_CODES[result.verdict]
        return 3 if fail_on == "warning" and result.verdict == drift.WARNING else code
