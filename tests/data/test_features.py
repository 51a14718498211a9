"""Preprocessing of typed feature columns: fitted on training rows, stored, applied identically, clear errors."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tuneforge.data.features import (
    UNKNOWN,
    FeatureColumns,
    FeatureSpecFile,
    MultimodalCollator,
    TabularPreprocessor,
    encode_rows,
    join_texts,
    load_audio,
)
from tuneforge.errors import DataError, RecipeError
from tuneforge.recipe import recipe_from_dict

COLUMNS = FeatureColumns(text=["title", "body"], numeric=["age", "rating"], categorical=["dept"])


def train_frame() -> pd.DataFrame:
    return pd.DataFrame({"title": ["Nice", None, "Bad"], "body": ["fits", "soft", ""],
                         "age": [20.0, None, 40.0], "rating": ["5", "3", "1"], "dept": ["Tops", "Dresses", "Tops"]})


def test_numeric_median_imputation_indicator_and_scaling() -> None:
    tabular = TabularPreprocessor.fit(train_frame(), COLUMNS, "train.csv")
    age = tabular.numeric[0]
    assert (age.median, age.mean) == (30.0, 30.0)  # the blank is imputed with the median before the mean
    assert age.std == pytest.approx(np.std([20.0, 30.0, 40.0]))
    values = tabular.transform_numeric(pd.DataFrame({"age": [30.0, None, 50.0], "rating": [3, 3, 3]}), "new.csv")
    assert values[:, 0] == pytest.approx([0.0, 0.0, 20.0 / np.std([20.0, 30.0, 40.0])])
    assert values[:, 1].tolist() == [0.0, 1.0, 0.0]  # the missing indicator
    assert values[:, 2] == pytest.approx([0.0, 0.0, 0.0])  # rating: mean 3 of "5", "3", "1" read as numbers


def test_categorical_vocabulary_from_training_rows_with_unknown_bucket() -> None:
    tabular = TabularPreprocessor.fit(train_frame(), COLUMNS, "train.csv")
    assert tabular.vocabularies["dept"] == [UNKNOWN, "Dresses", "Tops"]
    codes = tabular.transform_categorical(pd.DataFrame({"dept": ["Tops", "Jackets", None, "Dresses"]}), "x.csv")
    assert codes[:, 0].tolist() == [2, 0, 0, 1]


def test_features_json_round_trip_transforms_identically(tmp_path: Path) -> None:
    spec = FeatureSpecFile(COLUMNS, TabularPreprocessor.fit(train_frame(), COLUMNS, "train.csv"), 3.0)
    spec.save(tmp_path / "features.json")
    loaded = FeatureSpecFile.load(tmp_path / "features.json")
    frame = pd.DataFrame({"title": ["a"], "body": ["b"], "age": [25], "rating": [None], "dept": ["Tops"]})
    first = encode_rows(frame, spec, "[SEP]", "x.csv", None)
    second = encode_rows(frame, loaded, "[SEP]", "x.csv", None)
    assert np.array_equal(first.numeric, second.numeric) and np.array_equal(first.categorical, second.categorical)
    assert loaded.columns == COLUMNS and loaded.audio_max_seconds == 3.0


def test_text_columns_are_joined_without_blank_cells() -> None:
    assert join_texts(train_frame(), ["title", "body"], "[SEP]") == ["Nice [SEP] fits", "soft", "Bad"]


def test_non_numeric_value_names_file_row_and_column() -> None:
    frame = pd.DataFrame({"age": [20, "old", 30], "rating": [1, 2, 3], "dept": ["a", "b", "c"]})
    with pytest.raises(DataError) as error:
        TabularPreprocessor.fit(frame, COLUMNS, "train.csv")
    message = str(error.value)
    assert "train.csv: column 'age'" in message and "row 2 (line 3)" in message and "not numbers" in message


def test_missing_feature_column_lists_the_columns_present() -> None:
    frame = pd.DataFrame({"age": [1], "dept": ["a"]})
    with pytest.raises(DataError, match="feature column 'rating' is missing .*the data has: age, dept"):
        TabularPreprocessor.fit(frame, COLUMNS, "train.csv")


def test_missing_image_file_names_row_and_path(tmp_path: Path) -> None:
    columns = FeatureColumns(text=["text"], image=["photo"])
    spec = FeatureSpecFile(columns, TabularPreprocessor())
    (tmp_path / "there.png").write_bytes(b"")
    frame = pd.DataFrame({"text": ["a", "b"], "photo": ["there.png", "gone.png"]})
    with pytest.raises(DataError) as error:
        encode_rows(frame, spec, "[SEP]", str(tmp_path / "data.csv"), tmp_path)
    assert "column 'photo'" in str(error.value) and "row 2 (line 3): gone.png" in str(error.value)


def _write_wav(path: Path, rate: int, samples: np.ndarray, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as stream:
        stream.setnchannels(channels)
        stream.setsampwidth(2)
        stream.setframerate(rate)
        stream.writeframes((samples * 32767).astype("<i2").tobytes())


def test_audio_is_mono_resampled_and_cut(tmp_path: Path) -> None:
    t = np.arange(8000) / 8000
    tone = 0.5 * np.sin(2 * np.pi * 100 * t)
    _write_wav(tmp_path / "stereo.wav", 8000, np.stack([tone, tone], axis=1).reshape(-1), channels=2)
    samples = load_audio(tmp_path / "stereo.wav", 16000, max_seconds=0.5)
    assert samples.shape == (8000,)  # 1 s at 8 kHz -> 16 kHz, cut to 0.5 s
    assert np.abs(samples).max() == pytest.approx(0.5, abs=0.02)
    (tmp_path / "broken.wav").write_bytes(b"not a wav")
    with pytest.raises(DataError, match="broken.wav: not a readable WAV file"):
        load_audio(tmp_path / "broken.wav", 16000, 1.0)


def test_collator_builds_padded_text_and_tabular_tensors(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    spec = FeatureSpecFile(COLUMNS, TabularPreprocessor.fit(train_frame(), COLUMNS, "train.csv"))
    encoded = encode_rows(train_frame(), spec, "[SEP]", "train.csv", None, labels=[0, 1, 0])
    batch = MultimodalCollator(AutoTokenizer.from_pretrained(tiny_model), 16)([encoded.item(i) for i in range(3)])
    assert batch["numeric"].shape == (3, 4) and batch["categorical"].tolist() == [[2], [1], [2]]
    assert batch["input_ids"].shape[0] == 3 and batch["labels"].tolist() == [0, 1, 0]


def test_recipe_features_section_is_validated() -> None:
    recipe = recipe_from_dict({"features": {"text": ["a", "b"], "numeric": ["n"], "combiner": "late"}})
    assert recipe.features.enabled and recipe.features.combiner == "late"
    assert not recipe_from_dict({}).features.enabled  # absent: the text-only path
    with pytest.raises(RecipeError, match="features.image_encoder is empty"):
        recipe_from_dict({"features": {"image": ["photo"]}})
    with pytest.raises(RecipeError, match="more than one feature type"):
        recipe_from_dict({"features": {"numeric": ["x"], "categorical": ["x"]}})
    with pytest.raises(RecipeError, match="classification and regression"):
        recipe_from_dict({"task": "multilabel", "features": {"numeric": ["x"]}})
    with pytest.raises(RecipeError, match="combiner"):
        recipe_from_dict({"features": {"numeric": ["x"], "combiner": "sum"}})
