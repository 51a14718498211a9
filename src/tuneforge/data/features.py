"""Typed input features of a multimodal run: which columns are what, and how each is turned into numbers.

Numeric and categorical preprocessing is fitted on the training split only and stored as features.json in the
run directory, so prediction and serving transform new rows exactly as training did. Tables are pandas frames
whose index is the row's position in its file, so every error can name the file, the row and the column.
Images and audio are read here from local files; resizing/normalising and log-mel features are the encoders'
own Transformers processors (models/multimodal.py), saved with the model.
"""

from __future__ import annotations

import json
import math
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuneforge import artifacts
from tuneforge.data.loading import row_label
from tuneforge.errors import DataError, Problem, TuneforgeError
from tuneforge.recipe import Recipe

FEATURES_FILE = "features.json"
UNKNOWN = "<unknown>"  # index 0 of every categorical vocabulary: values not seen in training, and blanks
MAX_LISTED = 5


@dataclass(frozen=True)
class FeatureColumns:
    """The columns of each input type, in the order the model reads them."""

    text: list[str]
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    image: list[str] = field(default_factory=list)
    audio: list[str] = field(default_factory=list)

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> FeatureColumns:
        spec = recipe.features
        return cls(text=list(spec.text) or [recipe.data.text_column], numeric=list(spec.numeric),
                   categorical=list(spec.categorical), image=list(spec.image), audio=list(spec.audio))

    def all(self) -> list[str]:
        return [*self.text, *self.numeric, *self.categorical, *self.image, *self.audio]


def is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _where(source: str, column: str) -> str:
    return f"{source}: column '{column}'"


def _listed(source: str, indices: list[int]) -> str:
    shown = ", ".join(row_label(source, int(i)) for i in indices[:MAX_LISTED])
    return f"{shown} and {len(indices) - MAX_LISTED} more" if len(indices) > MAX_LISTED else shown


def check_columns(frame: pd.DataFrame, columns: list[str], source: str) -> None:
    """Every feature column must exist; one error lists all that are missing, with the columns present."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError([Problem(where=source, message=f"feature column '{c}' is missing (the data has: "
                                 f"{', '.join(map(str, frame.columns))})",
                                 fix="add the column, or fix the features section of the recipe") for c in missing])


def join_texts(frame: pd.DataFrame, columns: list[str], separator: str) -> list[str]:
    """Several text columns become one input, joined by the tokenizer's separator; blank cells are left out."""
    rows = frame[columns].itertuples(index=False, name=None)
    return [f" {separator} ".join(str(v).strip() for v in row if not is_blank(v)) for row in rows]


def numeric_values(frame: pd.DataFrame, column: str, source: str) -> np.ndarray:
    """A column as floats with NaN for blanks; text that is not a number is an error naming its rows."""
    values = np.full(len(frame), np.nan, dtype=np.float64)
    bad: list[int] = []
    for position, (index, value) in enumerate(frame[column].items()):
        if is_blank(value):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            bad.append(index)
            continue
        if math.isinf(number):
            bad.append(index)
        else:
            values[position] = number
    if bad:
        raise DataError([Problem(where=_where(source, column), message=f"{len(bad)} value(s) that are not numbers "
                                 f"at {_listed(source, bad)}",
                                 fix="write plain numbers (blank cells are allowed: they are imputed), or list the "
                                     "column under features.categorical")])
    return values


def category_key(value: Any) -> str:
    """Categories compare as text, so 3, 3.0 and '3' from different file formats agree."""
    if is_blank(value):
        return UNKNOWN
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


@dataclass
class NumericScaler:
    """Median imputation (with a missing-value indicator) and standard scaling of one column."""

    column: str
    median: float
    mean: float
    std: float


