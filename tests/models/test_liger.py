"""apply_liger: nothing without liger-kernel or off CUDA; with it, the architecture's patch gets our options."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from tuneforge.models import liger


def test_nothing_applied_on_the_cpu_or_without_liger(tiny_llama: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    assert liger.apply_liger(model) == []  # CPU (and, here, no liger-kernel): the model is left as it was


def test_patch_gets_the_kernels_it_accepts(monkeypatch: pytest.MonkeyPatch, tiny_llama: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    calls: list[dict] = []

    def apply_to_llama(rope: bool = True, cross_entropy: bool = False, fused_linear_cross_entropy: bool = True,
                       rms_norm: bool = True, swiglu: bool = True, model: torch.nn.Module | None = None) -> None:
        calls.append({"rope": rope, "cross_entropy": cross_entropy, "flce": fused_linear_cross_entropy,
                      "rms_norm": rms_norm, "swiglu": swiglu, "model": model})

    fake = types.ModuleType("liger_kernel.transformers.monkey_patch")
    fake.MODEL_TYPE_TO_APPLY_LIGER_FN = {"llama": apply_to_llama}
    for name in ("liger_kernel", "liger_kernel.transformers"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers.monkey_patch", fake)
    monkeypatch.setattr(liger, "liger_available", lambda: True)
    monkeypatch.setattr(liger, "_device_type", lambda model: "cuda")

    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"]))
    assert liger.apply_liger(model) == ["fused_linear_cross_entropy", "rms_norm", "rope", "swiglu"]
    assert calls[-1]["model"] is base and calls[-1]["cross_entropy"] is False
    assert liger.apply_liger(model, fused_linear_cross_entropy=False) == ["rms_norm", "rope", "swiglu"]
    assert calls[-1]["flce"] is False

    base.config.model_type = "not-a-liger-architecture"
    assert liger.apply_liger(model) == []
    assert liger.liger_supported("llama") and not liger.liger_supported("bert")
