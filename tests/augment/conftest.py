"""Fixtures for the augmenters: the real WordNet database and Apertium, skipped where absent unless CI is set."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def require(what: str, present: bool, install: str) -> None:
    """Skip on a developer machine without the resource; under CI (the CI variable set) fail instead."""
    if present:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {what} is missing; .ci/run should have installed it ({install})")
    pytest.skip(f"{what} is not installed ({install}); under CI this is a failure")


@pytest.fixture(scope="session")
def wordnet():
    from tuneforge.augment.wordnet import load_wordnet
    from tuneforge.errors import TuneforgeError

    try:
        return load_wordnet()
    except TuneforgeError:
        require("the WordNet database", False, "apt-get install wordnet-base")


@pytest.fixture(scope="session")
def apertium() -> str:
    binary = shutil.which("apertium")
    require("the apertium command", binary is not None, "apt-get install apertium apertium-eng-spa")
    modes = subprocess.run([binary, "-l"], capture_output=True, text=True, timeout=30).stdout.split()
    require("Apertium's English-Spanish pair", {"eng-spa", "spa-eng"} <= set(modes), "apt-get install apertium-eng-spa")
    return binary


def _tokenizer(folder, texts):
    """A byte-level BPE trained on `texts`, with the specials a generator needs, saved beside the model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=list(specials.values()),
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, model_max_length=256, **specials)
    tokenizer.save_pretrained(folder)
    return tokenizer


def _texts():
    from tests.conftest import make_rows

    return [row["text"] for row in make_rows(120, seed=1)] + ["Paraphrase:", "Examples of texts:", "- \n"]


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory):
    """A randomly initialised 2-layer GPT-2: it generates garbage, which is what the filter must catch."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = _tokenizer(folder, _texts())
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=256,
                        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny-t5")
    tokenizer = _tokenizer(folder, _texts())
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                      num_heads=4, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_mlm(tmp_path_factory):
    """A randomly initialised 2-layer BERT with its masked-LM head, and a WordPiece vocabulary of the fixtures."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-mlm")
    raw = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    raw.normalizer = normalizers.BertNormalizer(lowercase=True)
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    raw.train_from_iterator(_texts(), trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tokenizer = BertTokenizer(vocab=raw.get_vocab(), do_lower_case=True, model_max_length=128)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=0)
    BertForMaskedLM(config).save_pretrained(folder)
    return folder
