"""Data checks: every problem names the file, the column and the rows, says how to fix it, and all come together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import make_regression_rows, make_rows, write_csv
from tuneforge.data.loading import row_label
from tuneforge.data.prepare import load_and_check, prepare_data
from tuneforge.errors import DataError, Problem


def _errors(recipe) -> list[Problem]:
    with pytest.raises(DataError) as caught:
        prepare_data(recipe)
    problems = caught.value.problems
    assert all(p.severity == "error" for p in problems)
    for problem in problems:
        assert problem.fix, problem
    return problems


def _one(problems: list[Problem], fragment: str) -> Problem:
    found = [p for p in problems if fragment in p.message]
    assert len(found) == 1, (fragment, problems)
    return found[0]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


# --- row labels ----------------------------------------------------------------------------------------

def test_row_labels_count_the_header_line_of_tables_only():
    assert row_label("train.csv", 0) == "row 1 (line 2)"
    assert row_label("train.TSV", 9) == "row 10 (line 11)"
    assert row_label("train.jsonl", 0) == "line 1"
    assert row_label("train.parquet", 4) == "row 5"


# --- columns -------------------------------------------------------------------------------------------

def test_missing_column_suggests_the_near_miss(tmp_path, data_recipe):
    rows = [{"txt": r["text"], "label": r["label"]} for r in make_rows(12, seed=1)]
    path = write_csv(tmp_path / "train.csv", rows)
    [problem] = _errors(data_recipe(train=path))
    assert problem.where == str(path)
    assert "column 'text' is missing" in problem.message
    assert "txt, label" in problem.message  # what the file does have
    assert "did you mean 'txt'?" in problem.fix


def test_missing_column_without_near_miss_gives_no_suggestion(tmp_path, data_recipe):
    rows = [{"sentence": r["text"], "label": r["label"]} for r in make_rows(12, seed=1)]
    path = write_csv(tmp_path / "train.csv", rows)
    [problem] = _errors(data_recipe(train=path))
    assert "column 'text' is missing" in problem.message
    assert "did you mean" not in problem.fix
    assert "data.text_column" in problem.fix


def test_missing_sensitive_column_is_caught_before_training(tmp_path, data_recipe):
    rows = [{**r, "Gender": "f"} for r in make_rows(12, seed=1)]
    train = write_csv(tmp_path / "train.csv", rows)
    test = write_csv(tmp_path / "test.csv", make_rows(6, seed=2))
    recipe = data_recipe(train=train, test=test)
    recipe.fairness.sensitive_columns = ["gender"]
    [problem] = _errors(recipe)
    assert problem.where == str(test)  # the audited split; the training file has a near miss, not this one
    assert "sensitive column 'gender' is missing" in problem.message
    assert "fairness.sensitive_columns" in problem.fix
    recipe.data.test = None  # the test split is then carved from the training file: that file is checked
    [problem] = _errors(recipe)
    assert problem.where == str(train) and "did you mean 'Gender'?" in problem.fix


def test_missing_columns_are_reported_per_file(tmp_path, data_recipe):
    train = write_csv(tmp_path / "train.csv", make_rows(12, seed=1))
    rows = [{"text": r["text"], "labels": r["label"]} for r in make_rows(6, seed=2)]
    validation = write_csv(tmp_path / "val.csv", rows)
    [problem] = _errors(data_recipe(train=train, validation=validation))
    assert problem.where == str(validation)
    assert "column 'label' is missing" in problem.message
    assert "did you mean 'labels'?" in problem.fix


# --- texts and labels ----------------------------------------------------------------------------------

def test_empty_texts_name_file_column_and_rows(tmp_path, data_recipe):
    rows = make_rows(12, seed=1)
    blank = [3, 8]
    rows[blank[0]]["text"] = ""
    rows[blank[1]]["text"] = "   "
    path = write_csv(tmp_path / "train.csv", rows)
    [problem] = _errors(data_recipe(train=path))
    assert problem.where == f"{path}: column 'text'"
    assert f"{len(blank)} empty text(s)" in problem.message
    for index in blank:
        assert f"row {index + 1} (line {index + 2})" in problem.message


def test_every_text_empty_points_at_the_text_column(tmp_path, data_recipe):
    rows = [{"text": "", "other": r["text"], "label": r["label"]} for r in make_rows(6, seed=1)]
    path = write_csv(tmp_path / "train.csv", rows)
    [problem] = _errors(data_recipe(train=path))
    assert problem.where == f"{path}: column 'text'"
    assert "every text is empty" in problem.message
    assert "data.text_column" in problem.fix


def test_long_row_lists_are_shortened(tmp_path, data_recipe):
    rows = make_rows(30, seed=1)
    blank = list(range(0, 30, 3))
    for index in blank:
        rows[index]["text"] = ""
    path = write_csv(tmp_path / "train.csv", rows)
    [problem] = _errors(data_recipe(train=path))
    assert f"{len(blank)} empty text(s)" in problem.message
    shown = 5
    assert f"and {len(blank) - shown} more" in problem.message
    assert row_label(path, blank[shown - 1]) in problem.message
    assert row_label(path, blank[shown]) not in problem.message


def test_missing_labels_name_file_column_and_rows(tmp_path, data_recipe):
    rows = make_rows(12, seed=1)
    missing = [0, 10]
    for index in missing:
        rows[index]["label"] = ""
    path = write_csv(tmp_path / "train.csv", rows)
    [problem] = _errors(data_recipe(train=path))
    assert problem.where == f"{path}: column 'label'"
    assert f"{len(missing)} missing label(s)" in problem.message
    for index in missing:
        assert f"row {index + 1} (line {index + 2})" in problem.message


def test_missing_labels_in_jsonl_are_reported_by_line(tmp_path, data_recipe):
    rows = make_rows(12, seed=1)
    rows[4]["label"] = None
    path = _write_jsonl(tmp_path / "train.jsonl", rows)
    [problem] = _errors(data_recipe(train=path))
    assert problem.where == f"{path}: column 'label'"
    assert "1 missing label(s) at line 5" in problem.message


def test_missing_numeric_labels_are_found(tmp_path, data_recipe):
    rows = [{"text": f"example {i}", "label": i % 2} for i in range(10)]
    rows[7]["label"] = ""  # pandas reads the column as float with a NaN here
    path = write_csv(tmp_path / "train.csv", rows)
    [problem] = _errors(data_recipe(train=path))
    assert "1 missing label(s) at row 8 (line 9)" in problem.message


@pytest.mark.parametrize("role", ["validation", "test"])
def test_labels_never_seen_in_training(role, tmp_path, data_recipe):
    train = write_csv(tmp_path / "train.csv", make_rows(12, seed=1))
    rows = make_rows(9, seed=2)
    typo_rows = [2, 7]
    for index in typo_rows:
        rows[index]["label"] = "postive"
    rows[4]["label"] = "mixed"
    other = write_csv(tmp_path / f"{role}.csv", rows)
    problems = _errors(data_recipe(train=train, **{role: other}))
    assert len(problems) == 2  # one per unseen label
    typo = _one(problems, "'postive'")
    assert typo.where == f"{other}: column 'label'"
    assert "never occurs in the training data" in typo.message
    for index in typo_rows:
        assert row_label(other, index) in typo.message
    assert "negative, neutral, positive" in typo.fix  # the labels training does have
    assert row_label(other, 4) in _one(problems, "'mixed'").message


def test_numeric_labels_match_across_formats(tmp_path, data_recipe):
    train = write_csv(tmp_path / "train.csv", [{"text": f"example {i}", "label": i % 3} for i in range(12)])
    validation = _write_jsonl(tmp_path / "val.jsonl", [{"text": f"other {i}", "label": str(i % 3)} for i in range(6)])
    prepared = prepare_data(data_recipe(train=train, validation=validation))
    assert prepared.validation["labels"] == [i % 3 for i in range(6)]


# --- classes -------------------------------------------------------------------------------------------

def test_class_with_too_few_examples(tmp_path, data_recipe):
    rows = make_rows(12, seed=1) + [{"text": "a rare one", "label": "rare"}, {"text": "a rare two", "label": "rare"}]
    path = write_csv(tmp_path / "train.csv", rows)
    # the default minimum (2) accepts two examples
    assert prepare_data(data_recipe(train=path, validation_split=0.3)).labels[-1] == "rare"
    [problem] = _errors(data_recipe(train=path, min_examples_per_class=3))
    assert problem.where == f"{path}: column 'label'"
    assert "fewer than 3 training examples" in problem.message
    assert "'rare' (2)" in problem.message
    for common in ("negative", "neutral", "positive"):
        assert common not in problem.message
    assert "min_examples_per_class" in problem.fix


def test_single_class(tmp_path, data_recipe):
    rows = make_rows(8, seed=1, labels=("positive",))
    path = write_csv(tmp_path / "train.csv", rows)
    [problem] = _errors(data_recipe(train=path))
    assert problem.where == f"{path}: column 'label'"
    assert "single class ('positive')" in problem.message


def test_regression_has_no_class_checks(tmp_path, data_recipe):
    rows = [{"text": f"example {i}", "score": 1.5} for i in range(6)]  # one distinct value, each seen once
    path = write_csv(tmp_path / "train.csv", rows)
    prepared = prepare_data(data_recipe("regression", train=path, label_column="score", validation_split=0.0))
    assert prepared.labels is None
    assert prepared.train["labels"] == [1.5] * len(rows)


def test_non_numeric_regression_targets(tmp_path, data_recipe):
    rows = make_regression_rows(12, seed=1)
    bad = {3: "high", 9: "n/a-ish"}
    for index, value in bad.items():
        rows[index]["score"] = value
    path = write_csv(tmp_path / "train.csv", rows)
    [problem] = _errors(data_recipe("regression", train=path, label_column="score"))
    assert problem.where == f"{path}: column 'score'"
    assert f"{len(bad)} non-numeric regression target(s)" in problem.message
    assert "'high'" in problem.message
    for index in bad:
        assert row_label(path, index) in problem.message
    assert "task: classification" in problem.fix


def test_infinite_regression_targets_are_rejected(tmp_path, data_recipe):
    rows = make_regression_rows(6, seed=1)
    rows[2]["score"] = "inf"
    path = write_csv(tmp_path / "train.csv", rows)
    [problem] = _errors(data_recipe("regression", train=path, label_column="score"))
    assert "1 non-numeric regression target(s)" in problem.message
    assert row_label(path, 2) in problem.message


# --- overlap is a warning ------------------------------------------------------------------------------

def test_overlap_between_train_and_test_is_a_warning(tmp_path, data_recipe):
    rows = make_rows(12, seed=1)
    train = write_csv(tmp_path / "train.csv", rows)
    test_rows = make_rows(6, seed=5)
    shared = [1, 4]
    for index in shared:
        test_rows[index] = dict(rows[index * 2])
    test_rows[shared[1]]["text"] = "  " + test_rows[shared[1]]["text"].upper() + " "  # case and spacing ignored
    test = write_csv(tmp_path / "test.csv", test_rows)
    recipe = data_recipe(train=train, test=test, validation_split=0.3)

    _, problems = load_and_check(recipe)
    [warning] = problems
    assert warning.severity == "warning"
    assert warning.where == str(test)
    assert f"{len(shared)} text(s) also occur in {train}" in warning.message
    for index in shared:
        assert row_label(test, index) in warning.message
    assert warning.fix

    prepared = prepare_data(recipe)
    assert prepared.warnings == [warning]
    assert len(prepared.test) == len(test_rows)


def test_overlap_between_validation_and_test_is_a_warning(tmp_path, data_recipe):
    train = write_csv(tmp_path / "train.csv", make_rows(12, seed=1))
    validation_rows = make_rows(6, seed=2)
    validation = write_csv(tmp_path / "val.csv", validation_rows)
    test = write_csv(tmp_path / "test.csv", [validation_rows[0]] + make_rows(3, seed=3))
    prepared = prepare_data(data_recipe(train=train, validation=validation, test=test))
    [warning] = prepared.warnings
    assert warning.where == str(test)
    assert str(validation) in warning.message
    assert row_label(test, 0) in warning.message


def test_warnings_do_not_hide_errors(tmp_path, data_recipe):
    rows = make_rows(12, seed=1)
    train = write_csv(tmp_path / "train.csv", rows)
    test_rows = [rows[0], {"text": "", "label": "positive"}]
    test = write_csv(tmp_path / "test.csv", test_rows)
    with pytest.raises(DataError) as caught:
        prepare_data(data_recipe(train=train, test=test))
    [problem] = caught.value.problems  # DataError keeps the errors; the overlap warning is not one
    assert "empty text" in problem.message
    assert "also occur" not in str(caught.value)


# --- unreadable files ----------------------------------------------------------------------------------

def test_ragged_csv_row(tmp_path, data_recipe):
    path = tmp_path / "train.csv"
    path.write_text("text,label\ngood food,positive\nbad, food,negative\nfine,neutral\n", encoding="utf-8")
    [problem] = _errors(data_recipe(train=path))
    assert problem.where == str(path)
    assert "could not be read as CSV" in problem.message
    assert "line 3" in problem.message  # the ragged line, as the parser counts it
    assert "header" in problem.fix


def test_unknown_extension(tmp_path, data_recipe):
    path = tmp_path / "train.xlsx"
    path.write_bytes(b"PK\x03\x04")
    [problem] = _errors(data_recipe(train=path))
    assert problem.where == str(path)
    assert "unknown file type '.xlsx'" in problem.message
    for suffix in (".csv", ".tsv", ".jsonl", ".parquet"):
        assert suffix in problem.fix


def test_missing_file(tmp_path, data_recipe):
    path = tmp_path / "nope" / "train.csv"
    [problem] = _errors(data_recipe(train=path))
    assert problem.where == str(path)
    assert "file not found" in problem.message


def test_empty_file(tmp_path, data_recipe):
    path = tmp_path / "train.csv"
    path.write_text("", encoding="utf-8")
    [problem] = _errors(data_recipe(train=path))
    assert problem.where == str(path)
    assert "empty" in problem.message


def test_header_only_file(tmp_path, data_recipe):
    path = tmp_path / "train.csv"
    path.write_text("text,label\n", encoding="utf-8")
    [problem] = _errors(data_recipe(train=path))
    assert problem.where == str(path)
    assert "header but no rows" in problem.message


def test_folder_that_is_not_a_saved_dataset(tmp_path, data_recipe):
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello", encoding="utf-8")
    [problem] = _errors(data_recipe(train=folder))
    assert problem.where == str(folder)
    assert "not a `datasets` save folder" in problem.message


def test_saved_dataset_dict_without_the_split(tmp_path, data_recipe):
    import datasets

    folder = tmp_path / "saved"
    split = datasets.Dataset.from_list(make_rows(12, seed=1))
    datasets.DatasetDict({"train": split, "extra": split}).save_to_disk(str(folder))
    train = write_csv(tmp_path / "train.csv", make_rows(12, seed=1))
    [problem] = _errors(data_recipe(train=train, test=folder))
    assert problem.where == str(folder)
    assert "no 'test' split" in problem.message
    assert "'train'" in problem.message and "'extra'" in problem.message


def test_no_training_file(data_recipe):
    [problem] = _errors(data_recipe())
    assert problem.where == "data.train"


# --- all at once ---------------------------------------------------------------------------------------

def test_every_problem_of_every_file_comes_in_one_error(tmp_path, data_recipe):
    rows = make_rows(12, seed=1)
    rows[2]["text"] = ""
    rows[5]["label"] = ""
    rows.append({"text": "only one of these", "label": "rare"})
    train = write_csv(tmp_path / "train.csv", rows)
    validation_rows = make_rows(6, seed=2)
    validation_rows[3]["label"] = "unheard"
    validation = write_csv(tmp_path / "val.csv", validation_rows)
    test = tmp_path / "missing-test.csv"

    problems = _errors(data_recipe(train=train, validation=validation, test=test))
    assert len(problems) == 5
    assert _one(problems, "empty text").where == f"{train}: column 'text'"
    assert row_label(train, 2) in _one(problems, "empty text").message
    assert row_label(train, 5) in _one(problems, "missing label").message
    assert "'rare' (1)" in _one(problems, "fewer than 2 training examples").message
    unseen = _one(problems, "'unheard'")
    assert unseen.where == f"{validation}: column 'label'"
    assert row_label(validation, 3) in unseen.message
    assert _one(problems, "file not found").where == str(test)


def test_load_and_check_returns_problems_instead_of_raising(tmp_path, data_recipe):
    rows = make_rows(12, seed=1)
    rows[0]["text"] = ""
    path = write_csv(tmp_path / "train.csv", rows)
    loaded, problems = load_and_check(data_recipe(train=path, test=tmp_path / "missing.csv"))
    assert set(loaded) == {"train"}
    assert len(problems) == 2
    assert str(DataError(problems)).startswith("The data has 2 problem(s)")
