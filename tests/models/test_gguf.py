"""GGUF export: the file read back with gguf's own reader holds every tensor, the tokenizer and the chat template;
llama.cpp (llama-cpp-python, where installed) tokenizes like Transformers and generates the same greedy tokens."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge.cli.main import main
from tuneforge.errors import TuneforgeError
from tuneforge.models.gguf import LLAMA3_SPLIT, _permute, export_gguf, tokenizer_kind

gguf = pytest.importorskip("gguf")
HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
needs_llama_cpp = pytest.mark.skipif(not HAS_LLAMA_CPP, reason="llama-cpp-python is not installed")
CHAT = [{"role": "user", "content": "repeat: red cat"}]


def _fields(reader) -> dict:
    return {name: field.contents() for name, field in reader.fields.items()}


def _expected_tensors(run: Path) -> dict[str, tuple[int, ...]]:
    """GGUF name -> shape in GGML order (innermost dimension first) of every weight the run saved."""
    config = json.loads((run / "model" / "config.json").read_text())
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    weights = load_file(run / "model" / "model.safetensors")
    return {names.get_name(name, try_suffixes=(".weight", ".bias")): tuple(reversed(tensor.shape))
            for name, tensor in weights.items()}


@pytest.fixture(scope="module")
def f16_file(tiny_llama_chat_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_gguf(tiny_llama_chat_run, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_f16_file_holds_every_tensor_the_tokenizer_and_the_chat_template(tiny_llama_chat_run, f16_file):
    reader = gguf.GGUFReader(f16_file)
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    assert {name: tuple(int(n) for n in t.shape) for name, t in tensors.items()} == _expected_tensors(
        tiny_llama_chat_run)
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert tensors["blk.0.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.F16

    weights = load_file(tiny_llama_chat_run / "model" / "model.safetensors")
    down = weights["model.layers.0.mlp.down_proj.weight"].numpy()
    np.testing.assert_allclose(tensors["blk.0.ffn_down.weight"].data, down, atol=1e-3)
    query = _permute(weights["model.layers.1.self_attn.q_proj.weight"].numpy(), heads=4)
    np.testing.assert_allclose(tensors["blk.1.attn_q.weight"].data, query, atol=1e-3)

    fields = _fields(reader)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_chat_run / "model")
    vocabulary = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    assert fields["general.architecture"] == "llama" and fields["llama.block_count"] == 2
    assert fields["llama.attention.head_count_kv"] == 2 and fields["llama.context_length"] == 256
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    assert fields["tokenizer.ggml.tokens"] == [text for text, _ in vocabulary]
    assert len(fields["tokenizer.ggml.token_type"]) == len(vocabulary)
    assert fields["tokenizer.ggml.token_type"][tokenizer.eos_token_id] == gguf.TokenType.CONTROL
    assert len(fields["tokenizer.ggml.merges"]) == len(json.loads(
        (tiny_llama_chat_run / "model" / "tokenizer.json").read_text())["model"]["merges"])
    assert fields["tokenizer.ggml.bos_token_id"] == tokenizer.bos_token_id
    assert fields["tokenizer.ggml.eos_token_id"] == tokenizer.eos_token_id
    assert fields["tokenizer.ggml.add_bos_token"] is True and fields["tokenizer.ggml.add_eos_token"] is False
    assert fields["tokenizer.chat_template"] == tokenizer.chat_template
    assert fields["general.sampling.temp"] == 0.0  # the run generates greedily


def test_q8_0_is_smaller_and_close_to_the_weights(tiny_llama_chat_run, f16_file, tmp_path):
    path = export_gguf(tiny_llama_chat_run, tmp_path, quant="q8_0")
    assert path.name == f"{tiny_llama_chat_run.resolve().name}-q8_0.gguf"
    assert path.stat().st_size < f16_file.stat().st_size
    tensors = {tensor.name: tensor for tensor in gguf.GGUFReader(path).tensors}
    embedding = tensors["token_embd.weight"]
    assert embedding.tensor_type == gguf.GGMLQuantizationType.Q8_0
    original = load_file(tiny_llama_chat_run / "model" / "model.safetensors")["model.embed_tokens.weight"].numpy()
    restored = gguf.quants.dequantize(embedding.data, embedding.tensor_type)
    assert restored.shape == original.shape
    assert np.abs(restored - original).max() <= np.abs(original).max() / 127 + 1e-6  # one 8-bit step


def test_cli_writes_the_file_and_refuses_to_overwrite(tiny_llama_chat_run, tmp_path, capsys):
    output = tmp_path / "model.gguf"
    assert main(["export", str(tiny_llama_chat_run), "--format", "gguf", "--quant", "q8_0", "-o", str(output)]) == 0
    assert "GGUF model written" in capsys.readouterr().out and output.stat().st_size > 0
    assert main(["export", str(tiny_llama_chat_run), "--format", "gguf", "-o", str(output)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(tiny_llama_chat_run), "--format", "gguf", "--quant", "q4", "-o", str(output)]) == 1
    assert "f16 or q8_0" in capsys.readouterr().err


def test_other_architectures_are_refused_with_a_way_out(tiny_llama_chat_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_llama_chat_run, run)
    config = json.loads((run / "model" / "config.json").read_text())
    (run / "model" / "config.json").write_text(json.dumps({**config, "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(TuneforgeError, match="Llama-family") as refused:
        export_gguf(run, tmp_path / "out.gguf")
    assert "convert_hf_to_gguf" in refused.value.fix and not (tmp_path / "out.gguf").exists()


def test_tokenizer_kinds():
    llama3 = {"model": {"type": "BPE"}, "normalizer": None, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}}, {"type": "ByteLevel", "use_regex": False}]}}
    assert tokenizer_kind(llama3) == ("gpt2", "llama-bpe")
    assert tokenizer_kind({"model": {"type": "BPE", "byte_fallback": True}}) == ("llama", None)
    with pytest.raises(TuneforgeError, match="WordPiece"):
        tokenizer_kind({"model": {"type": "WordPiece"}})
    with pytest.raises(TuneforgeError, match="does not name"):
        tokenizer_kind({"model": {"type": "BPE"}, "pre_tokenizer": {"type": "Whitespace"}})


def _sentencepiece_style_run(source: Path, folder: Path) -> Path:
    """The chat run with its model replaced by a random tiny Llama whose tokenizer is SentencePiece-style BPE
    (byte fallback, '▁' for spaces), like Llama 2's and Mistral's."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from tests.tiny_generative import SPECIALS, _corpus

    run = folder / "spm-run"
    shutil.copytree(source, run, ignore=shutil.ignore_patterns("model"))
    learnt = Tokenizer(models.BPE(unk_token="<unk>"))
    learnt.normalizer = normalizers.Replace(" ", "▁")
    learnt.train_from_iterator(_corpus(), trainers.BpeTrainer(vocab_size=200, special_tokens=list(SPECIALS.values()),
                                                               initial_alphabet=["▁"]))
    model = json.loads(learnt.to_str())["model"]
    # Like Llama 2's: the specials, then the 256 byte pieces, then the learnt pieces, all in the model's vocabulary.
    pieces = [*SPECIALS.values(), *(f"<0x{value:02X}>" for value in range(256)),
              *(text for text, _ in sorted(model["vocab"].items(), key=lambda item: item[1])
                if text not in SPECIALS.values())]
    vocab = {text: index for index, text in enumerate(pieces)}
    merges = [tuple(merge) for merge in model["merges"]]
    raw = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True))
    raw.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    raw.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    raw.add_special_tokens(list(SPECIALS.values()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, **SPECIALS)
    tokenizer.chat_template = AutoTokenizer.from_pretrained(source / "model").chat_template
    tokenizer.save_pretrained(run / "model")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4,
                                 max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=0)
                     ).save_pretrained(run / "model")
    return run


