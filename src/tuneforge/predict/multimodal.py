"""Prediction from a multimodal run directory: rows with the run's typed columns in, labels or scores out.

`tuneforge.load(run)` returns a `MultimodalPredictor` for multimodal runs (a features section); it reads the
same columns as training (a DataFrame, a list of dicts, or a data file) and transforms them with the run's
stored preprocessing (features.json) and processors (model/).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tuneforge.data import validation
from tuneforge.data.features import EncodedRows, FeatureSpecFile, MultimodalCollator, encode_rows
from tuneforge.errors import DataError, Problem, TuneforgeError
from tuneforge.evaluate.calibration import check_temperature, scaled_probabilities
from tuneforge.kinds import KINDS, MULTIMODAL
from tuneforge.models.multimodal import load_multimodal
from tuneforge.predict import checks
from tuneforge.predict.protocol import LoadRequest
from tuneforge.predict.registry import load, loads
from tuneforge.recipe import Recipe
from tuneforge.runtime import pick_device
from tuneforge.tasks import get_task
from tuneforge.trust import RunCodeTrust

Rows = pd.DataFrame | Sequence[dict[str, Any]]
REQUEST = "request"


def as_frame(rows: Rows, source: str = REQUEST) -> pd.DataFrame:
    """Rows as a table; plain texts are refused with the columns this kind of run needs."""
    if isinstance(rows, pd.DataFrame):  # errors name rows by the index: keep an integer one, else count from 0
        return rows if pd.api.types.is_integer_dtype(rows.index) else rows.reset_index(drop=True)
    if isinstance(rows, str) or (len(rows) and not isinstance(rows[0], dict)):
        raise TuneforgeError("a multimodal run predicts from rows of columns, not plain texts",
                             fix="pass a pandas DataFrame or a list of dicts with the run's feature columns")
    frame = pd.DataFrame.from_records(list(rows))
    frame.index = range(len(frame))
    return frame


class MultimodalPredictor:
    """The multimodal counterpart of `Predictor`: the same attributes and methods, with rows for texts."""

    kind = KINDS[MULTIMODAL]
    tags = None
    multilabels = None
    thresholds = None

    def __init__(self, model: Any, processors: dict[str, Any], spec: FeatureSpecFile, recipe: Recipe,
                 device: torch.device, temperature: float = 1.0) -> None:
        self.model = model.to(device).eval()
        self.tokenizer = processors["text"]
        self.processors = processors
        self.spec = spec
        self.recipe = recipe
        self.device = device
        self.task = get_task(recipe.task)
        self.labels: list[str] | None = model.config_data.labels if recipe.task == "classification" else None
        self.temperature = check_temperature(temperature, "Predictor") if self.labels is not None else 1.0
        self.collator = MultimodalCollator(self.tokenizer, recipe.train.max_length, processors.get("image"),
                                           processors.get("audio"), spec.audio_max_seconds)
        self.separator = self.tokenizer.sep_token or self.tokenizer.eos_token or "|"
        self.run_dir: Path | None = None  # set by its loader
        self.trust = RunCodeTrust(allow_all=True)  # its loader narrows it; a predictor built in code is the caller's

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "auto",
                 trust_run_code: bool | RunCodeTrust = False) -> MultimodalPredictor:
        """The predictor of a multimodal run, loaded like any run (`tuneforge.predict.load`); another kind of run
        is refused."""
        predictor = load(run_dir, device, trust_run_code=trust_run_code)
        if not isinstance(predictor, cls):
            raise TuneforgeError(f"{run_dir} is a {predictor.kind.name} run, not a multimodal one",
                                 fix="load it with tuneforge.load(RUN)")
        return predictor

    @property
    def columns(self) -> list[str]:
        return self.spec.columns.all()

    def encode(self, rows: Rows, source: str = REQUEST, base_dir: Path | None = None) -> EncodedRows:
        """Check and transform rows like training did; relative media paths resolve against `base_dir`."""
        return encode_rows(as_frame(rows, source), self.spec, self.separator, source, base_dir)

    def texts(self, rows: Rows) -> list[str]:
        """The joined text of each row, as the model reads it (for prediction files and error analysis)."""
        from tuneforge.data.features import join_texts

        return join_texts(as_frame(rows), self.spec.columns.text, self.separator)

    def batches(self, encoded: EncodedRows, batch_size: int) -> Any:
        for start in range(0, len(encoded), batch_size):
            items = [encoded.item(i) for i in range(start, min(start + batch_size, len(encoded)))]
            batch = self.collator(items)
            yield {k: v.to(self.device) for k, v in batch.items()}

    @torch.inference_mode()
    def logits_encoded(self, encoded: EncodedRows, batch_size: int = 64) -> np.ndarray:
        outputs = [self.model(**batch).logits.float().cpu().numpy() for batch in self.batches(encoded, batch_size)]
        width = self.model.config_data.num_labels
        return np.concatenate(outputs) if outputs else np.zeros((0, width))

    def logits(self, rows: Rows, pairs: Any = None, batch_size: int = 64, base_dir: Path | None = None
               ) -> np.ndarray:
        _no_pairs(pairs)
        return self.logits_encoded(self.encode(rows, base_dir=base_dir), batch_size)

    def scale_logits(self, logits: np.ndarray) -> np.ndarray:
        if self.labels is None or self.temperature == 1.0:
            return logits
        return np.asarray(logits, dtype=np.float64) / self.temperature

    def predict(self, rows: Rows, pairs: Any = None, batch_size: int = 64, base_dir: Path | None = None
                ) -> list[dict[str, Any]]:
        """One dict per row: `label`, `score` and `probabilities` (classification) or `score` (regression)."""
        return self.task.decode(self.scale_logits(self.logits(rows, pairs, batch_size, base_dir)), self.labels)

    def probabilities(self, rows: Rows, pairs: Any = None, batch_size: int = 64) -> np.ndarray:
        if self.labels is None:
            raise TuneforgeError("probabilities exist for classification runs only; this run is regression",
                                 fix="use predict (or logits) for regression scores")
        return scaled_probabilities(self.logits(rows, pairs, batch_size), self.temperature)


@loads(MULTIMODAL)
def load_multimodal_run(request: LoadRequest) -> MultimodalPredictor:
    """A multimodal run: its stored preprocessing (features.json), model/ (encoders, processors, fusion weights)
    and temperature, each checked before it is read."""
    layout = request.layout
    spec = checks.features(layout.root)
    temperature = checks.calibration(layout) if request.recipe.task == "classification" else 1.0
    checks.multimodal_model(layout.model)
    with checks.loading(layout.model):
        model, processors = load_multimodal(layout.model)
    checks.tokenizer_fits(processors["text"], model.text_encoder.config, layout.model / "text")
    predictor = MultimodalPredictor(model, processors, spec, request.recipe, pick_device(request.device),
                                    temperature)
    predictor.run_dir, predictor.trust = layout.root, request.trust
    return predictor


def _no_pairs(pairs: Any) -> None:
    if pairs is not None:
        raise TuneforgeError("a multimodal run takes no text pairs", fix="list every text column in features.text")


def read_rows(path: str | Path, limit: int | None = None) -> tuple[pd.DataFrame, Path]:
    """A data file as rows for prediction (its index: the row in the file) and its folder, for media paths."""
    from tuneforge.data.multimodal import read_split

    split = read_split(path)
    frame = split.frame if limit is None else split.frame.iloc[:limit]
    return frame, split.base_dir or Path(".")


def predict_file(predictor: MultimodalPredictor, path: str | Path | None, batch_size: int = 64
                 ) -> tuple[list[str], list[dict[str, Any]]]:
    """(joined texts, predictions) for every row of a file."""
    if path is None:
        raise TuneforgeError("a multimodal run predicts from rows with its feature columns, not lines of text",
                             fix=f"pass --data FILE with the columns {', '.join(predictor.columns)}")
    frame, base_dir = read_rows(path)
    encoded = encode_rows(frame, predictor.spec, predictor.separator, str(path), base_dir)
    logits = predictor.logits_encoded(encoded, batch_size)
    return encoded.texts, predictor.task.decode(predictor.scale_logits(logits), predictor.labels)


def score_multimodal_file(predictor: MultimodalPredictor, path: str | Path, batch_size: int = 64
                          ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`tuneforge evaluate` for a multimodal run: the same metrics as training's test split, per-row rows."""
    from tuneforge.evaluate.scoring import analyse_predictions

    recipe = predictor.recipe
    column = recipe.data.label_column
    frame, base_dir = read_rows(path)
    if column not in frame.columns:
        raise DataError([Problem(where=str(path), message=f"label column '{column}' is missing (the file has: "
                                 f"{', '.join(map(str, frame.columns))})", fix="add the label column")])
    raw = frame[column].tolist()
    problems = validation.check_labels_present(str(path), column, raw)
    if predictor.labels is not None:
        problems += validation.check_unseen_labels(str(path), column, raw, set(predictor.labels))
    else:
        problems += validation.check_regression_targets(str(path), column, raw)
    if problems:
        raise DataError(problems)
    encoded = encode_rows(frame, predictor.spec, predictor.separator, str(path), base_dir)
    logits = predictor.logits_encoded(encoded, batch_size)
    if predictor.labels is not None:
        index = {name: i for i, name in enumerate(predictor.labels)}
        truth = np.asarray([index[validation.label_key(v)] for v in raw])
    else:
        truth = np.asarray([float(v) for v in raw])
    metrics = analyse_predictions(recipe, predictor.labels, logits, truth, encoded.texts, None,
                                  predictor.temperature)
    metrics["plugins"] = metrics.get("plugins", {})
    rows = predictor.task.decode(predictor.scale_logits(logits), predictor.labels)
    return metrics, [{"text": t, "true": validation.label_key(y) if predictor.labels else float(y), **r}
                     for t, y, r in zip(encoded.texts, raw, rows, strict=True)]
