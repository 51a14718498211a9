"""report.html from real tiny runs: self-contained, complete, and robust to optional inputs of any shape."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from tests.report.samples import add_extras, add_malformed
from tuneforge.report.html import build_report

IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
URL_ATTRIBUTE = re.compile(r"\b(src|href|action|poster|srcset|background)\s*=\s*[\"']?([^\"'\s>]*)", re.IGNORECASE)


def assert_self_contained(page: str) -> None:
    lowered = page.lower()
    assert 'src="http' not in lowered and "src='http" not in lowered
    assert "<script" not in lowered and "<link" not in lowered and "<iframe" not in lowered
    assert "url(" not in lowered and "@import" not in lowered
    images = IMG.findall(page)
    assert images, "the report should embed figures"
    for tag in images:
        assert 'src="data:image/png;base64,' in tag, tag[:120]
    for name, value in URL_ATTRIBUTE.findall(page):
        assert value.startswith(("data:image/png;base64,", "#")), f"{name}={value[:80]}"


def section(page: str, section_id: str) -> str:
    match = re.search(rf'<section[^>]*id="{section_id}".*?</section>', page, re.DOTALL)
    assert match, f"no section {section_id}"
    return match.group(0)


def test_classification_report(classification_run: Path) -> None:
    path = build_report(classification_run)
    assert path == classification_run / "report.html"
    assert not list(classification_run.glob(".*.tmp")), "writes must be atomic (no temporary files left)"
    page = path.read_text(encoding="utf-8")
    assert_self_contained(page)
    metrics = json.loads((classification_run / "metrics.json").read_text())

    header = page.split("</header>")[0]
    assert classification_run.name in header and "classification" in header and metrics["model"] in header
    data = section(page, "data")
    for role, rows in json.loads((classification_run / "data.json").read_text())["rows"].items():
        assert f"{rows}" in data and role.capitalize() in data
    assert "Class balance" in data and data.count("data:image/png;base64,") == 1  # the class-balance chart
    training = section(page, "training")
    assert str(metrics["training"]["global_steps"]) in training and "data:image/png;base64," in training
    assert "fp32" in training and "cpu" in training

    table = section(page, "metrics")
    for role in ("validation", "test"):
        for name in ("accuracy", "f1_macro", "f1_weighted"):
            assert f"{metrics[role][name]:.4f}" in table, (role, name)
    for label, row in metrics["test"]["per_class"].items():
        assert re.search(rf"<td class=\"strong\">{label}</td><td class=\"num \">{row['precision']:.4f}</td>", table)
        assert f">{row['support']}</td>" in table
    assert "Confusion matrix" in table and "data:image/png;base64," in table

    # Training ended with a fairness audit of the test split and explanations of its first rows.
    audit = json.loads((classification_run / "fairness.json").read_text())
    fairness = section(page, "fairness")
    assert "Not computed" not in fairness and "Gender" in fairness
    assert all(group in fairness for group in audit["attributes"]["gender"]["groups"])
    assert "Counterfactual probe" in fairness
    explanations = section(page, "explanations")
    explained = json.loads((classification_run / "explanations" / "explanations.json").read_text())
    assert len(explained["texts"]) == 3 and "Integrated Gradients" in explanations
    assert "Most influential tokens per class" in explanations
    assert explanations.count("data:image/png;base64,") == 6  # per text: heads grid and rollout

    card = section(page, "model-card")
    for heading in ("Intended use", "Training data", "Evaluation data and results", "Limitations and risks",
                    "Base model and licence"):
        assert heading in card
    assert "Fairness findings" in card and "see the base model's card" in card
    markdown = (classification_run / "model_card.md").read_text(encoding="utf-8")
    assert markdown.startswith(f"# Model card: {classification_run.name}")
    assert f"{metrics['test']['accuracy']:.4f}" in markdown and "## Limitations and risks" in markdown


def test_hints_for_every_missing_input(classification_run: Path) -> None:
    """A run written before calibration and error analysis existed: each section says how to get it."""
    metrics = json.loads((classification_run / "metrics.json").read_text())
    for role in ("validation", "test"):
        for key in ("calibration", "error_analysis", "plugins", "ece"):
            metrics[role].pop(key, None)
    (classification_run / "metrics.json").write_text(json.dumps(metrics))
    for name in ("calibration.json", "reliability_diagram.png", "fairness.json"):
        (classification_run / name).unlink(missing_ok=True)
    shutil.rmtree(classification_run / "explanations")
    page = build_report(classification_run).read_text(encoding="utf-8")
    for section_id in ("calibration", "errors", "fairness", "explanations"):
        assert "Not computed" in section(page, section_id), section_id
    for missing, command in (("fairness", "tuneforge fairness"), ("explanations", "tuneforge explain")):
        assert command in section(page, missing) and "--data FILE" in section(page, missing)
    assert "calibration.temperature_scaling: true" in section(page, "calibration")
    assert 'id="plugins"' not in page  # no plugin configured: no section at all
    assert "Calibration was not measured" in section(page, "model-card")


def test_regression_report(regression_run: Path) -> None:
    page = build_report(regression_run).read_text(encoding="utf-8")
    assert_self_contained(page)
    metrics = json.loads((regression_run / "metrics.json").read_text())
    table = section(page, "metrics")
    for name in ("rmse", "mae", "mse"):
        assert f"{metrics['test'][name]:.4f}" in table
    assert "Per class" not in table and "Predicted against true values" in table  # the scatter plot
    assert "Not applicable" in section(page, "calibration") and "Not applicable" in section(page, "errors")
    assert "Class balance" not in section(page, "data")
    assert "Predicts a number (<code>score</code>)" in section(page, "model-card")
    assert (regression_run / "model_card.md").is_file()


def test_optional_inputs_render(classification_run: Path) -> None:
    add_extras(classification_run)
    (classification_run / "evaluations").mkdir()
    (classification_run / "evaluations" / "holdout.json").write_text(
        json.dumps({"data": "/data/holdout.csv", "accuracy": 0.9123, "examples": 12, "calibration": None}))
    page = build_report(classification_run).read_text(encoding="utf-8")
    assert_self_contained(page)
    assert "Not computed" not in page

    calibration = section(page, "calibration")
    assert "0.1834" in calibration and "0.0412" in calibration and "1.73" in calibration
    assert "−78% vs. before" in calibration or "-78% vs. before" in calibration
    assert "Reliability" in calibration and calibration.count("data:image/png;base64,") == 1
    assert "0.8500" in calibration  # a reliability-table row

    errors = section(page, "errors")
    assert "Confused pairs" in errors and "Confident mistakes" in errors and "Length buckets" in errors
    assert "the food was rude and dirty &lt;b&gt;really&lt;/b&gt;" in errors  # texts are escaped
    assert "0.4167" in errors
    plugins = section(page, "plugins")
    assert "toxicity_check" in plugins and "0.0321" in plugins and "0.1234" in plugins

    fairness = section(page, "fairness")
    assert "Limit exceeded" in fairness and "0.2632" in fairness and "DP difference" in fairness
    assert "female" in fairness and "0.7368" in fairness and "No group found in the data for: Religion" in fairness
    assert "she was rude to the waiter" in fairness and "0.2500" in fairness  # counterfactual flip rate

    explanations = section(page, "explanations")
    assert "Integrated Gradients" in explanations and "LIME" in explanations and "aw</span>" in explanations
    assert "ful</span>" in explanations and "predicted <b>negative (0.87)</b>" in explanations
    assert explanations.count("data:image/png;base64,") == 2  # rollout (per text) and heads (gallery)
    assert "fallback fragment" not in explanations  # rebuilt from the JSON, not pasted

    assert "evaluate: holdout" in section(page, "metrics") and "0.9123" in section(page, "metrics")

    card = section(page, "model-card")
    assert "Fairness findings above the recipe" in card and "expected calibration error 0.0412" in card
    markdown = (classification_run / "model_card.md").read_text(encoding="utf-8")
    assert "exceeds 0.1" in markdown


def test_malformed_inputs_never_crash(classification_run: Path) -> None:
    add_malformed(classification_run)
    png = classification_run / "extra_plot.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)  # an unknown (tiny) PNG: shown under Other figures
    page = build_report(classification_run).read_text(encoding="utf-8")
    assert_self_contained(page)
    assert "calibration.json could not be read" in page
    assert "reliability_diagram.png is not a PNG image" in page
    assert "unexpected shape" in section(page, "fairness") and "stray string" in section(page, "fairness")
    assert "temperature scaling failed" in section(page, "calibration")
    assert "kept text" not in page  # the explanations JSON wins over the HTML fragment
    assert "scores per class" in section(page, "explanations")
    assert "one warning, not a list" in section(page, "data")
    assert "Other metric details" in section(page, "metrics")
    assert "extra_plot.png" in section(page, "figures")
    assert "could not be drawn" not in page, "each section should cope without the last-resort guard"


def test_broken_metrics_file_still_gives_a_report(classification_run: Path) -> None:
    (classification_run / "metrics.json").write_text("[1, 2")
    (classification_run / "data.json").write_text('"just a string"')
    page = build_report(classification_run).read_text(encoding="utf-8")
    assert "metrics.json could not be read" in page and "data.json does not hold a JSON object" in page
    assert "Model card" in page
