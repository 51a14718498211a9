"""The recipe's `train.optimizer` as a Transformers `TrainingArguments.optim` name, checked before training.

The Trainer builds every optimiser itself; this module only maps tuneforge's short names and turns a missing
or unusable bitsandbytes into an error with the fix, instead of an ImportError deep inside `trainer.train()`.
"""

from __future__ import annotations

import importlib.util

import torch

from tuneforge.errors import TuneforgeError

TRAINER_NAMES = {
    "adamw_torch_fused": "adamw_torch_fused",
    "adamw_torch": "adamw_torch",
    "adafactor": "adafactor",
    "adamw_8bit": "adamw_bnb_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit",
}
EIGHT_BIT = ("adamw_8bit", "paged_adamw_8bit")
# What `models.estimate` knows: Adafactor keeps factored second moments (a row and a column vector per matrix),
# next to nothing beside AdamW's 8 bytes per parameter, so it is sized like an optimiser without states.
ESTIMATE_NAMES = {"adamw_torch_fused": "adamw", "adamw_torch": "adamw", "adafactor": "sgd",
                  "adamw_8bit": "adamw_8bit", "paged_adamw_8bit": "adamw_8bit"}


def _bitsandbytes_problem(device: torch.device) -> str | None:
    """Why bitsandbytes' 8-bit AdamW cannot run here, or None when it can (one tiny step is tried)."""
    if importlib.util.find_spec("bitsandbytes") is None:
        return "the bitsandbytes package is not installed"
    try:
        import bitsandbytes as bnb

        weight = torch.nn.Parameter(torch.zeros(64, 64, device=device))
        weight.grad = torch.ones_like(weight)
        bnb.optim.AdamW8bit([weight], lr=1e-3).step()
    except Exception as error:  # a build without kernels for this device fails in many different ways
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        return f"bitsandbytes cannot run its 8-bit AdamW on the {device.type} ({first})"
    return None


def trainer_optimizer(name: str, device: torch.device) -> str:
    """`TrainingArguments.optim` for the recipe's optimiser; raises with the fix when it cannot run here."""
    if name not in TRAINER_NAMES:
        raise TuneforgeError(f"unknown train.optimizer '{name}'", fix=f"use one of {', '.join(TRAINER_NAMES)}")
    if name in EIGHT_BIT:
        problem = _bitsandbytes_problem(device)
        if problem is not None:
            raise TuneforgeError(
                f"train.optimizer '{name}' keeps its states in 8 bits through bitsandbytes, but {problem}",
                fix="pip install 'bitsandbytes>=0.50' (8-bit AdamW runs on the CPU and on CUDA GPUs), run on a "
                    "GPU, or choose train.optimizer: adamw_torch_fused (or adafactor for less memory)",
            )
    return TRAINER_NAMES[name]
