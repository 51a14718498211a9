"""Liger's Triton kernels (RMSNorm, RoPE, SwiGLU/GeGLU, fused linear cross-entropy) on a loaded model.

Liger keeps one patch function per architecture (Llama, Mistral, Qwen2/3, Gemma 1-3, Phi-3, ...) that swaps the
model's norms, rotary embedding and MLP for fused kernels and its forward for one that never materialises the
logits when it gets labels. This module only decides whether to call it and reports what it switched on: the
kernels need Triton and a CUDA GPU, and liger-kernel is an optional extra (`pip install tuneforge[gpu]`).

Liger patches module-level functions of the architecture's Transformers module (its rotary embedding), so the
change reaches every model of that architecture in the process, not only this one.
"""

from __future__ import annotations

import importlib.util
import inspect
from typing import Any

from torch import nn

# What we ask of each patch function, where it accepts the keyword: every kernel, and the fused linear
# cross-entropy in place of Liger's plain cross-entropy (they are exclusive).
KERNELS: tuple[str, ...] = ("rms_norm", "layer_norm", "rope", "swiglu", "geglu")


def liger_available() -> bool:
    """Whether Liger's kernels can be imported (they need Triton, hence a GPU build of PyTorch)."""
    return importlib.util.find_spec("liger_kernel") is not None and importlib.util.find_spec("triton") is not None


def _unwrap(model: nn.Module) -> nn.Module:
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) and hasattr(model, "peft_config") else model


def _device_type(model: nn.Module) -> str:
    parameter = next(model.parameters(), None)
    return parameter.device.type if parameter is not None else "cpu"


def liger_options(patch: Any, fused_linear_cross_entropy: bool) -> dict[str, bool]:
    """The keywords of one Liger patch function we switch on (only those it accepts)."""
    accepted = inspect.signature(patch).parameters
    wanted = dict.fromkeys(KERNELS, True)
    wanted["fused_linear_cross_entropy"] = fused_linear_cross_entropy
    wanted["cross_entropy"] = False
    return {name: value for name, value in wanted.items() if name in accepted}


def apply_liger(model: nn.Module, *, fused_linear_cross_entropy: bool = True) -> list[str]:
    """Switches on Liger's kernels for `model` in place; returns the kernels applied, e.g. ["fused_linear_cross_
    entropy", "rms_norm", "rope", "swiglu"], or [] when liger-kernel is missing, the model is not on a CUDA
    device, or Liger does not know its architecture. A PEFT model's base model is patched (adapters stay).

    With `fused_linear_cross_entropy` the model's own forward computes the loss without logits when it gets
    labels in training mode; leave it off when the loss is computed outside the forward (e.g. with
    `tasks.chunked_loss.lm_loss_without_logits`, which uses the same Liger kernel on CUDA).
    """
    base = _unwrap(model)
    if not liger_available() or _device_type(base) != "cuda":
        return []
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    model_type = getattr(getattr(base, "config", None), "model_type", None)
    patch = MODEL_TYPE_TO_APPLY_LIGER_FN.get(model_type)
    if patch is None:
        return []
    options = liger_options(patch, fused_linear_cross_entropy)
    patch(model=base, **options)
    return sorted(name for name, on in options.items() if on)


def liger_supported(model_type: str) -> bool:
    """Whether Liger has kernels for this Transformers model type (False when liger-kernel is missing)."""
    if not liger_available():
        return False
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    return model_type in MODEL_TYPE_TO_APPLY_LIGER_FN