@dataclass
class TabularPreprocessor:
    """The fitted numeric scalers and categorical vocabularies; `transform` is what the model sees."""

    numeric: list[NumericScaler] = field(default_factory=list)
    vocabularies: dict[str, list[str]] = field(default_factory=dict)  # column -> [UNKNOWN, value, ...]

    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: FeatureColumns, source: str) -> TabularPreprocessor:
        check_columns(frame, columns.numeric + columns.categorical, source)
        scalers = []
        for column in columns.numeric:
            values = numeric_values(frame, column, source)
            present = values[~np.isnan(values)]
            if not len(present):
                raise DataError([Problem(where=_where(source, column), message="every value is blank",
                                         fix="fill in the column, or remove it from features.numeric")])
            median = float(np.median(present))
            filled = np.where(np.isnan(values), median, values)
            std = float(filled.std())
            scalers.append(NumericScaler(column, median, float(filled.mean()), std if std > 1e-12 else 1.0))
        vocabularies = {}
        for column in columns.categorical:
            seen = sorted({category_key(v) for v in frame[column]} - {UNKNOWN})
            vocabularies[column] = [UNKNOWN, *seen]
        return cls(scalers, vocabularies)

    @property
    def numeric_width(self) -> int:
        return 2 * len(self.numeric)  # a scaled value and a missing indicator per column

    def vocabulary_sizes(self) -> list[int]:
        return [len(vocabulary) for vocabulary in self.vocabularies.values()]

    def transform_numeric(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        check_columns(frame, [s.column for s in self.numeric], source)
        out = np.zeros((len(frame), self.numeric_width), dtype=np.float32)
        for i, scaler in enumerate(self.numeric):
            values = numeric_values(frame, scaler.column, source)
            missing = np.isnan(values)
            out[:, 2 * i] = (np.where(missing, scaler.median, values) - scaler.mean) / scaler.std
            out[:, 2 * i + 1] = missing
        return out

    def transform_categorical(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        check_columns(frame, list(self.vocabularies), source)
        out = np.zeros((len(frame), len(self.vocabularies)), dtype=np.int64)
        for i, (column, vocabulary) in enumerate(self.vocabularies.items()):
            index = {value: position for position, value in enumerate(vocabulary)}
            out[:, i] = [index.get(category_key(v), 0) for v in frame[column]]
        return out

    def baseline_numeric(self, rows: int) -> np.ndarray:
        """The numeric input of an average training row (scaled value 0, nothing missing), for ablation."""
        return np.zeros((rows, self.numeric_width), dtype=np.float32)


@dataclass
class FeatureSpecFile:
    """features.json: the columns of each type and the fitted tabular preprocessing."""

    columns: FeatureColumns
    tabular: TabularPreprocessor
    audio_max_seconds: float = 10.0

    def to_dict(self) -> dict[str, Any]:
        return {"columns": asdict(self.columns),
                "numeric": [asdict(s) for s in self.tabular.numeric],
                "categorical": self.tabular.vocabularies,
                "audio_max_seconds": self.audio_max_seconds}

    def save(self, path: Path) -> None:
        artifacts.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> FeatureSpecFile:
        if not path.is_file():
            raise TuneforgeError(f"{path} is missing: this multimodal run has no stored feature preprocessing",
                                 fix="train the run again; features.json is written by training")
        data = json.loads(path.read_text(encoding="utf-8"))
        tabular = TabularPreprocessor([NumericScaler(**s) for s in data["numeric"]], dict(data["categorical"]))
        return cls(FeatureColumns(**data["columns"]), tabular, float(data.get("audio_max_seconds", 10.0)))


# --- media files -------------------------------------------------------------------------------------------

def media_paths(frame: pd.DataFrame, column: str, source: str, base_dir: Path | None, kind: str) -> list[Path]:
    """Absolute paths of a column of image/audio files; relative ones are relative to the data file's folder.

    A blank cell or a file that does not exist is an error naming its rows.
    """
    paths: list[Path] = []
    blank: list[int] = []
    absent: list[tuple[int, str]] = []
    for index, value in frame[column].items():
        if is_blank(value):
            blank.append(index)
            paths.append(Path())
            continue
        text = str(value).strip()
        if text.startswith(("http://", "https://")):
            absent.append((index, text))
            paths.append(Path())
            continue
        path = Path(text).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            absent.append((index, text))
        paths.append(path)
    problems = []
    if blank:
        problems.append(Problem(where=_where(source, column), message=f"{len(blank)} empty {kind} path(s) at "
                                f"{_listed(source, blank)}", fix=f"give every row a {kind} file, or drop the rows"))
    if absent:
        shown = "; ".join(f"{row_label(source, int(i))}: {p}" for i, p in absent[:MAX_LISTED])
        problems.append(Problem(where=_where(source, column), message=f"{len(absent)} {kind} file(s) not found "
                                f"({shown})", fix=f"{kind} paths must name local files (relative paths are relative "
                                "to the data file's folder); download URLs first"))
    if problems:
        raise DataError(problems)
    return paths


def load_image(path: Path) -> Any:
    """An RGB PIL image; an unreadable file is an error naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as error:
        raise DataError([Problem(where=str(path), message=f"not a readable image ({error})",
                                 fix="replace the file with a PNG or JPEG image")]) from None


def load_audio(path: Path, sampling_rate: int, max_seconds: float) -> np.ndarray:
    """Mono float32 samples at `sampling_rate`, at most `max_seconds` long.

    WAV is read with the standard library (no audio backend needed) and resampled with a polyphase filter.
    """
    from scipy.signal import resample_poly

    try:
        with wave.open(str(path), "rb") as stream:
            channels, width, rate = stream.getnchannels(), stream.getsampwidth(), stream.getframerate()
            raw = stream.readframes(stream.getnframes())
    except (wave.Error, EOFError, OSError) as error:
        raise DataError([Problem(where=str(path), message=f"not a readable WAV file ({error})",
                                 fix="convert it to 16-bit PCM WAV (e.g. `sox in.mp3 -b 16 out.wav`)")]) from None
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width in (2, 4):
        dtype = np.int16 if width == 2 else np.int32
        samples = np.frombuffer(raw, dtype=dtype).astype(np.float32) / float(np.iinfo(dtype).max)
    else:
        raise DataError([Problem(where=str(path), message=f"{8 * width}-bit WAV samples are not supported",
                                 fix="convert it to 16-bit PCM WAV (e.g. `sox in.wav -b 16 out.wav`)")])
    samples = samples.reshape(-1, channels).mean(axis=1) if channels > 1 else samples
    if rate != sampling_rate and len(samples):
        divisor = math.gcd(int(rate), int(sampling_rate))
        samples = resample_poly(samples, sampling_rate // divisor, rate // divisor).astype(np.float32)
    return samples[: int(max_seconds * sampling_rate)]


# --- from rows to model inputs ----------------------------------------------------------------------------

@dataclass
class EncodedRows:
    """One split (or one request) ready for batching: text, tabular arrays and media file paths per row."""

    texts: list[str]
    numeric: np.ndarray
    categorical: np.ndarray
    images: list[list[Path]]
    audio: list[list[Path]]
    labels: list[Any] | None = None
    text_vectors: np.ndarray | None = None  # pooled text states, when a frozen text encoder computed them once

    def __len__(self) -> int:
        return len(self.texts)

    def item(self, index: int) -> dict[str, Any]:
        item = {"text": self.texts[index], "numeric": self.numeric[index], "categorical": self.categorical[index],
                "images": self.images[index], "audio": self.audio[index]}
        if self.text_vectors is not None:
            item["text_vector"] = self.text_vectors[index]
        if self.labels is not None:
            item["labels"] = self.labels[index]
        return item


def encode_rows(frame: pd.DataFrame, spec: FeatureSpecFile, separator: str, source: str,
                base_dir: Path | None, labels: list[Any] | None = None) -> EncodedRows:
    """Check and transform a frame with the run's columns; raises `DataError` naming file, rows and columns."""
    columns = spec.columns
    check_columns(frame, columns.all(), source)
    images = [media_paths(frame, c, source, base_dir, "image") for c in columns.image]
    audio = [media_paths(frame, c, source, base_dir, "audio") for c in columns.audio]
    return EncodedRows(
        texts=join_texts(frame, columns.text, separator),
        numeric=spec.tabular.transform_numeric(frame, source),
        categorical=spec.tabular.transform_categorical(frame, source),
        images=[list(paths) for paths in zip(*images, strict=True)] if images else [[] for _ in range(len(frame))],
        audio=[list(paths) for paths in zip(*audio, strict=True)] if audio else [[] for _ in range(len(frame))],
        labels=labels,
    )


class MultimodalCollator:
    """Builds a batch: padded text tokens, numeric/categorical tensors, pixel values per image column and
    audio features per audio column, each from the encoder's own Transformers processor."""

    def __init__(self, tokenizer: Any, max_length: int, image_processor: Any = None, audio_processor: Any = None,
                 audio_max_seconds: float = 10.0, regression: bool = False) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.image_processor = image_processor
        self.audio_processor = audio_processor
        self.audio_max_seconds = audio_max_seconds
        self.regression = regression

    def audio_features(self, waves: list[np.ndarray]) -> Any:
        processor = self.audio_processor
        rate = int(processor.sampling_rate)
        waves = [w if len(w) else np.zeros(rate // 10, dtype=np.float32) for w in waves]
        output = processor(waves, sampling_rate=rate, return_tensors="pt")
        return output[processor.model_input_names[0]]

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        if "text_vector" in items[0]:  # a frozen text encoder's output, computed once before training
            batch = {"text_vectors": torch.as_tensor(np.stack([item["text_vector"] for item in items]))}
        else:
            batch = dict(self.tokenizer([item["text"] for item in items], truncation=True,
                                        max_length=self.max_length, padding=True, return_tensors="pt"))
        batch["numeric"] = torch.as_tensor(np.stack([item["numeric"] for item in items]), dtype=torch.float32)
        batch["categorical"] = torch.as_tensor(np.stack([item["categorical"] for item in items]), dtype=torch.long)
        columns = len(items[0]["images"])
        if columns:
            pictures = [load_image(item["images"][c]) for item in items for c in range(columns)]
            pixels = self.image_processor(images=pictures, return_tensors="pt")["pixel_values"]
            batch["pixel_values"] = pixels.view(len(items), columns, *pixels.shape[1:])
        columns = len(items[0]["audio"])
        if columns:
            rate = int(self.audio_processor.sampling_rate)
            waves = [load_audio(item["audio"][c], rate, self.audio_max_seconds) for item in items
                     for c in range(columns)]
            features = self.audio_features(waves)
            batch["audio_values"] = features.view(len(items), columns, *features.shape[1:])
        if "labels" in items[0]:
            dtype = torch.float32 if self.regression else torch.long
            batch["labels"] = torch.as_tensor([item["labels"] for item in items], dtype=dtype)
        return batch
