"""plan_lean picks the cheapest memory savers that fit a budget, and says which and why."""

from __future__ import annotations

import json

from tuneforge.models.estimate import GiB
from tuneforge.models.lean import llama_like_shape, plan_lean
from tuneforge.models.shapes import build_meta_model, shape_of

TINYLLAMA = {"model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 22, "num_attention_heads": 32,
             "num_key_value_heads": 4, "intermediate_size": 5632, "vocab_size": 32000,
             "max_position_embeddings": 2048}


def _tinyllama_shape():
    return shape_of(build_meta_model(TINYLLAMA, "causal-lm"), "tinyllama-shape", "causal-lm")


def test_budget_the_plain_plan_misses_and_the_lean_plan_fits() -> None:
    shape = _tinyllama_shape()
    budget = 24 * GiB
    plan = plan_lean(shape, batch=4, seq_len=2048, vocab=32000, budget_bytes=budget, device="cuda",
                     eightbit_available=False)
    assert plan.plain_bytes > budget >= plan.lean_bytes
    assert plan.fits and plan.chunked_loss and plan.gradient_checkpointing
    assert plan.optimizer == "adamw_torch_fused"  # no bitsandbytes: 8-bit states not even considered
    assert plan.savers == ["chunked_loss", "gradient_checkpointing"]
    assert all(step.peak_after < step.peak_before and step.why for step in plan.steps)
    assert any("bitsandbytes" in note for note in plan.notes)
    saved = json.loads(json.dumps(plan.to_json()))
    assert saved["fits"] is True and saved["savers"] == plan.savers and "fits in 24.0 GiB" in saved["summary"]


def test_roomy_budget_changes_nothing_and_tight_ones_add_savers_in_order() -> None:
    shape = _tinyllama_shape()
    roomy = plan_lean(shape, 4, 2048, 32000, 80 * GiB, "cuda", eightbit_available=True)
    assert roomy.fits and roomy.savers == [] and roomy.lean_bytes == roomy.plain_bytes
    tight = plan_lean(shape, 4, 2048, 32000, 14 * GiB, "cuda", eightbit_available=True)
    assert tight.fits and tight.savers == ["chunked_loss", "gradient_checkpointing", "adamw_8bit"]
    assert tight.optimizer == "adamw_8bit"
    impossible = plan_lean(shape, 4, 2048, 32000, 4 * GiB, "cuda", eightbit_available=True)
    assert not impossible.fits and "paged_adamw_8bit" in impossible.savers
    assert impossible.optimizer == "paged_adamw_8bit" and "LoRA" in impossible.notes[-1]


def test_cpu_never_pages_and_a_classifier_has_no_logits_to_chunk() -> None:
    shape = _tinyllama_shape()
    cpu = plan_lean(shape, 4, 2048, 32000, 4 * GiB, "cpu", eightbit_available=True)
    assert "paged_adamw_8bit" not in cpu.savers and not cpu.fits
    classifier = shape_of(build_meta_model(TINYLLAMA, "classification"), "tinyllama-shape", "classification")
    plan = plan_lean(classifier, 4, 2048, 32000, 10 * GiB, "cuda", eightbit_available=False)
    assert not plan.chunked_loss and plan.gradient_checkpointing


def test_parameter_count_alone_gives_a_tinyllama_like_shape() -> None:
    shape = llama_like_shape(1_100_000_000, 32000)
    assert shape.hidden == 2048 and 20 <= shape.layers <= 24
    exact = plan_lean(_tinyllama_shape(), 4, 2048, 32000, 24 * GiB, "cuda", eightbit_available=False)
    rough = plan_lean(1_100_000_000, 4, 2048, 32000, 24 * GiB, "cuda", eightbit_available=False)
    assert abs(rough.plain_bytes - exact.plain_bytes) < 0.2 * exact.plain_bytes
    assert rough.savers == exact.savers
