"""Sentence embeddings from a fine-tuned run's own encoder: the space drift and diversity are measured in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tuneforge.errors import TuneforgeError


@torch.inference_mode()
def sentence_embeddings(predictor: Any, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Mean of the last hidden layer over each text's real tokens (padding masked out), shaped (texts, hidden).

    Mean pooling is what sentence encoders such as all-MiniLM are trained for, and unlike the classifier's logits
    it still shows a shift in inputs the model maps to the same class."""
    if not isinstance(getattr(predictor, "model", None), torch.nn.Module):
        raise TuneforgeError("sentence embeddings need the PyTorch model of the run (the ONNX graph returns "
                             "logits only)", fix="load the run with the default backend (torch)")
    texts = [str(t) for t in texts]
    rules = getattr(predictor, "rules", None)
    if rules is not None:  # the domain preprocessing the model was trained with, as in Predictor.logits
        texts = rules.apply(texts)
    if not texts:
        return np.zeros((0, predictor.model.config.hidden_size), dtype=np.float32)
    chunks = []
    for start in range(0, len(texts), batch_size):
        encoded = predictor.tokenizer(texts[start:start + batch_size], truncation=True, padding=True,
                                      max_length=predictor.recipe.train.max_length,
                                      return_tensors="pt").to(predictor.device)
        hidden = predictor.model(**encoded, output_hidden_states=True).hidden_states[-1].float()
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        chunks.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)).cpu().numpy())
    return np.concatenate(chunks)
