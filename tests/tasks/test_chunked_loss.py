"""The chunked loss gives the plain cross-entropy's loss and gradients, and never holds all the logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tuneforge.tasks.chunked_loss import (
    chunked_head_cross_entropy,
    chunked_linear_cross_entropy,
    lm_loss_without_logits,
)

TOLERANCE = 1e-5


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def _assert_same(reference: dict[str, torch.Tensor], ours: dict[str, torch.Tensor]) -> None:
    assert reference.keys() == ours.keys()
    for name, grad in reference.items():
        torch.testing.assert_close(ours[name], grad, atol=TOLERANCE, rtol=TOLERANCE, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("softcap", [None, 2.0])
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_cross_entropy_matches_full_logits(softcap: float | None, with_bias: bool) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(3, 50, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(70, 16, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(70, dtype=torch.float64, requires_grad=True) if with_bias else None
    labels = torch.randint(0, 70, (3, 50))
    labels[:, :7] = -100
    loss, count = chunked_linear_cross_entropy(hidden, weight, labels, bias, shift=True, chunk_tokens=16,
                                               softcap=softcap)
    loss.backward()
    ours = [t.grad.clone() for t in (hidden, weight, bias) if t is not None]

    for t in (hidden, weight, bias):
        if t is not None:
            t.grad = None
    logits = F.linear(hidden, weight, bias)
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    shifted = labels[:, 1:]
    reference = F.cross_entropy(logits[:, :-1].reshape(-1, 70), shifted.reshape(-1), reduction="sum")
    reference.backward()
    assert count.item() == (shifted != -100).sum().item()
    torch.testing.assert_close(loss, reference, atol=1e-10, rtol=1e-10)
    for got, want in zip(ours, [t.grad for t in (hidden, weight, bias) if t is not None], strict=True):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


def test_head_module_path_matches_and_frees_nothing_it_needs() -> None:
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 40)
    hidden = torch.randn(2, 30, 16, requires_grad=True)
    labels = torch.randint(0, 40, (2, 30))
    loss, count = chunked_head_cross_entropy(hidden, head, labels, shift=False, chunk_tokens=7)
    (loss / count).backward()
    ours = [hidden.grad.clone(), head.weight.grad.clone(), head.bias.grad.clone()]
    hidden.grad = None
    head.zero_grad()
    F.cross_entropy(head(hidden).reshape(-1, 40), labels.reshape(-1)).backward()
    for got, want in zip(ours, [hidden.grad, head.weight.grad, head.bias.grad], strict=True):
        torch.testing.assert_close(got, want, atol=TOLERANCE, rtol=TOLERANCE)


def _lm_batch(vocab: int, pad: int, batch: int = 3, length: int = 12) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(4, vocab, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    ids[0, -3:] = pad  # one padded row: masked, and its labels ignored
    mask[0, -3:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def test_llama_loss_and_every_gradient_match_the_model_forward(tiny_llama: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    model.train()
    inputs = _lm_batch(model.config.vocab_size, model.config.pad_token_id)
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    labels[:, :4] = -100  # a prompt: no loss on it

    reference = model(**inputs, labels=labels).loss
    reference.backward()
    want = _grads(model)
    model.zero_grad(set_to_none=True)

    total, count = lm_loss_without_logits(model, inputs, labels, shift=True, chunk_tokens=5)
    (total / count).backward()
    torch.testing.assert_close(total / count, reference, atol=TOLERANCE, rtol=TOLERANCE)
    assert len(want) == len(list(model.parameters()))  # every parameter, the LM head and embeddings included
    _assert_same(want, _grads(model))


def test_autocast_dtype_runs_the_body_and_head_in_bf16(tiny_llama: Path) -> None:
    """The body is called past the model's forward, so the precision must come in through the call."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    inputs = _lm_batch(model.config.vocab_size, model.config.pad_token_id)
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    seen: list[torch.dtype] = []
    hook = model.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = model(**inputs, labels=labels).loss
    total, count = lm_loss_without_logits(model, inputs, labels, shift=True, chunk_tokens=8,
                                          autocast_dtype=torch.bfloat16)
    hook.remove()
    assert seen == [torch.bfloat16, torch.bfloat16]
    torch.testing.assert_close(total / count, reference.float(), atol=2e-2, rtol=2e-2)


def test_t5_loss_and_every_gradient_match_the_model_forward(tiny_t5: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5, dtype=torch.float32)
    model.train()
    inputs = _lm_batch(model.config.vocab_size, model.config.pad_token_id)
    labels = torch.randint(4, model.config.vocab_size, (3, 9), generator=torch.Generator().manual_seed(2))
    labels[1, -2:] = -100

    reference = model(**inputs, labels=labels).loss
    reference.backward()
    want = _grads(model)
    model.zero_grad(set_to_none=True)

    total, count = lm_loss_without_logits(model, inputs, labels, shift=False, chunk_tokens=4)
    (total / count).backward()
    torch.testing.assert_close(total / count, reference, atol=TOLERANCE, rtol=TOLERANCE)
    assert count.item() == (labels != -100).sum().item()
    _assert_same(want, _grads(model))


def test_lora_model_trains_the_adapters_the_same(tiny_llama: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                        init_lora_weights=False)
    model = get_peft_model(model, config)
    inputs = _lm_batch(model.config.vocab_size, model.config.pad_token_id)
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    model(**inputs, labels=labels).loss.backward()
    want = _grads(model)
    model.zero_grad(set_to_none=True)
    total, count = lm_loss_without_logits(model, inputs, labels, shift=True, chunk_tokens=8)
    (total / count).backward()
    assert want and all("lora_" in name for name in want)
    _assert_same(want, _grads(model))


def _peak_bytes(step) -> int:
    """Peak of live CPU tensor memory during `step`, from torch's own tracker (dispatch-level, deterministic)."""
    tracker_module = pytest.importorskip("torch.distributed._tools.mem_tracker")
    tracker = tracker_module.MemTracker()
    with tracker:
        step()
    return tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]


def test_chunked_path_peaks_far_lower_on_a_long_sequence_with_a_32k_vocabulary() -> None:
    torch.manual_seed(0)
    tokens, width, vocab = 2048, 32, 32_000
    hidden = torch.randn(1, tokens, width, requires_grad=True)
    weight = (torch.randn(vocab, width) * 0.02).requires_grad_()
    labels = torch.randint(0, vocab, (1, tokens))
    logits_bytes = tokens * vocab * 4

    def plain() -> None:
        logits = F.linear(hidden, weight)[:, :-1]
        F.cross_entropy(logits.reshape(-1, vocab), labels[:, 1:].reshape(-1), reduction="sum").backward()

    def chunked() -> None:
        chunked_linear_cross_entropy(hidden, weight, labels, shift=True, chunk_tokens=256)[0].backward()

    plain_peak = _peak_bytes(plain)
    weight.grad = hidden.grad = None
    chunked_peak = _peak_bytes(chunked)
    assert plain_peak > 2 * logits_bytes  # logits, log-probabilities, their gradient
    assert chunked_peak < logits_bytes / 2, (plain_peak, chunked_peak)
