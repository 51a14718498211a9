"""prepare_data: every input format, carved splits, label encoding, oversampling and the datasets cache."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import datasets
import pandas as pd
import pytest

from tests.conftest import make_rows, write_csv
from tuneforge.data.prepare import LABEL_FIELD, prepare_data


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _rows_by_count(counts: dict[str, int]) -> list[dict]:
    """Distinct texts, classes interleaved so no class sits in one block of the file."""
    rows, left = [], dict(counts)
    while any(left.values()):
        for label in counts:
            if left[label]:
                rows.append({"text": f"example {label} {counts[label] - left[label]}", "label": label})
                left[label] -= 1
    return rows


def _names(prepared, split) -> list[str]:
    return [prepared.labels[i] for i in split[LABEL_FIELD]]


# --- formats -------------------------------------------------------------------------------------------

def _write_json_array(folder: Path, rows: list[dict]) -> Path:
    path = folder / "train.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def _write_parquet(folder: Path, rows: list[dict]) -> Path:
    path = folder / "train.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def _write_saved_dataset(folder: Path, rows: list[dict]) -> Path:
    path = folder / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


WRITERS = {
    "csv": lambda folder, rows: write_csv(folder / "train.csv", rows),
    "tsv": lambda folder, rows: write_csv(folder / "train.tsv", rows, delimiter="\t"),
    "tab": lambda folder, rows: write_csv(folder / "train.tab", rows, delimiter="\t"),
    "jsonl": lambda folder, rows: _write_jsonl(folder / "train.jsonl", rows),
    "json-array": _write_json_array,
    "parquet": _write_parquet,
    "saved-dataset": _write_saved_dataset,
}


@pytest.mark.parametrize("fmt", [f for f in WRITERS if f != "csv"])
def test_every_format_prepares_like_csv(fmt, tmp_path, data_recipe):
    rows = make_rows(30, seed=11)
    reference = prepare_data(data_recipe(train=WRITERS["csv"](tmp_path / "csv", rows), validation_split=0.2))
    (tmp_path / fmt).mkdir()
    path = WRITERS[fmt](tmp_path / fmt, rows)
    prepared = prepare_data(data_recipe(train=path, validation_split=0.2))

    assert prepared.labels == reference.labels == sorted({r["label"] for r in rows})
    assert prepared.train[LABEL_FIELD] == reference.train[LABEL_FIELD]
    assert prepared.train["text"] == reference.train["text"]
    assert prepared.validation["text"] == reference.validation["text"]
    by_text = {r["text"]: r["label"] for r in rows}
    assert _names(prepared, prepared.train) == [by_text[t] for t in prepared.train["text"]]
    assert prepared.sources == {"train": str(path)}


@pytest.mark.parametrize("split_name", ["validation", "valid", "dev"])
def test_saved_dataset_dict_gives_each_role_its_split(split_name, tmp_path, data_recipe):
    train_rows, validation_rows, test_rows = make_rows(24, seed=1), make_rows(9, seed=2), make_rows(6, seed=3)
    folder = tmp_path / "saved"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_list(train_rows),
        split_name: datasets.Dataset.from_list(validation_rows),
        "test": datasets.Dataset.from_list(test_rows),
    }).save_to_disk(str(folder))

    prepared = prepare_data(data_recipe(train=folder, validation=folder, test=folder))
    assert prepared.train["text"] == [r["text"] for r in train_rows]  # nothing carved: validation was given
    assert prepared.validation["text"] == [r["text"] for r in validation_rows]
    assert prepared.test["text"] == [r["text"] for r in test_rows]
    assert _names(prepared, prepared.validation) == [r["label"] for r in validation_rows]


# --- carved splits -------------------------------------------------------------------------------------

def _assert_stratified(held: list[str], pool: Counter) -> None:
    held_counts = Counter(held)
    total = sum(pool.values())
    for label, count in pool.items():
        expected = len(held) * count / total
        assert abs(held_counts[label] - expected) <= 1, (label, held_counts, pool)


def test_carved_validation_keeps_class_proportions(tmp_path, data_recipe):
    counts = {"a": 40, "b": 20, "c": 10}
    rows = _rows_by_count(counts)
    path = write_csv(tmp_path / "train.csv", rows)
    prepared = prepare_data(data_recipe(train=path, validation_split=0.2))

    assert len(prepared.validation) + len(prepared.train) == len(rows)
    assert not set(prepared.validation["text"]) & set(prepared.train["text"])
    _assert_stratified(_names(prepared, prepared.validation), Counter(counts))
    _assert_stratified(_names(prepared, prepared.train), Counter(counts))
    assert prepared.test is None


def test_carved_test_and_validation_keep_class_proportions(tmp_path, data_recipe):
    counts = {"a": 45, "b": 30, "c": 15}
    rows = _rows_by_count(counts)
    path = write_csv(tmp_path / "train.csv", rows)
    prepared = prepare_data(data_recipe(train=path, validation_split=0.2, test_split=0.2))

    splits = (prepared.train, prepared.validation, prepared.test)
    assert sum(len(s) for s in splits) == len(rows)
    texts = [set(s["text"]) for s in splits]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    for split in splits:
        _assert_stratified(_names(prepared, split), Counter(counts))


def test_split_fractions_are_shares_of_the_whole_file(tmp_path, data_recipe):
    rows = _rows_by_count({"a": 50, "b": 50})
    path = write_csv(tmp_path / "train.csv", rows)
    prepared = prepare_data(data_recipe(train=path, validation_split=0.1, test_split=0.2))
    assert len(prepared.test) == round(0.2 * len(rows))
    assert len(prepared.validation) == round(0.1 * len(rows))


def test_unstratified_split_when_asked(tmp_path, data_recipe):
    rows = _rows_by_count({"a": 40, "b": 20})
    path = write_csv(tmp_path / "train.csv", rows)
    stratified = prepare_data(data_recipe(train=path, validation_split=0.25))
    plain = prepare_data(data_recipe(train=path, validation_split=0.25, stratify=False))
    assert len(plain.validation) == len(stratified.validation)
    assert plain.validation["text"] != stratified.validation["text"]


def test_carved_splits_are_deterministic_per_seed(tmp_path, data_recipe):
    rows = _rows_by_count({"a": 30, "b": 20, "c": 10})
    path = write_csv(tmp_path / "train.csv", rows)

    def carve(seed: int):
        return prepare_data(data_recipe(train=path, validation_split=0.2, test_split=0.2, split_seed=seed))

    first, again, other = carve(42), carve(42), carve(7)
    for role in ("train", "validation", "test"):
        assert getattr(first, role)["text"] == getattr(again, role)["text"]
    assert set(first.validation["text"]) != set(other.validation["text"])
    assert set(first.test["text"]) != set(other.test["text"])


def test_given_validation_file_is_not_carved(tmp_path, classification_files, data_recipe):
    prepared = prepare_data(data_recipe(train=classification_files["train"],
                                        validation=classification_files["validation"], validation_split=0.3))
    assert len(prepared.train) == len(pd.read_csv(classification_files["train"]))
    assert len(prepared.validation) == len(pd.read_csv(classification_files["validation"]))


def test_no_validation_when_split_is_zero(tmp_path, data_recipe):
    path = write_csv(tmp_path / "train.csv", make_rows(12, seed=1))
    prepared = prepare_data(data_recipe(train=path, validation_split=0.0))
    assert prepared.validation is None and prepared.test is None
    assert len(prepared.train) == 12


def test_small_carved_split_with_many_classes_does_not_crash(tmp_path, data_recipe):
    rows = make_rows(12, seed=1)  # 3 classes of 4; 10% of 12 rounds up to 2 held-out rows
    path = write_csv(tmp_path / "train.csv", rows)
    prepared = prepare_data(data_recipe(train=path, validation_split=0.1))
    assert len(prepared.train) + len(prepared.validation) == len(rows)


# --- label encoding ------------------------------------------------------------------------------------

def test_labels_are_encoded_in_sorted_order(tmp_path, data_recipe):
    names = ("zebra", "apple", "mango")
    rows = [{"text": f"example {i}", "label": names[i % 3]} for i in range(12)]
    path = write_csv(tmp_path / "train.csv", rows)
    prepared = prepare_data(data_recipe(train=path, validation_split=0.0))
    assert prepared.labels == sorted(names)
    assert _names(prepared, prepared.train) == [r["label"] for r in rows]
    assert prepared.class_counts() == {name: 4 for name in sorted(names)}


@pytest.mark.parametrize("writer", ["csv", "jsonl-strings"])
def test_numeric_labels_sort_numerically(writer, tmp_path, data_recipe):
    values = [10, 2, 0, 1]
    rows = [{"text": f"example {i}", "label": values[i % len(values)]} for i in range(12)]
    if writer == "csv":
        path = write_csv(tmp_path / "train.csv", rows)
    else:
        path = _write_jsonl(tmp_path / "train.jsonl", [{**r, "label": str(r["label"])} for r in rows])
    prepared = prepare_data(data_recipe(train=path, validation_split=0.0))
    assert prepared.labels == [str(v) for v in sorted(values)]
    assert _names(prepared, prepared.train) == [str(r["label"]) for r in rows]


def test_regression_labels_become_floats(tmp_path, data_recipe):
    rows = [{"text": f"example {i}", "score": i * 0.5} for i in range(10)]
    path = write_csv(tmp_path / "train.csv", rows)
    prepared = prepare_data(data_recipe("regression", train=path, label_column="score", validation_split=0.0))
    assert prepared.labels is None
    assert prepared.class_counts() == {}
    assert prepared.train[LABEL_FIELD] == [r["score"] for r in rows]


def test_a_class_named_none_survives_csv_like_jsonl(tmp_path, data_recipe):
    rows = [{"text": f"example {i}", "label": ("None", "NA", "some")[i % 3]} for i in range(12)]
    from_jsonl = prepare_data(data_recipe(train=_write_jsonl(tmp_path / "train.jsonl", rows), validation_split=0.0))
    from_csv = prepare_data(data_recipe(train=write_csv(tmp_path / "train.csv", rows), validation_split=0.0))
    assert from_csv.labels == from_jsonl.labels == ["NA", "None", "some"]


# --- oversampling --------------------------------------------------------------------------------------

def test_oversampling_evens_train_and_leaves_validation_alone(tmp_path, data_recipe):
    from tuneforge.recipe import Recipe

    counts = {"a": 30, "b": 12, "c": 6}
    path = write_csv(tmp_path / "train.csv", _rows_by_count(counts))
    plain_recipe = data_recipe(train=path, validation_split=0.25)
    over_recipe = Recipe.model_validate({**plain_recipe.model_dump(), "imbalance": {"oversample": True}})
    plain, over = prepare_data(plain_recipe), prepare_data(over_recipe)

    plain_counts = plain.class_counts()
    assert len(set(plain_counts.values())) > 1  # the input really is imbalanced
    over_counts = over.class_counts()
    assert set(over_counts.values()) == {max(plain_counts.values())}
    assert set(over.train["text"]) == set(plain.train["text"])  # every original row kept, minority rows repeated
    assert over.validation["text"] == plain.validation["text"]
    assert over.validation[LABEL_FIELD] == plain.validation[LABEL_FIELD]
    assert len(over.validation["text"]) == len(set(over.validation["text"]))


def test_oversampling_leaves_a_validation_file_alone(tmp_path, data_recipe):
    from tuneforge.recipe import Recipe

    train = write_csv(tmp_path / "train.csv", _rows_by_count({"a": 20, "b": 5}))
    validation_rows = _rows_by_count({"a": 8, "b": 2})
    validation_rows = [{**r, "text": "held " + r["text"]} for r in validation_rows]
    validation = write_csv(tmp_path / "val.csv", validation_rows)
    recipe = Recipe.model_validate({**data_recipe(train=train, validation=validation).model_dump(),
                                    "imbalance": {"oversample": True}})
    prepared = prepare_data(recipe)
    assert prepared.class_counts() == {"a": 20, "b": 20}
    assert prepared.validation["text"] == [r["text"] for r in validation_rows]
    assert _names(prepared, prepared.validation) == [r["label"] for r in validation_rows]


# --- the datasets cache --------------------------------------------------------------------------------

def _cache_state(dataset: datasets.Dataset) -> list[tuple[str, int, int]]:
    files = [entry["filename"] for entry in dataset.cache_files]
    return [(name, os.stat(name).st_ino, os.stat(name).st_mtime_ns) for name in files]


def test_second_run_reuses_the_cached_label_encoding(tmp_path, data_recipe):
    path = write_csv(tmp_path / "train.csv", make_rows(30, seed=1))
    validation = write_csv(tmp_path / "val.csv", make_rows(9, seed=2))
    recipe = data_recipe(train=path, validation=validation)
    cache = Path(recipe.data.cache_dir)

    first = prepare_data(recipe)
    state = {role: _cache_state(getattr(first, role)) for role in ("train", "validation")}
    for files in state.values():
        assert files, "the encoded split should live in an on-disk cache file"
        assert all(Path(name).is_relative_to(cache) for name, _, _ in files)
        assert all(Path(name).name.startswith("cache-") for name, _, _ in files)  # a map result, not the raw load

    second = prepare_data(recipe)
    for role, files in state.items():
        assert _cache_state(getattr(second, role)) == files, role  # same files, not rewritten
        assert getattr(second, role)._fingerprint == getattr(first, role)._fingerprint
    assert second.train[LABEL_FIELD] == first.train[LABEL_FIELD]


def test_changed_data_is_not_served_from_the_cache(tmp_path, data_recipe):
    path = write_csv(tmp_path / "train.csv", make_rows(30, seed=1))
    recipe = data_recipe(train=path, validation_split=0.0)
    first = prepare_data(recipe)
    write_csv(path, make_rows(30, seed=9))
    second = prepare_data(recipe)
    assert second.train["text"] == [r["text"] for r in make_rows(30, seed=9)]
    assert _cache_state(second.train) != _cache_state(first.train)
