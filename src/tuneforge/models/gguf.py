"""A fine-tuned Llama-family decoder as one GGUF file for llama.cpp, Ollama and LM Studio: `tuneforge export RUN
--format gguf`.

The `gguf` package (llama.cpp's own) writes the file, names the tensors (`TensorNameMap`), quantises (`quants`) and
reads the special tokens, merges and chat template (`SpecialVocab`). What it leaves to each converter is written
here: which of llama.cpp's tokenizers matches the run's (byte-level BPE with a named pre-tokenizer, or
SentencePiece-style BPE with byte fallback), the token table with types and scores, the hyperparameters, and the
query/key row order llama.cpp's rotary embedding expects. Weights are read one tensor at a time from the run's
safetensors and spooled to a temporary file, so a 7B model does not need twice its size in memory.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge import artifacts
from tuneforge.errors import TuneforgeError
from tuneforge.run import RunLayout, read_run_recipe

QUANTS = ("f16", "q8_0")
# Hugging Face architectures whose weights llama.cpp reads as its "llama" architecture.
ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")
EXTRA_HINT = "install the LLM extra: pip install 'tuneforge[llm]'"
CONVERT_HINT = ("export the model in Transformers format (`tuneforge export RUN --output DIR`) and convert DIR with "
                "llama.cpp's convert_hf_to_gguf.py, which knows more architectures and tokenizers")
# Byte-level BPE pre-tokenizers (tokenizer.json's Split regex) and llama.cpp's name for each.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
SPM_SPACE = "\u2581"  # SentencePiece's visible space


def default_path(run_dir: str | Path, quant: str = "f16") -> Path:
    """Where `tuneforge export RUN --format gguf` writes without --output: RUN/gguf/<run name>-<quant>.gguf."""
    root = Path(run_dir)
    return root / "gguf" / f"{root.resolve().name}-{quant}.gguf"


def require_gguf() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise TuneforgeError("GGUF export needs the gguf package, which is not installed", fix=EXTRA_HINT)


def export_gguf(run_dir: str | Path, output: str | Path | None = None, quant: str = "f16",
                overwrite: bool = False) -> Path:
    """Write the run's decoder, tokenizer, chat template and generation settings to one GGUF file.

    `quant` is f16 (half precision; norms stay float32 as llama.cpp wants) or q8_0 (8-bit blocks of 32, about half
    of f16's size, near-lossless). `output` is a file, or a folder to put `<run name>-<quant>.gguf` in.
    """
    if quant not in QUANTS:
        raise TuneforgeError(f"unknown GGUF quantisation '{quant}'", fix=f"use --quant {' or '.join(QUANTS)}")
    require_gguf()
    layout = RunLayout(Path(run_dir))
    recipe = read_run_recipe(layout.root)
    if recipe.task != "causal-lm":
        raise TuneforgeError(f"GGUF holds decoder-only language models; '{layout.root}' is a {recipe.task} run",
                             fix="export causal-lm runs to GGUF; use --format transformers or onnx for this one")
    if not layout.has_model():
        raise TuneforgeError(f"run '{layout.root}' has no full model in {layout.model} (prompt or prefix tuning "
                             "keeps only virtual tokens beside the base model, which GGUF cannot hold)",
                             fix="train with peft.method lora (merged into model/ after training) or without peft")
    config = json.loads((layout.model / "config.json").read_text(encoding="utf-8"))
    check_architecture(config)
    target = Path(output) if output is not None else default_path(layout.root, quant)
    if target.is_dir():
        target = target / default_path(layout.root, quant).name
    if target.exists() and not overwrite:
        raise TuneforgeError(f"{target} already exists", fix="pass --overwrite to replace it, or another --output")
    artifacts.write_with(target, lambda path: _write(layout, recipe, config, quant, path))
    return target


def check_architecture(config: dict[str, Any]) -> None:
    """Refuse what llama.cpp's "llama" architecture would load wrongly, before any file is written."""
    names = config.get("architectures") or [config.get("model_type", "unknown")]
    if names[0] not in ARCHITECTURES:
        raise TuneforgeError(f"GGUF export covers Llama-family decoders ({', '.join(ARCHITECTURES)}); this run's "
                             f"model is {names[0]}", fix=CONVERT_HINT)
    rope = _rope(config)
    if rope["type"] not in ("default", "linear", "llama3"):
        raise TuneforgeError(f"the model's rotary scaling '{rope['type']}' is not written by this exporter",
                             fix=CONVERT_HINT)


def _rope(config: dict[str, Any]) -> dict[str, Any]:
    """Rotary settings from Transformers 5's rope_parameters or the older rope_theta / rope_scaling fields."""
    parameters = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    kind = parameters.get("rope_type") or parameters.get("type") or "default"
    theta = parameters.get("rope_theta", config.get("rope_theta", 10000.0))
    return {**parameters, "type": kind, "theta": float(theta)}


# ------------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------------

def _write(layout: RunLayout, recipe: Any, config: dict[str, Any], quant: str, path: Path) -> None:
    import gguf
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(layout.model))
    # gguf logs what it guesses from tokenizer files; the special-token settings it guesses are replaced below.
    logging.getLogger("gguf").setLevel(logging.ERROR)
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA], use_temp_file=True)
    try:
        _add_model_info(writer, layout, recipe, config, quant)
        _add_tokenizer(writer, tokenizer, layout.model, int(config["vocab_size"]))
        for name, data, dtype in _tensors(layout.model, config, quant):
            writer.add_tensor(name, data, raw_dtype=dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def _add_model_info(writer: Any, layout: RunLayout, recipe: Any, config: dict[str, Any], quant: str) -> None:
    import gguf

    heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or hidden // heads)
    rope = _rope(config)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(layout.root.resolve().name)
    writer.add_description(f"fine-tuned from {recipe.model.name} with tuneforge")
    writer.add_context_length(int(config.get("max_position_embeddings", 2048)))
    writer.add_embedding_length(hidden)
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(config.get("num_key_value_heads") or heads))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != hidden // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_rope_freq_base(rope["theta"])
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(int(config["vocab_size"]))
    if rope["type"] == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if quant == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    # The run's generation settings as defaults (llama.cpp reads general.sampling.*); temperature 0 is greedy.
    generation = recipe.generation
    writer.add_sampling_temp(float(generation.temperature) if generation.do_sample else 0.0)
    writer.add_sampling_top_k(int(generation.top_k))
    writer.add_sampling_top_p(float(generation.top_p))
    writer.add_sampling_penalty_repeat(float(generation.repetition_penalty))


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """Query/key rows from Transformers' rotate-half layout to the interleaved pairs llama.cpp rotates."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _weights(folder: Path) -> Iterator[tuple[str, Any]]:
    """(name, tensor) of every safetensors file of a saved model, one tensor in memory at a time."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise TuneforgeError(f"{folder} holds no safetensors weights", fix="train the run again with this version")
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                yield name, handle.get_tensor(name)


