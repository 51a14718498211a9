"""Back-translation: the real Apertium round trip, its batching, its failures, and the Transformers path."""

from __future__ import annotations

import random
import stat
from pathlib import Path

import pytest

from tuneforge.augment.back_translation import Apertium, BackTranslation
from tuneforge.augment.base import normalise
from tuneforge.errors import RecipeError, TuneforgeError
from tuneforge.recipe import recipe_from_dict

TEXTS = ["The movie was surprisingly good.", "A cheap room, dirty but friendly staff.",
         "She went to the store with her brother yesterday."]


def test_round_trip_rewords_and_keeps_text(apertium):
    variants = BackTranslation(pivots=["spa"]).augment(TEXTS, [1, 1, 1], random.Random(0))
    assert all(len(found) == 1 and found[0].strip() for found in variants)
    changed = [found[0] for text, found in zip(TEXTS, variants, strict=True) if normalise(found[0]) != normalise(text)]
    assert len(changed) >= 2, variants  # e.g. "The film was surprisingly well."
    assert "film" in variants[0][0]


def test_batches_stay_aligned_with_their_texts(apertium):
    texts = [f"I have {number} cats.\nThey sleep." for number in range(60)]
    out = Apertium("eng", "spa", batch_size=40)(texts)
    assert len(out) == len(texts)
    for number, text in enumerate(out):
        assert f" {number} " in f" {text} " and "\n" not in text


def test_missing_language_pair_names_the_package(apertium):
    with pytest.raises(TuneforgeError) as error:
        BackTranslation(pivots=["xyz"]).augment(TEXTS[:1], [1], random.Random(0))
    assert "eng-xyz" in error.value.message and "apt-get install apertium apertium-eng-xyz" in error.value.fix


def test_missing_apertium_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TuneforgeError) as error:
        BackTranslation().augment(TEXTS[:1], [1], random.Random(0))
    assert "apertium" in error.value.message and "apt-get install apertium apertium-eng-spa" in error.value.fix


def fake_apertium(folder: Path, body: str) -> None:
    script = folder / "apertium"
    listing = 'if [ "$1" = "-l" ]; then printf "eng-spa\\nspa-eng\\n"; exit 0; fi\n'
    script.write_text("#!/bin/sh\nPATH=/usr/bin:/bin\n" + listing + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_a_stuck_translation_times_out_instead_of_hanging(monkeypatch, tmp_path):
    fake_apertium(tmp_path, "exec sleep 30\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TuneforgeError, match="took longer than 0.5 s"):
        BackTranslation(timeout=0.5).augment(TEXTS, [1, 1, 1], random.Random(0))


def test_each_variant_takes_another_pivot(monkeypatch, tmp_path):
    # A stand-in that tags each text with the direction it went, so the route of every variant shows.
    fake_apertium(tmp_path, 'sed "s/$/ via $2/"\n')
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(Apertium, "check", lambda self: None)
    variants = BackTranslation(pivots=["spa", "cat"]).augment(TEXTS, [2, 1, 0], random.Random(0))
    assert sorted(v.split(" via ")[-1] for v in variants[0]) == ["cat-eng", "spa-eng"]
    assert len(variants[1]) == 1 and variants[2] == []


def test_ratio_above_the_pivot_count_is_a_recipe_error():
    with pytest.raises(RecipeError, match="needs at least 2 pivots"):
        recipe_from_dict({"augment": {"methods": [{"method": "back_translation", "ratio": 1.5}]}})
    with pytest.raises(RecipeError, match="pivots is an option of back_translation, not of synonym"):
        recipe_from_dict({"augment": {"methods": [{"method": "synonym", "pivots": ["spa"]}]}})


def build_tiny_t5(folder: Path) -> Path:
    """A 1-layer T5 and a word-level tokenizer trained here: the model is random, the code path is real."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    raw = Tokenizer(models.WordLevel(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(TEXTS * 3, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    tokenizer.save_pretrained(folder)
    import torch

    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tokenizer), d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    return folder


def test_named_transformers_models_translate_without_apertium(monkeypatch, tmp_path):
    model = str(build_tiny_t5(tmp_path / "t5"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no apertium anywhere: the models must be used
    augmenter = BackTranslation(pivots=["xx"], models={"xx": [model, model]})
    first = augmenter.augment(TEXTS, [1, 1, 1], random.Random(0))
    assert first == augmenter.augment(TEXTS, [1, 1, 1], random.Random(0))
    assert all(len(found) <= 1 and all(isinstance(v, str) and v.strip() for v in found) for found in first)


def test_a_model_that_cannot_load_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    augmenter = BackTranslation(pivots=["xx"], models={"xx": [str(tmp_path / "empty")] * 2})
    with pytest.raises(TuneforgeError, match="could not load the translation model"):
        augmenter.augment(TEXTS[:1], [1], random.Random(0))
