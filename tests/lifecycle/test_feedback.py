"""The feedback store: rows round-trip, corrections resolve and de-duplicate, SQLite is durable, errors are clear."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tuneforge.errors import TuneforgeError
from tuneforge.lifecycle.feedback import FeedbackStore, default_store_url

ROWS = [{"label": "positive", "score": 0.9, "probabilities": {"negative": 0.1, "positive": 0.9}},
        {"label": "negative", "score": 0.6, "probabilities": {"negative": 0.6, "positive": 0.4}}]


@pytest.fixture()
def store(tmp_path: Path) -> FeedbackStore:
    return FeedbackStore.open(default_store_url(tmp_path))


def test_predictions_round_trip_in_order(store: FeedbackStore) -> None:
    ids = store.log_predictions("sentiment", "1", ["good food", "bad food"], ROWS)
    store.log_predictions("sentiment", "2", ["a table"], ROWS[:1])
    store.log_predictions("other", "1", ["x"], ROWS[:1])
    assert ids == sorted(ids) and len(set(ids)) == 2
    found = store.predictions(model="sentiment")
    assert [row.text for row in found] == ["good food", "bad food", "a table"]
    first = found[0]
    assert (first.label, first.version, first.confidence) == ("positive", "1", 0.9)
    assert first.probabilities == {"negative": 0.1, "positive": 0.9}
    assert first.time.tzinfo is not None
    assert [row.text for row in store.predictions(model="sentiment", version="2")] == ["a table"]
    assert [row.text for row in store.predictions(newest_first=True, limit=1)] == ["x"]
    assert store.count_predictions(model="sentiment") == 3 and store.count_predictions() == 4
    assert store.prediction(ids[1]).text == "bad food" and store.prediction(10_000) is None


def test_time_filters(store: FeedbackStore) -> None:
    now = datetime.now(timezone.utc)
    store.log_predictions("m", "1", ["old"], ROWS[:1], when=now - timedelta(days=2))
    store.log_predictions("m", "1", ["new"], ROWS[:1], when=now)
    assert [row.text for row in store.predictions(since=now - timedelta(days=1))] == ["new"]
    assert [row.text for row in store.predictions(until=now - timedelta(days=1))] == ["old"]
    assert store.count_predictions(since=now - timedelta(hours=1)) == 1


def test_corrections_resolve_texts_and_keep_the_newest(store: FeedbackStore) -> None:
    [good, bad] = store.log_predictions("m", "1", ["good food", "bad food"], ROWS)
    store.add_feedback("m", "negative", prediction_id=good)
    store.add_feedback("m", "positive", text="lovely place")
    store.add_feedback("m", "positive", prediction_id=good)  # changed their mind: the newest wins
    rejected = store.add_feedback("m", "positive", prediction_id=bad)
    assert store.review([rejected.id], accepted=False) == 1
    store.add_feedback("other", "negative", text="elsewhere")
    corrections = store.corrections(model="m")
    assert [(c.text, c.label) for c in corrections] == [("lovely place", "positive"), ("good food", "positive")]
    assert store.count_feedback(model="m") == 4 and store.count_feedback(model="m", accepted=True) == 3
    assert [row.accepted for row in store.feedback(model="m")] == [True, True, True, False]
    assert [c.text for c in store.corrections(model="m", limit=1)] == ["good food"]


def test_feedback_needs_one_target_and_a_known_prediction(store: FeedbackStore) -> None:
    with pytest.raises(TuneforgeError, match="either a prediction id or a text"):
        store.add_feedback("m", "positive")
    with pytest.raises(TuneforgeError, match="prediction 42 is not in the feedback store"):
        store.add_feedback("m", "positive", prediction_id=42)
    assert store.count_feedback() == 0


def test_sqlite_is_in_wal_mode_and_survives_a_killed_writer(tmp_path: Path) -> None:
    url = default_store_url(tmp_path)
    # A separate process commits and is killed at once, without closing anything.
    code = ("import os, signal; from tuneforge.lifecycle.feedback import FeedbackStore; "
            f"s = FeedbackStore.open({url!r}); s.add_feedback('m', 'positive', text='kept'); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert finished.returncode == -9
    database = tmp_path / "feedback.db"
    assert sqlite3.connect(database).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [row.text for row in FeedbackStore.open(url).feedback()] == ["kept"]


def test_a_bad_url_is_a_clear_error() -> None:
    with pytest.raises(TuneforgeError, match="cannot open the feedback store") as raised:
        FeedbackStore.open("nosuchdialect://x")
    assert "sqlite:///" in raised.value.fix