def test_sentencepiece_style_tokenizer_is_written_as_llama_vocabulary(tiny_llama_chat_run, tmp_path):
    run = _sentencepiece_style_run(tiny_llama_chat_run, tmp_path)
    fields = _fields(gguf.GGUFReader(export_gguf(run, tmp_path / "spm.gguf")))
    assert fields["tokenizer.ggml.model"] == "llama" and "tokenizer.ggml.pre" not in fields
    assert "tokenizer.ggml.merges" not in fields and fields["tokenizer.ggml.add_space_prefix"] is True
    types, scores, tokens = (fields[f"tokenizer.ggml.{key}"] for key in ("token_type", "scores", "tokens"))
    assert types[tokens.index("<0x41>")] == gguf.TokenType.BYTE
    assert types[tokens.index("<unk>")] == gguf.TokenType.UNKNOWN
    merged = [index for index, text in enumerate(tokens) if text.startswith("▁") and len(text) > 3]
    assert merged and all(scores[index] < 0 for index in merged)  # merge order, earliest highest


# ------------------------------------------------------------------------------------------------------
# The file computed the way llama.cpp computes its "llama" architecture gives Transformers' logits
# ------------------------------------------------------------------------------------------------------

def _gguf_logits(path: Path, ids: list[int]) -> np.ndarray:
    """A plain numpy forward pass over the GGUF file with llama.cpp's conventions: weights as stored (dequantized),
    rotary embedding on adjacent pairs (its "normal" RoPE) with rope_freqs dividing the frequencies, grouped-query
    attention, RMS norms and SwiGLU. It knows nothing of Transformers' layout, so matching logits shows the
    export put every weight, row order and hyperparameter where llama.cpp looks for them."""
    reader = gguf.GGUFReader(path)
    fields = _fields(reader)

    def weight(name: str) -> np.ndarray:
        tensor = next(t for t in reader.tensors if t.name == name)
        return gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float64)

    names = {t.name for t in reader.tensors}
    heads, kv_heads = fields["llama.attention.head_count"], fields["llama.attention.head_count_kv"]
    head_dim = fields["llama.rope.dimension_count"]
    eps, base = fields["llama.attention.layer_norm_rms_epsilon"], fields["llama.rope.freq_base"]
    divisors = weight("rope_freqs.weight") if "rope_freqs.weight" in names else np.ones(head_dim // 2)
    angles = np.arange(len(ids))[:, None] * base ** (-np.arange(0, head_dim, 2) / head_dim) / divisors
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]

    def norm(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * scale

    def rope(x: np.ndarray) -> np.ndarray:  # (tokens, heads, head_dim), pairs (0, 1), (2, 3), ...
        even, odd = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = even * cos - odd * sin, even * sin + odd * cos
        return out

    x = weight("token_embd.weight")[ids]
    causal = np.triu(np.full((len(ids), len(ids)), -np.inf), 1)
    for block in range(fields["llama.block_count"]):
        h = norm(x, weight(f"blk.{block}.attn_norm.weight"))
        q = rope((h @ weight(f"blk.{block}.attn_q.weight").T).reshape(len(ids), heads, head_dim))
        k = rope((h @ weight(f"blk.{block}.attn_k.weight").T).reshape(len(ids), kv_heads, head_dim))
        v = (h @ weight(f"blk.{block}.attn_v.weight").T).reshape(len(ids), kv_heads, head_dim)
        k, v = (np.repeat(t, heads // kv_heads, axis=1) for t in (k, v))
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(head_dim) + causal
        attention = np.exp(scores - scores.max(-1, keepdims=True))
        attention /= attention.sum(-1, keepdims=True)
        mixed = np.einsum("hqk,khd->qhd", attention, v).reshape(len(ids), heads * head_dim)
        x = x + mixed @ weight(f"blk.{block}.attn_output.weight").T
        h = norm(x, weight(f"blk.{block}.ffn_norm.weight"))
        gate, up = h @ weight(f"blk.{block}.ffn_gate.weight").T, h @ weight(f"blk.{block}.ffn_up.weight").T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ weight(f"blk.{block}.ffn_down.weight").T
    head = weight("output.weight") if "output.weight" in names else weight("token_embd.weight")
    return norm(x, weight("output_norm.weight")) @ head.T


def _hf_logits(folder: Path, ids: list[int]) -> np.ndarray:
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double().numpy()


@pytest.mark.parametrize("quant, tolerance", [("f16", 0.02), ("q8_0", 0.1)])
def test_llama_cpp_conventions_give_transformers_logits(tiny_llama_chat_run, tmp_path, quant, tolerance):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_chat_run / "model")
    ids = tokenizer(tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True))["input_ids"]
    path = export_gguf(tiny_llama_chat_run, tmp_path / "model.gguf", quant=quant)
    expected, ours = _hf_logits(tiny_llama_chat_run / "model", ids), _gguf_logits(path, ids)
    assert np.abs(ours - expected).max() < tolerance * np.abs(expected).max()
    assert (ours.argmax(-1) == expected.argmax(-1)).mean() > 0.9


def test_llama3_rotary_scaling_and_tied_embeddings(tiny_llama_chat_run, tmp_path):
    """Llama 3.2's shape: per-frequency rotary scaling (a rope_freqs tensor) and the output head tied to the
    embeddings (no output tensor: llama.cpp reuses token_embd)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    run = tmp_path / "run"
    shutil.copytree(tiny_llama_chat_run, run, ignore=shutil.ignore_patterns("model.safetensors", "config.json"))
    config = LlamaConfig.from_pretrained(tiny_llama_chat_run / "model")
    config.tie_word_embeddings = True
    config.initializer_range = 0.2  # attention weighs enough in the logits for a wrong rotation to show
    config.rope_parameters = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
    torch.manual_seed(1)
    LlamaForCausalLM(config).save_pretrained(run / "model")
    path = export_gguf(run, tmp_path / "llama3.gguf")
    names = {tensor.name for tensor in gguf.GGUFReader(path).tensors}
    assert "rope_freqs.weight" in names and "output.weight" not in names
    ids = list(range(5, 60))  # positions long enough for the scaled low frequencies to matter
    expected, ours = _hf_logits(run / "model", ids), _gguf_logits(path, ids)
    assert np.abs(ours - expected).max() < 0.02 * np.abs(expected).max()


# ------------------------------------------------------------------------------------------------------
# llama.cpp reads the file as Transformers would
# ------------------------------------------------------------------------------------------------------

def _llama(path: Path):
    from llama_cpp import Llama

    return Llama(model_path=str(path), n_ctx=128, n_threads=1, n_batch=64, logits_all=True, verbose=False,
                 seed=0)


@needs_llama_cpp
def test_llama_cpp_generates_the_same_greedy_tokens(tiny_llama_chat_run, f16_file):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_chat_run / "model")
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_chat_run / "model").eval()
    prompt = tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt)["input_ids"]
    llm = _llama(f16_file)
    assert llm.tokenize(prompt.encode(), add_bos=True, special=True) == ids

    llm.eval(ids)
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0].numpy()
    assert np.abs(np.asarray(llm.scores[:len(ids)]) - expected).max() < 2e-2  # f16 weights

    with torch.no_grad():
        greedy = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id)[0, len(ids):].tolist()
    llm.reset()
    ours: list[int] = []
    for token in llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0):
        ours.append(token)
        if token == tokenizer.eos_token_id or len(ours) == len(greedy):
            break
    assert ours == greedy


@needs_llama_cpp
def test_llama_cpp_tokenizes_sentencepiece_style_like_transformers(tiny_llama_chat_run, tmp_path):
    run = _sentencepiece_style_run(tiny_llama_chat_run, tmp_path)
    llm = _llama(export_gguf(run, tmp_path / "spm.gguf"))
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    for text in ["repeat: red cat", "hello world", " two  spaces", "über 42 ✓"]:
        assert llm.tokenize(text.encode(), add_bos=False) == tokenizer(text, add_special_tokens=False)["input_ids"]
