"""How much each modality of a multimodal run contributes to its predictions, by ablation.

A modality is replaced by a neutral input — empty text, numbers at their training mean (scaled 0, none
missing), categories in the unknown bucket, a mid-grey image (all-zero normalised pixels), one second of
silence — and the change in the prediction is measured: the predicted class's probability for
classification, the predicted score for regression. Token attribution methods (IG, SHAP, LIME) explain words;
this answers the question a multimodal model raises first: did the image, the numbers or the text decide?
The modality vectors of the real and the neutral rows are computed once per batch and swapped one modality
at a time through the fusion layers, so the cost is two forward passes per batch, whatever the modalities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuneforge import artifacts
from tuneforge.data.features import EncodedRows, encode_rows
from tuneforge.data.multimodal import read_split
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.calibration import scaled_probabilities

MODALITIES_FILE = "modalities.json"


@dataclass
class ModalityExplanation:
    """One row: its prediction and, per modality, how much the prediction drops when that modality is removed."""

    text: str
    prediction: dict[str, Any]
    contributions: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "prediction": self.prediction, "contributions": self.contributions}


def _neutral_batch(batch: dict[str, torch.Tensor], collator: Any) -> dict[str, torch.Tensor]:
    rows = batch["input_ids"].shape[0]
    neutral = dict(collator.tokenizer([""] * rows, return_tensors="pt", padding=True))
    neutral = {k: v.to(batch["input_ids"].device) for k, v in neutral.items()}
    neutral["numeric"] = torch.zeros_like(batch["numeric"])
    neutral["categorical"] = torch.zeros_like(batch["categorical"])
    if "pixel_values" in batch:
        neutral["pixel_values"] = torch.zeros_like(batch["pixel_values"])
    if "audio_values" in batch:
        rate = int(collator.audio_processor.sampling_rate)
        silence = collator.audio_features([np.zeros(rate, dtype=np.float32)]).to(batch["audio_values"].device)
        neutral["audio_values"] = silence.unsqueeze(0).expand_as(batch["audio_values"]).contiguous()
    return neutral


def _outputs(logits: torch.Tensor, predictor: Any) -> np.ndarray:
    values = logits.float().cpu().numpy()
    if predictor.labels is None:
        return values.reshape(len(values), -1)[:, 0:1]
    return scaled_probabilities(values, predictor.temperature)


@torch.inference_mode()
def explain_encoded(predictor: Any, encoded: EncodedRows, batch_size: int = 32) -> list[ModalityExplanation]:
    """Per-row modality contributions (prediction with the modality minus without it)."""
    model = predictor.model
    names = model.config_data.modalities()
    results: list[ModalityExplanation] = []
    start = 0
    for batch in predictor.batches(encoded, batch_size):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        vectors = model.modality_vectors(**inputs)
        neutral = model.modality_vectors(**_neutral_batch(inputs, predictor.collator))
        full = _outputs(model.fuse(vectors), predictor)
        chosen = full.argmax(axis=1) if predictor.labels is not None else np.zeros(len(full), dtype=int)
        rows = np.arange(len(full))
        drops = {}
        for position, name in enumerate(names):
            swapped = [neutral[i] if i == position else v for i, v in enumerate(vectors)]
            ablated = _outputs(model.fuse(swapped), predictor)
            drops[name] = full[rows, chosen] - ablated[rows, chosen]
        decoded = predictor.task.decode(predictor.scale_logits(model.fuse(vectors).float().cpu().numpy()),
                                        predictor.labels)
        for offset in rows:
            results.append(ModalityExplanation(encoded.texts[start + offset], decoded[offset],
                                               {name: float(drops[name][offset]) for name in names}))
        start += len(full)
    return results


def summarise(results: list[ModalityExplanation]) -> dict[str, dict[str, float]]:
    """Per modality: mean signed contribution, mean absolute contribution and its share of the total."""
    if not results:
        return {}
    names = list(results[0].contributions)
    table = np.asarray([[r.contributions[n] for n in names] for r in results])
    magnitude = np.abs(table).mean(axis=0)
    total = float(magnitude.sum()) or 1.0
    return {name: {"mean": float(table[:, i].mean()), "mean_abs": float(magnitude[i]),
                   "share": float(magnitude[i] / total)} for i, name in enumerate(names)}


def write_modalities(results: list[ModalityExplanation], folder: Path, source: str, measure: str) -> Path:
    path = folder / MODALITIES_FILE
    artifacts.write_json(path, {"source": source, "method": "ablation", "measure": measure,
                                "summary": summarise(results), "rows": [r.to_dict() for r in results]})
    return path


def measure_of(predictor: Any) -> str:
    return ("drop in the predicted class's probability when the modality is replaced by its neutral input"
            if predictor.labels is not None else "drop in the predicted score when the modality is replaced by "
            "its neutral input")


def explain_held_out(predictor: Any, split: Any, folder: Path) -> Path:
    """Contributions on a held-out split of a trained run's predictor, written to folder/modalities.json."""
    encoded = encode_rows(split.frame, predictor.spec, predictor.separator, split.source, split.base_dir)
    results = explain_encoded(predictor, encoded)
    return write_modalities(results, folder, f"{split.source} (held-out split)", measure_of(predictor))


def explain_file(predictor: Any, path: Path | None, limit: int, folder: Path
                 ) -> tuple[list[ModalityExplanation], Path]:
    """`tuneforge explain` on a multimodal run: the first `limit` rows of a file, into folder/modalities.json."""
    if path is None:
        raise TuneforgeError("a multimodal run is explained from rows with its feature columns, not --text",
                             fix=f"pass --data FILE with the columns {', '.join(predictor.columns)}")
    split = read_split(path)
    frame, base_dir = split.frame.iloc[:limit], split.base_dir
    if not len(frame):
        raise TuneforgeError(f"{path} has no rows to explain", fix="pass a file with at least one row")
    encoded = encode_rows(frame, predictor.spec, predictor.separator, str(path), base_dir)
    results = explain_encoded(predictor, encoded)
    return results, write_modalities(results, folder, str(Path(path).resolve()), measure_of(predictor))


def modality_table(results: list[ModalityExplanation]) -> Any:
    """A rich table: per modality, its mean contribution and share, then the rows' predictions."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Modality contributions (ablation: prediction with the modality minus without it)")
    table.add_column("modality")
    table.add_column("mean", justify="right")
    table.add_column("mean |.|", justify="right")
    table.add_column("share", justify="right")
    for name, row in summarise(results).items():
        table.add_row(escape(name), f"{row['mean']:+.3f}", f"{row['mean_abs']:.3f}", f"{row['share']:.0%}")
    return table
