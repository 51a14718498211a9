"""LoRA and (IA)3 for token classification: only adapter and tagging head train, adapter/ holds them alone, and
the merged model/, base + adapter, `tuneforge.load` and `tuneforge export --merge` all tag alike."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForTokenClassification, AutoTokenizer

import tuneforge
from tests.conftest import build_tiny_bert, tiny_recipe
from tests.train.test_peft_training import Snapshots, is_adapter_or_head
from tests.train.test_token_classification_run import FILLER, PEOPLE, PLACES, sentences, write_conll
from tuneforge.cli.main import main
from tuneforge.models.peft import load_adapter_model
from tuneforge.recipe import recipe_from_dict

WORDS = [["mary", "went", "to", "new", "lagos"], ["we", "saw", "john", "today"]]
QUICK = {"early_stopping": {"enabled": False}, "evaluation": {"explain_examples": 0},
         "fairness": {"identity_categories": [], "counterfactual": False}}


@pytest.fixture(scope="module")
def tagger_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("peft-ner")
    model = build_tiny_bert(folder / "model", [" ".join(PEOPLE + PLACES + FILLER + ["new"])] * 20)
    files = {"train": write_conll(folder / "train.txt", sentences(48, 11)),
             "validation": write_conll(folder / "dev.txt", sentences(12, 12))}
    return model, files, folder


_RUNS: dict[str, tuple] = {}


@pytest.fixture(scope="module")
def peft_tagger(tagger_data):
    model, files, folder = tagger_data

    def train(method: str):
        if method not in _RUNS:
            snapshots = Snapshots()
            recipe = tiny_recipe(model, files, folder / f"run-{method}", peft={"method": method, "r": 4},
                                 train={"epochs": 4, "learning_rate": 3e-2, "group_by_length": False}, **QUICK)
            _RUNS[method] = (tuneforge.fine_tune({**recipe, "task": "ner"}, callbacks=[snapshots]), snapshots)
        return _RUNS[method]

    yield train
    _RUNS.clear()


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_only_adapter_and_tagging_head_change(peft_tagger, method):
    run, snapshots = peft_tagger(method)
    before, after = snapshots.weights["begin"], snapshots.weights["end"]
    assert snapshots.trainable and all(is_adapter_or_head(name) for name in snapshots.trainable)
    assert any(".classifier.modules_to_save." in name for name in snapshots.trainable)
    for key, value in after.items():
        if key in snapshots.trainable:
            assert not torch.equal(value, before[key]), f"trainable {key} did not move"
        else:
            assert torch.equal(value, before[key]), f"base weight {key} changed"
    config = json.loads((run.layout.adapter / "adapter_config.json").read_text())
    assert config["task_type"] == "TOKEN_CLS"
    head = json.loads((run.layout.adapter / "head.json").read_text())
    assert head["task"] == "token-classification" and head["labels"] == run.metrics["labels"]
    saved = load_file(run.layout.adapter / "adapter_model.safetensors")  # adapter and head, no base weight
    assert saved and all(is_adapter_or_head(key) or "classifier" in key for key in saved)
    assert not any("word_embeddings" in key for key in saved)


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_merged_tagger_equals_base_plus_adapter(peft_tagger, method, tmp_path):
    run, _ = peft_tagger(method)
    layout = run.layout
    tokenizer = AutoTokenizer.from_pretrained(layout.model)
    encoded = tokenizer(WORDS, is_split_into_words=True, padding=True, return_tensors="pt")
    merged = AutoModelForTokenClassification.from_pretrained(layout.model).eval()
    unmerged, _ = load_adapter_model(layout.root)
    assert isinstance(unmerged, PeftModel)
    with torch.no_grad():
        ours, theirs = merged(**encoded).logits, unmerged(**encoded).logits
    assert ours.shape[-1] == len(run.metrics["labels"])
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()

    tagged = tuneforge.load(layout.root, device="cpu").tag(WORDS)
    expected = ours.argmax(-1)
    for index, row in enumerate(tagged):  # first sub-word of each word carries its tag
        word_ids = encoded.word_ids(index)
        firsts = [position for position, word in enumerate(word_ids)
                  if word is not None and (position == 0 or word_ids[position - 1] != word)]
        assert row["tags"] == [run.metrics["labels"][int(expected[index, p])] for p in firsts]

    exported = tmp_path / "merged"
    assert main(["export", str(layout.root), "--merge", "--output", str(exported)]) == 0
    with torch.no_grad():
        again = AutoModelForTokenClassification.from_pretrained(exported).eval()(**encoded).logits
    assert torch.allclose(again, ours, atol=1e-5)


def test_lora_tagger_learns(peft_tagger):
    run, _ = peft_tagger("lora")
    assert run.metrics["validation"]["f1"] > 0.3  # persons and places are given away by the word itself


def test_prompt_tuning_is_refused_for_tagging_with_the_fix():
    with pytest.raises(Exception, match="lora or ia3"):
        recipe_from_dict({"task": "ner", "peft": {"method": "prompt_tuning"}})
