"""Monitoring a served model: its training data (the run directory) against recent traffic (the feedback store),
through the drift checks in `tuneforge.lifecycle.drift`, into one report with a verdict."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuneforge import artifacts
from tuneforge.data.validation import is_blank
from tuneforge.errors import TuneforgeError
from tuneforge.lifecycle import drift
from tuneforge.lifecycle.annotation import read_frame
from tuneforge.run import RunLayout, read_run_recipe

MAX_REFERENCE = 2000  # training rows compared (a seeded sample beyond this): plenty for every statistic here
EXIT_CODES = {drift.OK: 0, drift.WARNING: 0, drift.DRIFT: 3}


@dataclass
class Reference:
    """What the model was trained and tested on, read from its run directory."""

    texts: list[str]
    labels: list[str]  # the training labels, or the test predictions' labels
    label_source: str
    predicted: list[str]  # the model's predictions on the test split (empty when the run has none)
    confidences: list[float]
    accuracy: float | None
    classes: list[str]


@dataclass
class Traffic:
    """Recent served predictions and the labels people sent back for them."""

    texts: list[str]
    predicted: list[str]
    confidences: list[float]
    fed_back: list[tuple[str, str]] = field(default_factory=list)  # (served label, corrected label)


@dataclass
class MonitorReport:
    model: str
    version: str | None
    run_dir: str
    since: str | None
    verdict: str
    checks: list[drift.Check]
    reference_rows: int
    traffic_rows: int
    created: str

    def to_dict(self) -> dict[str, Any]:
        data = {key: value for key, value in self.__dict__.items() if key != "checks"}
        return {**data, "checks": [drift.as_dict(c) for c in self.checks]}


def reference_from_run(run_dir: str | Path, seed: int = 0) -> Reference:
    """Training texts and labels from the run's recipe data, test predictions and accuracy from its files."""
    layout = RunLayout(Path(run_dir))
    recipe = read_run_recipe(layout.root)
    if recipe.task != "classification":
        raise TuneforgeError(f"monitoring covers single-label classification runs; this is a {recipe.task} run",
                             fix="monitor a classification model")
    texts: list[str] = []
    labels: list[str] = []
    source = recipe.data.train
    if source and Path(source).exists():
        frame = read_frame(source)
        frame = frame[[not is_blank(t) for t in frame[recipe.data.text_column]]]
        texts = [str(t) for t in frame[recipe.data.text_column]]
        labels = [str(v) for v in frame[recipe.data.label_column]] if recipe.data.label_column in frame else []
    predicted: list[str] = []
    confidences: list[float] = []
    if layout.test_predictions.is_file():
        test = pd.read_csv(layout.test_predictions, keep_default_na=False)
        probabilities = test[[c for c in test.columns if c.startswith("prob_")]].to_numpy(dtype=float)
        predicted = [str(v) for v in test["label"]]
        confidences = probabilities.max(axis=1).tolist() if probabilities.size else []
        if not texts:
            texts = [str(t) for t in test["text"]]
    if not texts:
        raise TuneforgeError(f"run '{layout.root}' has neither its training file ({source}) nor test predictions",
                             fix="restore the training file at the path in the run's recipe.yaml")
    if len(texts) > MAX_REFERENCE:
        keep = sorted(np.random.default_rng(seed).choice(len(texts), MAX_REFERENCE, replace=False))
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep] if labels else []
    metrics = json.loads(layout.metrics.read_text(encoding="utf-8")) if layout.metrics.is_file() else {}
    accuracy = (metrics.get("test") or {}).get("accuracy")
    config = layout.model / "config.json"
    id2label = json.loads(config.read_text(encoding="utf-8")).get("id2label", {}) if config.is_file() else {}
    classes = [id2label[k] for k in sorted(id2label, key=int)]
    label_source = "test predictions" if predicted else "training labels"
    return Reference(texts, predicted or labels, label_source, predicted, confidences,
                     float(accuracy) if accuracy is not None else None, classes)


