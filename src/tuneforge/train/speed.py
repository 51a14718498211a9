"""What the hardware can do faster: native bf16 on the CPU, a measured bf16 matmul peak on a GPU.

A CPU with AVX-512 BF16 or AMX runs bf16 matrix products through oneDNN at about twice its fp32 rate; mixed
precision (bf16 autocast, fp32 master weights) then trains and predicts faster at the same quality. Elsewhere
bf16 on the CPU is emulated and slower than fp32, so it is refused there.
"""

from __future__ import annotations

import functools

import torch


@functools.cache
def cpu_bf16_native() -> bool:
    """True when oneDNN has native bf16 kernels for this CPU (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
