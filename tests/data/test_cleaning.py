"""Cleaning steps on small fixtures: each asserts which rows a step acts on, the action and the reason."""

from __future__ import annotations

import json
import random

import pytest

from tests.conftest import make_rows, write_csv
from tuneforge.data.cleaning import (
    clean_texts,
    garbage_reason,
    label_issues,
    length_bounds,
    near_duplicates,
)
from tuneforge.data.toxicity import profanity_in, word_list
from tuneforge.recipe import CleanSpec

OFF = {name: "off" for name in ("duplicates", "near_duplicates", "conflicting_labels", "garbage", "length_outliers",
                                "mislabelled", "pii", "toxicity")}


def only(**steps: str) -> CleanSpec:
    return CleanSpec(enabled=True, **{**OFF, **steps})


def rows_of(cleaned, step: str) -> list[int]:
    return [f.row for f in cleaned.report.findings if f.step == step]


@pytest.mark.parametrize(("text", "garbage"), [
    ("", True), ("   ", True), ("1234 5678 !!", True), ("\x00\x01\x02\x03 ab", True), ("aaaaaaaaaaaa", True),
    ("!!!!!!!! ok", True), ("loved it!!!!!!!!!", False), ("fine", False), ("so good ✨✨✨✨✨✨✨✨✨✨✨✨", False),
    ("hahahahahaha", False),
])
def test_garbage(text: str, garbage: bool) -> None:
    assert (garbage_reason(text) is not None) is garbage


def test_exact_duplicates_keep_the_first_and_name_it() -> None:
    texts = ["Good food", "bad food", "good   FOOD", "good food"]
    cleaned = clean_texts(texts, ["pos", "neg", "pos", "pos"], only(duplicates="drop"))
    assert cleaned.kept == [0, 1]
    assert rows_of(cleaned, "duplicates") == [2, 3]
    assert all(f.reason == "duplicate of row 1" for f in cleaned.report.findings)


def test_conflicting_labels_keep_the_majority_or_nothing() -> None:
    texts = ["same text", "same text", "same text", "tie", "tie", "other"]
    labels = ["a", "a", "b", "a", "b", "a"]
    cleaned = clean_texts(texts, labels, only(conflicting_labels="drop"))
    assert rows_of(cleaned, "conflicting_labels") == [2, 3, 4]
    assert cleaned.kept == [0, 1, 5]
    assert "majority label is a" in cleaned.report.findings[0].reason
    assert "no majority" in cleaned.report.findings[1].reason


def test_near_duplicates_by_minhash() -> None:
    base = "the delivery was late and the pizza arrived cold, never ordering again"
    texts = [base, base.replace("cold", "cold!"), "a completely different sentence about the weather today",
             base.replace("pizza", "pasta").replace("never ordering again", "we will see")]
    found = near_duplicates(texts, threshold=0.8)
    assert set(found) == {1}
    assert found[1][0] == 0 and found[1][1] >= 0.8
    cleaned = clean_texts(texts, None, only(near_duplicates="flag"))
    assert cleaned.kept == [0, 1, 2, 3]  # flagged, not dropped
    assert rows_of(cleaned, "near_duplicates") == [1]


def test_length_outliers_use_robust_bounds() -> None:
    rng = random.Random(0)
    texts = [" ".join(rng.choice(["good", "food", "nice"]) for _ in range(rng.randint(4, 8))) for _ in range(40)]
    texts[7] = " ".join(["word"] * 200)
    low, high = length_bounds([len(t.split()) for t in texts], 3.0)
    assert high < 200
    cleaned = clean_texts(texts, None, only(length_outliers="drop"))
    assert rows_of(cleaned, "length_outliers") == [7]
    assert "200 words" in cleaned.report.findings[0].reason
    assert 7 not in cleaned.kept


def test_pii_mask_changes_the_rows_and_the_report_never_repeats_it() -> None:
    texts = ["contact me at jane@example.com", "nothing here"]
    masked = clean_texts(texts, None, only(pii="mask"))
    assert masked.texts == ["contact me at [EMAIL]", "nothing here"]
    flagged = clean_texts(texts, None, only(pii="flag"))
    assert flagged.texts == texts  # flag keeps the row as it is
    assert flagged.report.findings[0].text == "contact me at [EMAIL]"
    assert flagged.report.findings[0].reason == "personal data: 1 email"


def test_toxicity_flags_with_leetspeak_and_phrases() -> None:
    assert profanity_in("what a sh1t show") == ["sh1t"]
    assert profanity_in("what the f*ck") == ["f*ck"]
    assert profanity_in("Scunthorpe and assessment are fine") == []
    listed = word_list(["darn", "heck no"])
    assert profanity_in("Darn, HECK no!", listed) == ["Darn", "HECK no!"]
    cleaned = clean_texts(["you are a bitch", "lovely day"], None, only(toxicity="flag"))
    assert cleaned.kept == [0, 1] and rows_of(cleaned, "toxicity") == [0]


