"""PEFT wrapping at unit level: target detection per architecture, the task head, guards with a fix."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GPT2Config,
    GPT2ForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    T5Config,
    T5ForSequenceClassification,
)

from tuneforge.errors import RecipeError, TuneforgeError
from tuneforge.models.peft import (
    apply_peft,
    attention_projections,
    build_peft_config,
    detect_target_modules,
    head_modules,
    quantized_loading,
    reads_last_token,
)
from tuneforge.recipe import PeftSpec, recipe_from_dict


# Tiny configs built locally (random weights, a few thousand parameters): nothing comes from a model hub.
def tiny_gpt2() -> GPT2ForSequenceClassification:
    return GPT2ForSequenceClassification(GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=32,
                                                    num_labels=3, pad_token_id=0, bos_token_id=1, eos_token_id=1))


def tiny_llama() -> LlamaForSequenceClassification:
    return LlamaForSequenceClassification(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                                      num_hidden_layers=2, num_attention_heads=2,
                                                      num_key_value_heads=1, max_position_embeddings=32,
                                                      num_labels=3, pad_token_id=0))


def tiny_t5() -> T5ForSequenceClassification:
    return T5ForSequenceClassification(T5Config(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=2,
                                                num_heads=2, num_labels=3, pad_token_id=0,
                                                decoder_start_token_id=0))


@pytest.fixture()
def bert(tiny_model: Path):
    return AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=3)


@pytest.fixture()
def tokenizer(tiny_model: Path):
    return AutoTokenizer.from_pretrained(tiny_model)


# --- target detection -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("build", "expected"), [
    pytest.param(tiny_gpt2, ["c_attn", "attn.c_proj"], id="gpt2-conv1d"),  # mlp.c_proj is not attention
    pytest.param(tiny_llama, ["q_proj", "k_proj", "v_proj", "o_proj"], id="llama"),
    pytest.param(tiny_t5, ["q", "k", "v", "o"], id="t5"),
])
def test_auto_targets_are_the_attention_projections(build, expected):
    model = build()
    assert attention_projections(model) == expected
    assert detect_target_modules(model, "lora") == (expected, [])


def test_bert_targets_name_the_attention_output_apart_from_the_feed_forward_dense(bert):
    targets, _ = detect_target_modules(bert, "lora")
    assert targets == ["query", "key", "value", "attention.output.dense"]
    names = dict(bert.named_modules())
    matched = [n for n in names if any(n == t or n.endswith("." + t) for t in targets)]
    assert len(matched) == 4 * bert.config.num_hidden_layers
    assert not any("intermediate" in n or n.endswith("layer.0.output.dense") or "classifier" in n for n in matched)


def test_lora_wraps_every_detected_projection(bert, tokenizer):
    wrapped = apply_peft(bert, tokenizer, PeftSpec(method="lora", r=2))
    adapted = {name.rsplit(".lora_A", 1)[0] for name, _ in wrapped.named_modules() if name.endswith(".lora_A")}
    assert len(adapted) == 4 * bert.config.num_hidden_layers


def test_ia3_uses_peft_table_that_pairs_feed_forward_layers(bert):
    assert detect_target_modules(bert, "ia3") == (["key", "value", "output.dense"], ["output.dense"])


def test_ia3_with_listed_targets_keeps_only_listed_feed_forward_layers(bert):
    config = build_peft_config(bert, PeftSpec(method="ia3", target_modules=["key", "value"]))
    assert set(config.target_modules) == {"key", "value"}
    assert not config.feedforward_modules


def test_unknown_target_module_is_an_error_with_a_fix(bert, tokenizer):
    with pytest.raises(TuneforgeError) as caught:
        apply_peft(bert, tokenizer, PeftSpec(method="lora", target_modules=["q_proj"]))
    assert "target_modules" in caught.value.fix


# --- the task head trains in full ------------------------------------------------------------------------

@pytest.mark.parametrize(("build", "expected"), [
    pytest.param(tiny_gpt2, ["score"], id="gpt2"),
    pytest.param(tiny_llama, ["score"], id="llama"),
    pytest.param(tiny_t5, ["classification_head"], id="t5"),
])
def test_head_modules_are_what_sits_outside_the_body(build, expected):
    assert head_modules(build()) == expected


@pytest.mark.parametrize("method", ["lora", "ia3", "prompt_tuning"])
def test_only_the_adapter_and_the_head_train(bert, tokenizer, method):
    assert head_modules(bert) == ["classifier"]
    wrapped = apply_peft(bert, tokenizer, PeftSpec(method=method, r=2, num_virtual_tokens=4))
    trainable = [name for name, p in wrapped.named_parameters() if p.requires_grad]
    head = [name for name in trainable if ".classifier.modules_to_save." in name]
    assert len(head) == 2  # weight and bias
    adapter = set(trainable) - set(head)
    assert adapter and all(("lora_" in n or "ia3_" in n or "prompt_encoder" in n) for n in adapter), adapter


# --- guards ----------------------------------------------------------------------------------------------

def test_qlora_on_the_cpu_names_the_fix():
    with pytest.raises(TuneforgeError) as caught:
        quantized_loading(PeftSpec(method="qlora"), torch.device("cpu"))
    assert "CUDA" in caught.value.message
    assert "peft.method: lora" in caught.value.fix and "bitsandbytes" in caught.value.fix


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed")
def test_qlora_without_bitsandbytes_names_the_package():
    with pytest.raises(TuneforgeError, match="bitsandbytes"):
        quantized_loading(PeftSpec(method="qlora"), torch.device("cuda"))


def test_other_methods_load_the_base_unquantised():
    assert quantized_loading(PeftSpec(method="lora"), torch.device("cpu")) == {}


def test_prompt_tuning_refuses_encoder_decoder_models(tokenizer):
    with pytest.raises(TuneforgeError) as caught:
        apply_peft(tiny_t5(), tokenizer, PeftSpec(method="prompt_tuning"))
    assert "lora" in caught.value.fix


def test_prefix_tuning_either_runs_or_fails_up_front_with_a_fix(bert, tokenizer):
    try:
        wrapped = apply_peft(bert, tokenizer, PeftSpec(method="prefix_tuning", num_virtual_tokens=4))
    except TuneforgeError as error:
        assert "prompt_tuning" in error.fix
        return
    encoded = tokenizer(["good food"], return_tensors="pt")
    assert wrapped(**encoded).logits.shape == (1, 3)


def test_prompt_tuning_pads_on_the_left_for_last_token_classifiers(tokenizer):
    assert reads_last_token(tiny_gpt2()) and reads_last_token(tiny_llama())
    tokenizer.padding_side = "right"
    apply_peft(tiny_gpt2(), tokenizer, PeftSpec(method="prompt_tuning", num_virtual_tokens=4))
    assert tokenizer.padding_side == "left"


def test_encoders_keep_right_padding(bert, tokenizer):
    assert not reads_last_token(bert) and not reads_last_token(tiny_t5())
    apply_peft(bert, tokenizer, PeftSpec(method="prompt_tuning", num_virtual_tokens=4))
    assert tokenizer.padding_side == "right"


# --- recipe ----------------------------------------------------------------------------------------------

def test_freezing_with_peft_is_a_recipe_error_that_names_both():
    with pytest.raises(RecipeError) as caught:
        recipe_from_dict({"peft": {"method": "lora"}, "freeze": {"layers": 1, "embeddings": True}})
    message = str(caught.value)
    assert "freeze.layers" in message and "freeze.embeddings" in message and "peft.method: none" in message


def test_peft_defaults_and_overrides():
    recipe = recipe_from_dict({}, ["peft.method=lora", "peft.target_modules=[query, value]", "peft.r=4",
                                   "train.gradient_checkpointing=true"])
    assert recipe.peft.target_modules == ["query", "value"] and recipe.peft.r == 4
    assert recipe.peft.modules_to_save == "auto" and recipe.peft.enabled
    assert recipe.train.gradient_checkpointing
    assert not recipe_from_dict({}).peft.enabled


def test_empty_target_list_is_an_error_with_a_fix():
    with pytest.raises(RecipeError) as caught:
        recipe_from_dict({"peft": {"method": "lora", "target_modules": []}})
    [problem] = caught.value.problems
    assert "peft.target_modules" in problem.where and "use auto" in problem.message