def _tensors(folder: Path, config: dict[str, Any], quant: str) -> Iterator[tuple[str, np.ndarray, Any]]:
    """(GGUF name, data, GGML type) per tensor: float32 vectors, f16 or Q8_0 matrices."""
    import gguf

    blocks = int(config["num_hidden_layers"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, blocks)
    tied = bool(config.get("tie_word_embeddings", False))
    for name, tensor in _weights(folder):
        if name.endswith("rotary_emb.inv_freq") or (tied and name == "lm_head.weight"):
            continue  # recomputed by llama.cpp; a tied head is the embedding, which llama.cpp reuses
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise TuneforgeError(f"the model has a tensor '{name}' that llama.cpp's Llama architecture has no "
                                 "place for", fix=CONVERT_HINT)
        data = tensor.float().numpy()
        if name.endswith(("q_proj.weight", "q_proj.bias")):
            data = _permute(data, heads)
        elif name.endswith(("k_proj.weight", "k_proj.bias")):
            data = _permute(data, kv_heads)
        yield (target, *_encode(data, quant))
    rope = _rope(config)
    if rope["type"] == "llama3":
        yield (gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", _llama3_rope_factors(config, rope),
               gguf.GGMLQuantizationType.F32)


def _encode(data: np.ndarray, quant: str) -> tuple[np.ndarray, Any]:
    import gguf

    if data.ndim == 1:  # norms and biases: llama.cpp computes them in float32
        return data.astype(np.float32), gguf.GGMLQuantizationType.F32
    if quant == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        return gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0
    return data.astype(np.float16), gguf.GGMLQuantizationType.F16  # rows not a whole number of Q8_0 blocks


def _llama3_rope_factors(config: dict[str, Any], rope: dict[str, Any]) -> np.ndarray:
    """Llama 3.1's per-frequency rotary scaling, which llama.cpp reads from a rope_freqs tensor."""
    head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // int(config["num_attention_heads"]))
    factor = float(rope.get("factor", 8.0))
    low, high = float(rope.get("low_freq_factor", 1.0)), float(rope.get("high_freq_factor", 4.0))
    original = float(rope.get("original_max_position_embeddings", 8192))
    factors = []
    for index in range(0, head_dim, 2):
        wavelength = 2 * math.pi * rope["theta"] ** (index / head_dim)
        if wavelength < original / high:
            factors.append(1.0)
        elif wavelength > original / low:
            factors.append(factor)
        else:
            smooth = (original / wavelength - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)


# ------------------------------------------------------------------------------------------------------
# Tokenizer
# ------------------------------------------------------------------------------------------------------

def tokenizer_kind(spec: dict[str, Any]) -> tuple[str, str | None]:
    """(llama.cpp tokenizer model, pre-tokenizer) for a tokenizer.json: ("gpt2", name) for byte-level BPE,
    ("llama", None) for SentencePiece-style BPE with byte fallback; anything else is refused."""
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise TuneforgeError(f"the tokenizer is a {model.get('type')} model; GGUF export writes BPE tokenizers "
                             "(byte-level like Llama 3, or SentencePiece-style like Llama 2)", fix=CONVERT_HINT)
    if model.get("byte_fallback"):
        return "llama", None
    pre = _byte_level_pre(spec.get("pre_tokenizer") or {})
    if pre is None or spec.get("normalizer") is not None:
        raise TuneforgeError("the tokenizer splits text in a way this exporter does not name for llama.cpp (known: "
                             "GPT-2, Llama 3 and SmolLM byte-level BPE)", fix=CONVERT_HINT)
    return "gpt2", pre


def _byte_level_pre(pre: dict[str, Any]) -> str | None:
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    last = steps[-1] if steps else {}
    if kinds[-1:] != ["ByteLevel"] or last.get("add_prefix_space"):
        return None
    if kinds == ["ByteLevel"] and last.get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and last.get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not last.get("use_regex", True) and \
            (steps[0].get("pattern") or {}).get("Regex") == LLAMA3_SPLIT:
        return "llama-bpe"
    return None


def _merge_scores(spec: dict[str, Any]) -> dict[str, float]:
    """SentencePiece-style scores from BPE merge ranks: llama.cpp's tokenizer merges the highest score first,
    Transformers' the earliest merge, so score = -rank makes both merge in the same order."""
    scores: dict[str, float] = {}
    for rank, merge in enumerate(spec["model"].get("merges") or []):
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        scores.setdefault(left + right, -float(rank))
    return scores


def _add_tokenizer(writer: Any, tokenizer: Any, folder: Path, vocab_size: int) -> None:
    import gguf

    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8")) \
        if (folder / "tokenizer.json").is_file() else {}
    if not spec:
        raise TuneforgeError(f"{folder} has no tokenizer.json", fix=CONVERT_HINT)
    kind, pre = tokenizer_kind(spec)
    scores_by_text = _merge_scores(spec) if kind == "llama" else {}
    vocabulary = {index: text for text, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    if max(vocabulary) >= vocab_size:
        raise TuneforgeError(f"the tokenizer has token ids up to {max(vocabulary)} but the model only "
                             f"{vocab_size} embeddings", fix="resize the model's embeddings to the tokenizer")
    tokens: list[str] = []
    scores: list[float] = []
    types: list[int] = []
    for index in range(vocab_size):
        text = vocabulary.get(index)
        if text is None:  # embeddings padded past the tokenizer
            tokens.append(f"[PAD{index}]")
            scores.append(-1000.0)
            types.append(gguf.TokenType.UNUSED)
            continue
        if kind == "llama" and len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
            kind_of, score = gguf.TokenType.BYTE, 0.0  # byte fallback pieces, however the tokenizer lists them
        elif index in added:
            kind_of = gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED
            score = -1000.0
        else:
            kind_of, score = gguf.TokenType.NORMAL, scores_by_text.get(text, 0.0)
        if index == tokenizer.unk_token_id and kind == "llama":
            kind_of = gguf.TokenType.UNKNOWN
        tokens.append(text)
        scores.append(score)
        types.append(kind_of)
    writer.add_tokenizer_model(kind)
    if pre is not None:
        writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    if kind == "llama":
        writer.add_add_space_prefix(_adds_space_prefix(spec))
    special = gguf.SpecialVocab(folder, load_merges=kind == "gpt2", n_vocab=vocab_size)
    probe = tokenizer("a")["input_ids"]  # what the tokenizer adds around a text, as llama.cpp should
    special.add_special_token = {"bos": bool(probe) and probe[0] == tokenizer.bos_token_id,
                                 "eos": bool(probe) and probe[-1] == tokenizer.eos_token_id}
    if getattr(tokenizer, "chat_template", None):
        special.chat_template = tokenizer.chat_template
    special.add_to_gguf(writer, quiet=True)


def _adds_space_prefix(spec: dict[str, Any]) -> bool:
    """Whether a SentencePiece-style tokenizer puts '▁' before the text (a Prepend normalizer or a Metaspace
    pre-tokenizer that prepends)."""
    normalizer = spec.get("normalizer") or {}
    steps = normalizer.get("normalizers", [normalizer])
    if any(step.get("type") == "Prepend" and step.get("prepend") == SPM_SPACE for step in steps):
        return True
    pre = spec.get("pre_tokenizer") or {}
    for step in pre.get("pretokenizers", [pre]):
        if step.get("type") == "Metaspace":
            return step.get("prepend_scheme", "always") != "never" and step.get("add_prefix_space", True)
    return False
