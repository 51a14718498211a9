"""Tiny generative models built offline: GPT-2, Llama and T5 from small configs, with a byte-level BPE tokenizer
trained locally on the test data (pad, bos, eos and unk specials), saved like hub models."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = ["red", "blue", "green", "cat", "dog", "bird", "one", "two", "three", "sun", "moon", "star", "tree",
         "fish", "rain", "snow"]
SPECIALS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def copy_rows(count: int, seed: int, length: int = 3) -> list[dict]:
    """source -> target is the same words: a task a tiny seq2seq model learns in a few hundred steps."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        words = " ".join(rng.sample(WORDS, length))
        rows.append({"text": words, "target": words})
    return rows


def echo_rows(count: int, seed: int) -> list[dict]:
    """prompt 'repeat: a b' -> response 'a b' (decoders)."""
    return [{"prompt": f"repeat: {row['text']}\n", "response": row["target"]}
            for row in copy_rows(count, seed, length=2)]


def _corpus() -> list[str]:
    texts = [" ".join(WORDS)] * 3 + [f"repeat: {w}\n" for w in WORDS]
    texts += ["<|user|>\n", "<|assistant|>\n", "<|system|>\n", "Label: positive negative", "hello world"]
    return texts


def build_tokenizer(folder: Path, add_bos: bool = False):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIALS.values())
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(_corpus(), trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if add_bos:  # Llama-style: BOS before every text
        raw.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                           special_tokens=[("<s>", raw.token_to_id("<s>"))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, model_max_length=256, **SPECIALS)
    tokenizer.save_pretrained(folder)
    return tokenizer


def build_tiny_decoder(folder: Path, kind: str = "gpt2") -> Path:
    """A 2-layer GPT-2 or Llama (hidden 32), SDPA attention, no dropout."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(folder, add_bos=kind == "llama")
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    torch.manual_seed(0)
    if kind == "llama":
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, **ids)
        model = LlamaForCausalLM(config)
    else:
        config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=256,
                            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **ids)
        model = GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    return folder


def build_tiny_t5(folder: Path) -> Path:
    """A 2-layer T5 (d_model 32)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = build_tokenizer(folder)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                      num_heads=4, dropout_rate=0.0, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    return folder


def train_chat_run(model: Path, folder: Path, steps: int = 120) -> Path:
    """A finished causal-lm chat run (messages column, the default chat template) on the echo task: what chat,
    serving and GGUF export start from."""
    import json

    import tuneforge

    chats = [{"messages": [{"role": "user", "content": row["prompt"].strip()},
                           {"role": "assistant", "content": row["response"]}]} for row in echo_rows(64, seed=5)]
    data = folder / "chats.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(json.dumps(chat) + "\n" for chat in chats), encoding="utf-8")
    run = tuneforge.fine_tune({
        "task": "causal-lm", "model": {"name": str(model)},
        "data": {"train": str(data), "messages_column": "messages", "validation_split": 0.0,
                 "cache_dir": str(folder / "cache")},
        "train": {"epochs": 1, "max_steps": steps, "batch_size": 8, "learning_rate": 1e-2, "max_length": 48,
                  "warmup_ratio": 0.0, "logging_steps": 20, "save_checkpoints": False},
        "generation": {"max_new_tokens": 8}, "evaluation": {"explain_examples": 0},
        "output": {"dir": str(folder / "run")}})
    return run.directory
