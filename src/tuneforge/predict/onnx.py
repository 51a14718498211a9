"""The ONNX backend: a text, multilabel or token-classification run scored by ONNX Runtime on the CPU from its
onnx/ export (`tuneforge export RUN --format onnx`), behind the same `Predictor` (labels, temperature,
thresholds and tagging unchanged)."""

from __future__ import annotations

from typing import Any

from tuneforge.models.onnx import load_onnx_model, onnx_dir
from tuneforge.predict import checks
from tuneforge.predict.protocol import LoadRequest


def load_onnx(request: LoadRequest) -> tuple[Any, Any]:
    """The exported model and the tokenizer saved with it, checked first; a run without an export gets the
    command that makes one."""
    checks.onnx_export(request.root)
    with checks.loading(onnx_dir(request.root)):
        return load_onnx_model(request.root)
