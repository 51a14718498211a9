"""Regional compilation: `torch.compile` on each transformer block instead of the whole model.

A model is mostly N copies of one block. Compiling the whole model traces and optimises all N (minutes for a 1B
model, again after every shape change) and breaks its graph wherever the model's Python does something dynamo
cannot trace (cache objects, masks, loss code). Compiling each block separately traces one block once: the other
N-1 instances reuse the same compiled code, because dynamo treats their weights as inputs rather than constants
(PyTorch's "regional compilation" recipe). The fused kernels land exactly where the time goes: attention
projections, norms, rotary embeddings and the MLP.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

import torch
from torch import nn

Setting = Literal["auto", "on", "off"]
SETTINGS: tuple[str, ...] = ("auto", "on", "off")


def should_compile(setting: str, device: torch.device | str) -> bool:
    """Whether to compile: `on` / `off` as asked; `auto` on CUDA GPUs Triton can build for (compute capability
    7.0 or newer) and off on the CPU, where compilation costs tens of seconds per run and has not been measured
    to pay back on fine-tuning runs of tuneforge's size."""
    if setting not in SETTINGS:
        raise ValueError(f"compile setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
    if setting != "auto":
        return setting == "on"
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    if importlib.util.find_spec("triton") is None:
        return False
    return torch.cuda.get_device_capability(device) >= (7, 0)


def _unwrap(model: nn.Module) -> nn.Module:
    """The Transformers model inside a PEFT wrapper (which keeps the blocks in place, adapters included)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) and hasattr(model, "peft_config") else model


def find_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The repeated transformer blocks, outermost first, as (qualified name, module).

    Transformers names its block classes in `_no_split_modules` (what must stay on one device); those found
    inside a ModuleList are the blocks. Models without that list fall back to every ModuleList of two or more
    modules of one class that hold parameters (the layer stacks). Blocks nested in another block are left out.
    """
    no_split = set(getattr(_unwrap(model), "_no_split_modules", None) or ())
    candidates: list[tuple[str, nn.Module]] = []
    for name, container in model.named_modules():
        if not isinstance(container, nn.ModuleList) or len(container) < 2:
            continue
        children = list(container.named_children())
        kinds = {type(child) for _, child in children}
        if no_split:
            chosen = [(n, c) for n, c in children if type(c).__name__ in no_split]
        elif len(kinds) == 1 and any(True for _ in children[0][1].parameters()):
            chosen = children
        else:
            chosen = []
        candidates += [(f"{name}.{child_name}" if name else child_name, child) for child_name, child in chosen]
    blocks: list[tuple[str, nn.Module]] = []
    for name, module in candidates:
        if not any(name.startswith(outer + ".") for outer, _ in blocks):
            blocks.append((name, module))
    return blocks


def compile_blocks(model: nn.Module, mode: str | None = None, *, backend: str = "inductor",
                   dynamic: bool | None = None, training: bool = True) -> list[str]:
    """Compiles each transformer block of `model` in place; returns the names of the compiled blocks (empty when
    none were found, so the caller can say the model runs eagerly).

    `mode` is `torch.compile`'s (None = default, "max-autotune-no-cudagraphs", ...). CUDA-graph modes
    ("reduce-overhead", "max-autotune") replay static buffers and do not suit training blocks whose outputs
    autograd keeps; they are passed through as asked. Gradient checkpointing wraps the compiled call, so both
    can be on. The weights stay the same objects: optimisers, PEFT and saving see no difference.

    `training` also turns off the model's KV cache (`config.use_cache`): training needs none, and a cache object
    passed to every block makes dynamo recompile the block once per layer, past its recompile limit, after which
    the remaining layers silently run eagerly. Set it back before generating.
    """
    config = getattr(_unwrap(model), "config", None)
    if training and config is not None and getattr(config, "use_cache", None):
        config.use_cache = False
    blocks = find_blocks(model)
    for _, block in blocks:
        block.compile(mode=mode, backend=backend, dynamic=dynamic)
    return [name for name, _ in blocks]