def test_mislabelled_finds_planted_label_errors() -> None:
    rows = make_rows(150, seed=5)
    texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    planted = [3, 40, 77, 120]
    for index in planted:  # give each a wrong label its words contradict
        labels[index] = {"positive": "negative", "negative": "neutral", "neutral": "positive"}[labels[index]]
    found, note = label_issues(texts, labels, folds=5)
    assert note is None
    assert set(planted) <= set(found)
    assert len(found) <= len(planted) + 3  # few false alarms on clean rows
    suggested, p_suggested, p_given = found[3]
    assert suggested == rows[3]["label"] and p_suggested > p_given


def test_mislabelled_skips_a_class_with_one_row() -> None:
    found, note = label_issues(["a b", "c d", "e f"], ["x", "x", "y"], folds=5)
    assert found == {} and "y" in note


def test_evaluation_splits_only_get_pii_masking() -> None:
    texts = ["same", "same", "mail x@example.org"]
    cleaned = clean_texts(texts, ["a", "a", "b"], CleanSpec(enabled=True), evaluation=True)
    assert cleaned.kept == [0, 1, 2]
    assert set(cleaned.report.steps) == {"pii"}
    assert cleaned.texts[2] == "mail [EMAIL]"


def test_report_counts_every_step_that_ran() -> None:
    cleaned = clean_texts(["a b c", "a b c", ""], ["x", "x", "x"], only(duplicates="drop", garbage="drop",
                                                                        toxicity="flag"))
    summary = cleaned.report.summary()
    assert summary["rows_before"] == 3 and summary["rows_after"] == 1
    assert summary["steps"] == {"garbage": {"drop": 1}, "duplicates": {"drop": 1}, "toxicity": {"flag": 0}}


def test_training_pipeline_writes_the_report(tmp_path, data_recipe) -> None:
    from tuneforge.data.prepare import prepare_data

    rows = make_rows(60, seed=2)
    rows += [dict(rows[0]), {"text": "", "label": "positive"}, {"text": "call me on +1 415 555 0100 please",
                                                                "label": "neutral"}]
    train = write_csv(tmp_path / "train.csv", rows)
    recipe = data_recipe(train=train, validation_split=0.2)
    recipe.clean = CleanSpec(enabled=True, mislabelled="off")
    data = prepare_data(recipe)
    report = data.cleaning["train"]
    steps = {(f["step"], f["action"]) for f in report["rows"]}
    assert {("garbage", "drop"), ("duplicates", "drop"), ("pii", "mask")} <= steps
    assert report["rows_before"] == 63 and report["rows_after"] == 61
    texts = list(data.train["text"]) + list(data.validation["text"])
    assert "call me on [PHONE] please" in texts and "" not in texts
    assert any("clean: dropped 2 of 63 rows" in w.message for w in data.warnings)
    json.dumps(data.cleaning)  # the run writes it as data_report.json


def test_cleaning_that_empties_a_class_is_an_error(tmp_path, data_recipe) -> None:
    from tuneforge.data.prepare import prepare_data
    from tuneforge.errors import DataError

    rows = make_rows(30, seed=2, labels=("negative", "positive"))
    rows += [{"text": "!!!!!!", "label": "odd"}, {"text": "??????", "label": "odd"}]
    recipe = data_recipe(train=write_csv(tmp_path / "train.csv", rows), validation_split=0.0)
    recipe.clean = CleanSpec(enabled=True)
    with pytest.raises(DataError) as raised:
        prepare_data(recipe)
    assert "after cleaning" in str(raised.value) and "odd" in str(raised.value)


def test_clean_is_refused_for_tasks_it_cannot_clean() -> None:
    from tuneforge.errors import RecipeError
    from tuneforge.recipe import recipe_from_dict

    with pytest.raises(RecipeError, match="clean: works on text rows"):
        recipe_from_dict({"task": "ner", "clean": {"enabled": True}})
    assert recipe_from_dict({"clean": {"enabled": True, "mislabelled": False}}).clean.mislabelled == "off"


def test_a_run_writes_data_report_and_the_card_shows_it(tiny_model, tmp_path) -> None:
    import tuneforge
    from tests.conftest import tiny_recipe

    rows = make_rows(60, seed=2) + [{"text": "", "label": "positive"}]
    rows.append(dict(rows[0]))
    files = {"train": write_csv(tmp_path / "train.csv", rows),
             "validation": write_csv(tmp_path / "val.csv", make_rows(15, seed=3))}
    recipe = tiny_recipe(tiny_model, files, tmp_path / "run", train={"epochs": 1},
                         clean={"enabled": True, "mislabelled": "off"})
    run = tuneforge.fine_tune(recipe, on_warnings=lambda problems: None)
    report = json.loads((run.directory / "data_report.json").read_text())
    assert {(r["step"], r["action"]) for r in report["train"]["rows"]} == {("garbage", "drop"), ("duplicates", "drop")}
    summary = json.loads((run.directory / "data.json").read_text())
    assert summary["cleaning"]["train"]["rows_after"] == 60 and "rows" not in summary["cleaning"]["train"]
    assert summary["imbalance"]["class_counts"] == {"negative": 20, "neutral": 20, "positive": 20}
    html = (run.directory / "report.html").read_text()
    assert "Cleaning" in html and "data_report.json" in html
