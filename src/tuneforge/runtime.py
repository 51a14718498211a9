"""Where and how tensors run: the device, the precision, and what this hardware does fast.

The floor of the package: training, prediction and serving all ask here, so `auto` means the same everywhere.
A CPU with AVX-512 BF16 or AMX runs bf16 matrix products through oneDNN at about twice its fp32 rate; mixed
precision (bf16 autocast, fp32 master weights) then trains and predicts faster at the same quality. Elsewhere
bf16 on the CPU is emulated and slower than fp32, so it is refused there.
"""

from __future__ import annotations

import functools

import torch

from tuneforge.errors import TuneforgeError


def pick_device(preference: str = "auto") -> torch.device:
    """`auto` is the GPU when one is visible, else the CPU; `cuda` without a GPU is an error, not a fallback."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise TuneforgeError("device 'cuda' was asked for but no GPU is visible",
                                 fix="use --device cpu (or train.device: cpu), or check the CUDA driver")
        return torch.device("cuda")
    return torch.device("cpu")


@functools.cache
def cpu_bf16_native() -> bool:
    """True when oneDNN has native bf16 kernels for this CPU (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run trains in: `auto` is bf16 (fp16 on GPUs without bf16) on a GPU and fp32 on a CPU."""
    if precision != "auto":
        if precision == "bf16" and device.type == "cpu" and cpu_bf16_native():
            return precision  # bf16 autocast on a CPU with native bf16
        if precision in ("bf16", "fp16") and device.type != "cuda":
            raise TuneforgeError(f"train.precision '{precision}' needs a GPU (or, for bf16, a CPU with AVX-512 BF16 "
                                 "or AMX); this run is on a CPU without it",
                                 fix="use train.precision: auto (fp32 on CPU) or run on a GPU")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"
