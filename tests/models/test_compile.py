"""Regional compilation: the blocks are found, compiled once for all layers, and train like the eager model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tuneforge.models.compile import compile_blocks, find_blocks, should_compile


def _losses(folder: Path, compiled: str | None, steps: int = 4) -> list[float]:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.train()
    if compiled:
        assert compile_blocks(model, backend=compiled) == ["model.layers.0", "model.layers.1"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        ids = torch.randint(4, model.config.vocab_size, (2, 16), generator=generator)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_should_compile_rule() -> None:
    assert should_compile("on", "cpu") is True
    assert should_compile("off", "cuda") is False
    assert should_compile("auto", "cpu") is False  # not measured to pay on the CPU
    assert should_compile("auto", torch.device("cpu")) is False
    with pytest.raises(ValueError, match="auto, on, off"):
        should_compile("yes", "cpu")


def test_blocks_of_decoder_encoder_decoder_and_peft(tiny_llama: Path, tiny_t5: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    t5 = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5)
    assert [name for name, _ in find_blocks(t5)] == ["encoder.block.0", "encoder.block.1", "decoder.block.0",
                                                     "decoder.block.1"]
    llama = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama),
                           LoraConfig(r=2, target_modules=["q_proj"]))
    names = [name for name, _ in find_blocks(llama)]
    assert names == ["base_model.model.model.layers.0", "base_model.model.model.layers.1"]
    assert find_blocks(torch.nn.Sequential(torch.nn.Linear(2, 2))) == []


def test_compiled_blocks_share_one_graph_and_train_like_eager(tiny_llama: Path) -> None:
    """aot_eager runs dynamo and AOTAutograd without code generation: the wiring, in seconds."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    eager = _losses(tiny_llama, None)
    compiled = _losses(tiny_llama, "aot_eager")
    assert counters["stats"]["unique_graphs"] == 1  # one trace serves both layers: no per-layer recompiles
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_inductor_compiled_blocks_train_like_eager(tiny_llama: Path) -> None:
    """Inductor's generated C++ kernels on the CPU (about a minute of compilation)."""
    torch._dynamo.reset()
    eager = _losses(tiny_llama, None)
    compiled = _losses(tiny_llama, "inductor")
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)
