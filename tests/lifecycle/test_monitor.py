"""tuneforge monitor: a run's training data against traffic logged in a feedback store; verdict, report, exit code."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import make_rows
from tuneforge.cli.main import main
from tuneforge.cli.monitor import parse_since
from tuneforge.errors import TuneforgeError
from tuneforge.lifecycle.feedback import FeedbackStore


def _log(run, url, texts, wrong_feedback=0):
    import tuneforge

    predictor = tuneforge.load(run, device="cpu")
    store = FeedbackStore.open(url)
    ids = store.log_predictions(run.resolve().name, None, texts, predictor.predict(texts))
    for index, prediction_id in enumerate(ids[:40]):
        served = store.prediction(prediction_id).label
        other = next(label for label in predictor.labels if label != served)
        store.add_feedback(run.resolve().name, other if index < wrong_feedback else served, prediction_id)
    store.close()


def test_monitor_same_distribution_is_ok(served_runs, tmp_path, capsys):
    run = served_runs["classification"]
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    _log(run, url, [r["text"] for r in make_rows(90, seed=81)])
    report = tmp_path / "monitor.json"
    assert main(["monitor", str(run), "--store", url, "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "verdict: OK" in out
    data = json.loads(report.read_text(encoding="utf-8"))
    statuses = {check["name"]: check["status"] for check in data["checks"]}
    assert data["verdict"] == "ok" and data["traffic_rows"] == 90
    assert set(statuses) == {"length", "vocabulary", "embedding", "prediction", "confidence", "feedback_accuracy"}
    assert statuses["feedback_accuracy"] == "ok"


def test_monitor_shifted_traffic_is_drift_with_exit_code_3(served_runs, tmp_path, capsys):
    run = served_runs["classification"]
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    rng = random.Random(5)
    shifted = [" ".join("".join(rng.choice("qxzjkvwy") for _ in range(5)) for _ in range(25)) for _ in range(60)]
    _log(run, url, shifted, wrong_feedback=30)
    report = tmp_path / "monitor.html"
    assert main(["monitor", str(run), "--store", url, "--report", str(report), "--no-embeddings"]) == 3
    assert "verdict: DRIFT" in capsys.readouterr().out
    page = report.read_text(encoding="utf-8")
    assert "DRIFT" in page and "length" in page and "out-of-vocabulary" in page


def test_monitor_without_traffic_is_a_clear_error(served_runs, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert main(["monitor", str(served_runs["classification"]), "--store", url]) == 1
    err = capsys.readouterr().err
    assert "no predictions of model" in err and "--since" in err


def test_parse_since():
    now = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert parse_since("", now) is None
    with pytest.raises(TuneforgeError, match="neither a duration nor a date"):
        parse_since("last week", now)


def test_monitor_a_registered_model_reads_its_versions_traffic_from_the_default_store(
        served_runs, make_registry, _tuneforge_home, capsys):
    import tuneforge
    from tuneforge.lifecycle.feedback import default_store_url

    run = served_runs["classification"]
    make_registry(_tuneforge_home).register(run, "sentiment")  # version 1, champion
    predictor = tuneforge.load(run, device="cpu")
    same = [r["text"] for r in make_rows(60, seed=82)]
    rng = random.Random(6)
    shifted = [" ".join("".join(rng.choice("qxzjkvwy") for _ in range(5)) for _ in range(25)) for _ in range(60)]
    store = FeedbackStore.open(default_store_url(_tuneforge_home))
    store.log_predictions("sentiment", "1", same, predictor.predict(same))
    store.log_predictions("sentiment", "2", shifted, predictor.predict(shifted))
    store.close()
    assert main(["monitor", "sentiment@champion", "--no-embeddings"]) == 0
    assert "sentiment version 1: 60 recent predictions" in capsys.readouterr().out.replace("\n", " ")
    assert main(["monitor", "sentiment", "--all-versions", "--no-embeddings"]) == 3
