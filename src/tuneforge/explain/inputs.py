"""What every explanation method needs from a Predictor: the inputs the model sees, and the class to explain.

Kept in one place so that all methods tokenise, truncate and pick the target class the same way; otherwise
their scores could not be compared token by token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuneforge.errors import TuneforgeError


@dataclass(frozen=True)
class Target:
    """The class an explanation is about, and how probable the model finds it for the text."""

    index: int
    label: str
    probability: float


def require_classification(predictor: Any, method: str) -> list[str]:
    """Attribution methods explain a class probability, so they need a classification run."""
    if predictor.labels is None:
        raise TuneforgeError(f"'{method}' explains class probabilities, but this is a {predictor.recipe.task} run",
                             fix="use --method attention for regression runs")
    return list(predictor.labels)


def encode(predictor: Any, text: str, pair: str | None = None) -> Any:
    """The encoding the model reads at prediction time: same truncation as `Predictor.logits`."""
    return predictor.tokenizer(text, pair, truncation=True, max_length=predictor.recipe.train.max_length,
                               return_tensors="pt").to(predictor.device)


def special_mask(tokenizer: Any, input_ids: Sequence[int]) -> list[bool]:
    """True where a token is [CLS], [SEP], padding or the like: they carry no words to explain.

    [UNK] stands for real words the vocabulary lacks, so it counts as content.
    """
    special = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    return [int(token) in special for token in input_ids]


def visible_text(predictor: Any, text: str, pair: str | None = None) -> str:
    """The part of `text` the model reads; perturbing words past the truncation point would only add noise."""
    tokenizer = predictor.tokenizer
    if pair is not None or not getattr(tokenizer, "is_fast", False):
        return text
    encoded = tokenizer(text, truncation=True, max_length=predictor.recipe.train.max_length,
                        return_offsets_mapping=True)
    ends = [end for (start, end) in encoded["offset_mapping"] if end > start]
    return text[:max(ends)] if ends else text


def temperature(predictor: Any) -> float:
    """The run's softmax temperature (calibration.json), so explanations explain the probabilities that
    `Predictor.predict` reports; 1.0 for predictors without one."""
    value = getattr(predictor, "temperature", 1.0)
    return float(value) if value else 1.0


def probability_function(predictor: Any, pair: str | None = None) -> Callable[[Sequence[str]], np.ndarray]:
    """Texts → class probabilities, the black box that SHAP and LIME perturb (the pair, if any, stays fixed)."""
    scale = temperature(predictor)

    def probabilities(texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        pairs = [pair] * len(texts) if pair is not None else None
        logits = np.asarray(predictor.logits(texts, pairs), dtype=np.float64) / scale
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    return probabilities


def resolve_target(predictor: Any, text: str, pair: str | None, label: str | None, method: str) -> Target:
    """The named class, or the predicted one when no label is given."""
    labels = require_classification(predictor, method)
    probabilities = probability_function(predictor, pair)([text])[0]
    if label is None:
        index = int(np.argmax(probabilities))
    elif label in labels:
        index = labels.index(label)
    else:
        raise TuneforgeError(f"label '{label}' is not one of this run's classes",
                             fix=f"pass one of: {', '.join(labels)}")
    return Target(index, labels[index], float(probabilities[index]))
