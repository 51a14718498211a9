"""Active learning: known-answer uncertainty scores, k-center greedy, and the annotate select/merge loop."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tests.conftest import make_rows, write_csv
from tuneforge.cli.main import main
from tuneforge.errors import DataError, TuneforgeError
from tuneforge.lifecycle import active_learning as al
from tuneforge.lifecycle.annotation import merge_labelled

P = np.array([[1 / 3, 1 / 3, 1 / 3],   # uniform: most uncertain by every measure
              [1.0, 0.0, 0.0],         # certain
              [0.5, 0.5, 0.0],         # two-way tie
              [0.6, 0.3, 0.1]])


def test_entropy_known_answers():
    np.testing.assert_allclose(al.entropy(P), [math.log(3), 0.0, math.log(2),
                                               -(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1))])


def test_margin_and_least_confidence_known_answers():
    np.testing.assert_allclose(al.margin(P), [1.0, 0.0, 1.0, 0.7])
    np.testing.assert_allclose(al.least_confidence(P), [2 / 3, 0.0, 0.5, 0.4])


def test_strategies_rank_differently_where_they_should():
    # margin ranks the two-way tie above the 0.6/0.3/0.1 row; entropy, which counts the third class, the reverse.
    assert al.select(P, 4, "margin").indices == [0, 2, 3, 1]
    assert al.select(P, 3, "least-confidence").indices == [0, 2, 3]
    assert al.select(P, 4, "entropy").indices == [0, 3, 2, 1]
    assert al.select(P, 1, "entropy").scores == pytest.approx([math.log(3)])


def test_random_is_seeded_and_within_budget():
    first = al.select(np.tile(P, (10, 1)), 5, "random", seed=3)
    assert first.indices == al.select(np.tile(P, (10, 1)), 5, "random", seed=3).indices
    assert len(set(first.indices)) == 5 and al.select(P, 99, "random").indices.__len__() == 4


def test_k_center_greedy_picks_the_farthest_points():
    points = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [10.1, 0.0], [0.0, 10.0]])
    assert al.k_center_greedy(points, 3) == [0, 3, 4]  # 10.1 away, then (0, 10): 10 from both picks
    # With the labelled data at the origin, the first pick is the point farthest from it.
    assert al.k_center_greedy(points, 2, centers=np.array([[0.0, 0.0]])) == [3, 4]


def test_diversity_spreads_a_batch_of_near_duplicates():
    # Six equally uncertain rows: four near-copies in one place, two elsewhere. Entropy would take the first
    # three copies; diversity takes one copy and both outliers.
    probabilities = np.full((6, 2), 0.5)
    embeddings = np.array([[0, 0], [0, 0.01], [0, 0.02], [0, 0.03], [5, 5], [-5, 5]], dtype=float)
    assert al.select(probabilities, 3, "entropy").indices == [0, 1, 2]
    assert sorted(al.select(probabilities, 3, "diversity", embeddings).indices) == [0, 4, 5]


def test_unknown_strategy_and_bad_budget_are_clear_errors():
    with pytest.raises(TuneforgeError, match="unknown active-learning strategy"):
        al.select(P, 1, "bald")
    with pytest.raises(TuneforgeError, match="budget"):
        al.select(P, 0)


def test_annotate_select_writes_the_most_uncertain_pool_texts(served_runs, tmp_path):
    import tuneforge

    run = served_runs["classification"]
    rows = [{"text": r["text"]} for r in make_rows(30, seed=71)]
    pool = write_csv(tmp_path / "pool.csv", rows + rows[:5])  # repeated texts count once
    out = tmp_path / "to_label.csv"
    assert main(["annotate", "select", str(run), "--pool", str(pool), "--budget", "6", "--strategy", "margin",
                 "--output", str(out)]) == 0
    chosen = pd.read_csv(out, keep_default_na=False)
    assert list(chosen.columns) == ["text", "label", "score", "predicted"]
    assert len(chosen) == 6 and set(chosen["label"]) == {""}
    texts = [r["text"] for r in rows]
    expected = al.margin(tuneforge.load(run, device="cpu").probabilities(texts))
    assert chosen["score"].tolist() == pytest.approx(sorted(expected, reverse=True)[:6], abs=1e-5)
    assert main(["annotate", "select", str(run), "--pool", str(pool), "--budget", "4", "--strategy", "diversity",
                 "--output", str(tmp_path / "diverse.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "diverse.csv")) == 4


def test_annotate_merge_adds_checked_rows_and_reports_duplicates(tmp_path, capsys):
    train = write_csv(tmp_path / "train.csv", [{"text": "good food", "label": "positive"},
                                               {"text": "bad food", "label": "negative"}])
    labelled = write_csv(tmp_path / "to_label.csv", [
        {"text": "lovely place", "label": "positive", "score": 0.9, "predicted": "negative"},
        {"text": "Good  food", "label": "positive", "score": 0.8, "predicted": "positive"},  # same text, normalised
        {"text": "rude staff", "label": "negative", "score": 0.7, "predicted": "positive"}])
    out = tmp_path / "train_v2.csv"
    assert main(["annotate", "merge", "--labelled", str(labelled), "--into", str(train), "--output", str(out)]) == 0
    merged = pd.read_csv(out)
    assert list(merged.columns) == ["text", "label"]
    assert merged["text"].tolist() == ["good food", "bad food", "lovely place", "rude staff"]
    captured = capsys.readouterr()
    assert "1 labelled text(s) already in" in captured.err and "row 2 (line 3)" in captured.err
    assert "2 labelled rows added" in captured.out


def test_annotate_merge_names_file_row_value_and_allowed_labels(tmp_path):
    train = write_csv(tmp_path / "train.csv", [{"text": "good food", "label": "positive"},
                                               {"text": "bad food", "label": "negative"}])
    labelled = write_csv(tmp_path / "to_label.csv", [{"text": "nice", "label": "positive"},
                                                     {"text": "meh", "label": ""},
                                                     {"text": "awful", "label": "negatve"}])
    with pytest.raises(DataError) as caught:
        merge_labelled(labelled, train)
    problems = caught.value.problems
    assert len(problems) == 2
    assert "to_label.csv: row 2 (line 3)" in problems[0].where and problems[0].message == "no label"
    assert "row 3 (line 4)" in problems[1].where and "'negatve'" in problems[1].message
    assert problems[1].fix == "use one of: negative, positive"
    with pytest.raises(DataError, match="'positive' is not a known label"):
        merge_labelled(labelled, train, allowed=["good", "bad"])