def traffic_from_store(store: Any, model: str, version: str | None = None, since: datetime | None = None,
                       limit: int | None = None) -> Traffic:
    """The model's logged predictions (newest `limit` when given) and the accepted feedback on them, through the
    feedback store's read API."""
    records = store.predictions(model=model, version=version, since=since, limit=limit, newest_first=True)
    by_id = {r.id: r for r in records}
    by_text = {r.text: r for r in reversed(records)}  # the newest prediction of a text wins
    fed_back = []
    for item in store.feedback(model=model, accepted=True, since=since):
        served = by_id.get(item.prediction_id) if item.prediction_id is not None else by_text.get(item.text)
        if served is None and item.prediction_id is not None:
            served = store.prediction(item.prediction_id)
            if served is not None and version is not None and served.version != version:
                served = None
        if served is not None and served.label is not None:
            fed_back.append((served.label, item.label))
    return Traffic([r.text for r in records], [str(r.label) for r in records],
                   [float(r.confidence) for r in records if r.confidence is not None], fed_back)


def monitor(reference: Reference, traffic: Traffic, reference_embeddings: np.ndarray | None = None,
            traffic_embeddings: np.ndarray | None = None, limits: drift.Thresholds = drift.Thresholds(),
            seed: int = 0) -> list[drift.Check]:
    """Every drift check that the data at hand allows, in a fixed order."""
    checks = [drift.length_drift(reference.texts, traffic.texts, limits),
              drift.vocabulary_drift(reference.texts, traffic.texts, limits, seed)]
    if reference_embeddings is not None and traffic_embeddings is not None:
        checks.append(drift.embedding_drift(reference_embeddings, traffic_embeddings, limits, seed))
    checks.append(drift.prediction_drift(reference.labels, traffic.predicted, reference.classes, limits,
                                         reference.label_source))
    if reference.confidences:
        checks.append(drift.confidence_drift(reference.confidences, traffic.confidences, limits))
    checks.append(drift.feedback_accuracy([p for p, _ in traffic.fed_back], [c for _, c in traffic.fed_back],
                                          reference.accuracy, limits))
    return checks


def build_report(model: str, version: str | None, run_dir: str | Path, since: datetime | None,
                 reference: Reference, traffic: Traffic, checks: Sequence[drift.Check]) -> MonitorReport:
    return MonitorReport(model, version, str(run_dir), since.isoformat() if since else None, drift.verdict(checks),
                         list(checks), len(reference.texts), len(traffic.texts),
                         datetime.now(timezone.utc).isoformat(timespec="seconds"))


def write_report(report: MonitorReport, path: str | Path) -> Path:
    """JSON for a `.json` path, else one self-contained HTML page."""
    target = Path(path)
    if target.suffix.lower() == ".json":
        artifacts.write_json(target, report.to_dict())
    else:
        artifacts.write_text(target, render_html(report))
    return target


COLOURS = {drift.OK: "#1a7f37", drift.WARNING: "#9a6700", drift.DRIFT: "#cf222e", drift.INSUFFICIENT: "#57606a"}


def render_html(report: MonitorReport) -> str:
    def cell(value: Any) -> str:
        return html.escape(str(value))

    rows = "".join(
        f"<tr><td>{cell(c.name)}</td><td style='color:{COLOURS.get(c.status, '#000')};font-weight:600'>"
        f"{cell(c.status)}</td><td>{cell(c.reason)}</td><td><code>{cell(json.dumps(c.values, default=float))}"
        "</code></td></tr>" for c in report.checks)
    colour = COLOURS[report.verdict]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Monitor: {cell(report.model)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #d0d7de;padding:.4rem;text-align:left;vertical-align:top}}code{{font-size:.8em;
word-break:break-all}}</style></head><body>
<h1>Monitor: {cell(report.model)}{' version ' + cell(report.version) if report.version else ''}</h1>
<p>Verdict: <strong style="color:{colour}">{cell(report.verdict.upper())}</strong></p>
<p>Training data: {report.reference_rows} texts from <code>{cell(report.run_dir)}</code>; recent traffic:
{report.traffic_rows} predictions{' since ' + cell(report.since) if report.since else ''}.
Written {cell(report.created)}.</p>
<table><tr><th>check</th><th>status</th><th>finding</th><th>figures</th></tr>{rows}</table>
</body></html>
"""
