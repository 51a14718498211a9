"""`tuneforge fairness`: audit a trained classifier for group disparities and identity-term sensitivity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from tuneforge.cli.common import quiet_libraries, trust_option
from tuneforge.cli.display import console, errors, fmt


def _fmt(value: Any) -> str:
    return fmt(value, digits=3)


def _clip(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def group_table(name: str, result: dict[str, Any]) -> Table:
    source = "sensitive column" if result["source"] == "column" else "inferred from identity terms"
    table = Table(title=f"Groups: {name} ({source}; positive label '{result['positive_label']}')")
    table.add_column("group")
    columns = ("count", "accuracy", "f1_macro", "selection_rate", "false_positive_rate", "false_negative_rate")
    headers = ("count", "accuracy", "F1 macro", "selection rate", "FPR", "FNR")
    for header in headers:
        table.add_column(header, justify="right")
    for group, row in result["groups"].items():
        table.add_row(escape(group), *(_fmt(row[c]) for c in columns))
    if result["overall"]:
        table.add_row("[bold]all grouped[/bold]", *(_fmt(result["overall"][c]) for c in columns))
    return table


def disparity_table(attributes: dict[str, dict[str, Any]], thresholds: dict[str, Any]) -> Table:
    table = Table(title="Disparities between groups")
    for column in ("attribute", "groups compared", "DP difference", "DP ratio", "EO difference", "EO ratio"):
        table.add_column(column, justify="left" if column in ("attribute", "groups compared") else "right")

    def marked(value: float | None, limit: float | None) -> str:
        text = _fmt(value)
        return f"[red]{text}[/red]" if value is not None and limit is not None and value > limit else text

    for name, result in attributes.items():
        table.add_row(name, ", ".join(result["compared_groups"]) or "-",
                      marked(result["demographic_parity_difference"], thresholds["max_demographic_parity_difference"]),
                      _fmt(result["demographic_parity_ratio"]),
                      marked(result["equalized_odds_difference"], thresholds["max_equalized_odds_difference"]),
                      _fmt(result["equalized_odds_ratio"]))
    return table


def counterfactual_table(probe: dict[str, Any], limit: float | None) -> Table:
    table = Table(title=f"Counterfactual swaps (change in P('{probe['positive_label']}'))")
    for column in ("category", "texts", "pairs", "flips", "flip rate", "mean |change|", "max |change|"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for category, result in probe["categories"].items():
        rate = _fmt(result["flip_rate"])
        if result["flip_rate"] is not None and limit is not None and result["flip_rate"] > limit:
            rate = f"[red]{rate}[/red]"
        table.add_row(category, str(result["texts_probed"]), str(result["pairs"]), str(result["flips"]), rate,
                      _fmt(result["mean_abs_change"]), _fmt(result["max_abs_change"]))
    return table


def worst_table(probe: dict[str, Any]) -> Table | None:
    rows = [(category, row) for category, result in probe["categories"].items() for row in result["worst"]]
    if not rows:
        return None
    table = Table(title="Largest counterfactual changes")
    for column in ("category", "original", "variant", "label", f"P('{probe['positive_label']}')"):
        table.add_column(column)
    for category, row in rows:
        table.add_row(category, _clip(row["original"]), _clip(row["variant"]),
                      f"{row['original_label']} → {row['variant_label']}",
                      f"{row['original_probability']:.3f} → {row['variant_probability']:.3f}")
    return table


def comparison_table(rows: list[dict[str, Any]], names: list[str]) -> Table:
    table = Table(title="Side by side (same data, same settings)")
    table.add_column("figure")
    table.add_column("scope")
    for name in names:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(row["figure"].replace("_", " "), row["scope"], *(_fmt(row[name]) for name in names))
    return table


def show_report(report: dict[str, Any]) -> None:
    thresholds = report["thresholds"]
    if not report["attributes"] and not report.get("counterfactual"):
        console.print("[yellow]nothing to audit[/yellow]: no sensitive column, no identity category and no "
                      "counterfactual probe")
    for name, result in report["attributes"].items():
        if result.get("note"):
            console.print(f"[yellow]{escape(name)}[/yellow]: {escape(result['note'])}", highlight=False)
        if not result["groups"]:
            console.print(f"[yellow]{escape(name)}[/yellow]: no row has a group; nothing to compare", highlight=False)
            continue
        console.print(group_table(name, result))
    if any(result["groups"] for result in report["attributes"].values()):
        console.print(disparity_table(report["attributes"], thresholds))
    probe = report.get("counterfactual")
    if probe:
        console.print(counterfactual_table(probe, thresholds["max_counterfactual_flip_rate"]))
        worst = worst_table(probe)
        if worst is not None:
            console.print(worst)
    show_verdict(report)


def show_verdict(report: dict[str, Any]) -> None:
    """The closing lines: passed, breached (listed after the tables by the caller), or not assessable; then what
    could not be assessed, and why."""
    reasons = report.get("not_assessable") or []
    if report.get("passed") is True:
        console.print("[green]fairness check passed[/green]: no threshold breached", highlight=False)
    elif report.get("passed") is None:
        console.print("[yellow]fairness not assessable[/yellow] on this data:", highlight=False)
    if reasons and report.get("passed") is not None:
        console.print("[yellow]not assessed[/yellow]:", highlight=False)
    for reason in reasons:
        console.print(f"  - {escape(reason)}", highlight=False)


def register(app: typer.Typer) -> None:
    """Adds the verb to the application."""

    @app.command()
    def fairness(
        run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="A run directory."),
        data: Path = typer.Option(..., "--data", help="Labelled file with the run's text and label columns."),
        sensitive_column: list[str] = typer.Option(
            None, "--sensitive-column", help="Column naming each row's group; repeatable "
                                             "(default: fairness.sensitive_columns; none: infer from identity terms)."),
        category: list[str] = typer.Option(
            None, "--category", help="Identity-term category to infer groups and swap terms for; repeatable "
                                     "(default: fairness.identity_categories)."),
        terms_file: Path = typer.Option(None, "--terms-file", help="YAML extending the identity-term lists "
                                                                   "(default: fairness.identity_terms_file)."),
        positive_label: str = typer.Option(None, help="Class compared across groups (default: the minority class)."),
        max_dp_difference: float = typer.Option(None, "--max-dp-difference", min=0,
                                                help="Fail when a demographic-parity difference exceeds this."),
        max_eo_difference: float = typer.Option(None, "--max-eo-difference", min=0,
                                                help="Fail when an equalised-odds difference exceeds this."),
        max_flip_rate: float = typer.Option(None, "--max-flip-rate", min=0, max=1,
                                            help="Fail when a counterfactual flip rate exceeds this."),
        counterfactual: bool = typer.Option(None, "--counterfactual/--no-counterfactual",
                                            help="Run the identity-swap probe (default: fairness.counterfactual)."),
        limit: int = typer.Option(None, min=1, help="Probe at most this many texts per category."),
        compare: list[Path] = typer.Option(
            None, "--compare", exists=True, file_okay=False,
            help="Another run (e.g. the one trained before a mitigation) audited on the same data with the same "
                 "settings and shown side by side; repeatable. Only RUN_DIR is checked against thresholds."),
        min_group_size: int = typer.Option(5, min=1, help="Leave out groups with fewer rows (noted in the report): a "
                                                          "few predictions are no measurement."),
        output: Path = typer.Option(None, help="Folder for fairness.json (default: RUN_DIR)."),
        batch_size: int = typer.Option(64, min=1, help="Texts per batch."),
        device: str = typer.Option("auto", help="auto, cpu or cuda."),
        trust_run_code: bool = trust_option(),
    ) -> None:
        """Group metrics, disparities and counterfactual flips of a classifier; exits 1 when a threshold is breached.

        Thresholds and groups default to the run recipe's `fairness:` section; flags override them.
        """
        quiet_libraries()
        from tuneforge import artifacts
        from tuneforge.evaluate.fairness_audit import audit, compare_audits, read_audit_data
        from tuneforge.predict import Predictor
        from tuneforge.recipe import FairnessSpec

        predictor = Predictor.from_run(run_dir, device, trust_run_code=trust_run_code)
        flags = {
            "sensitive_columns": sensitive_column or None,
            "identity_categories": category or None,
            "identity_terms_file": str(terms_file) if terms_file is not None else None,
            "positive_label": positive_label,
            "counterfactual": counterfactual,
            "max_demographic_parity_difference": max_dp_difference,
            "max_equalized_odds_difference": max_eo_difference,
            "max_counterfactual_flip_rate": max_flip_rate,
        }
        spec = FairnessSpec.model_validate({**predictor.recipe.fairness.model_dump(),
                                            **{key: value for key, value in flags.items() if value is not None}})
        audit_data = read_audit_data(predictor, data, spec.sensitive_columns)
        report = audit(predictor, audit_data, spec, counterfactual_limit=limit, batch_size=batch_size,
                       min_group_size=min_group_size)
        report = {"run": str(run_dir.resolve()), **report}
        target = (output if output is not None else run_dir) / "fairness.json"
        artifacts.write_json(target, report)
        show_report(report)
        console.print(f"fairness report written to {target}")
        if compare:
            named = {run_dir.name: report}
            for other in compare:
                other_predictor = Predictor.from_run(other, device, trust_run_code=trust_run_code)
                other_data = read_audit_data(other_predictor, data, spec.sensitive_columns)
                other_spec = spec.model_copy(update={"positive_label": report["positive_label"]})
                name = other.name if other.name not in named else str(other)
                named[name] = {"run": str(other.resolve()), **audit(other_predictor, other_data, other_spec,
                                                                     counterfactual_limit=limit,
                                                                     batch_size=batch_size,
                                                                     min_group_size=min_group_size)}
            rows = compare_audits(named)
            console.print(comparison_table(rows, list(named)))
            compared = target.with_name("fairness_comparison.json")
            artifacts.write_json(compared, {"runs": list(named), "rows": rows, "reports": named})
            console.print(f"comparison written to {compared}")
        if report["breaches"]:
            errors.print(f"[red bold]fairness check failed:[/red bold] {len(report['breaches'])} threshold(s) "
                         "breached", highlight=False)
            for breach in report["breaches"]:
                errors.print(f"  - {breach}", highlight=False)
            raise typer.Exit(1)
