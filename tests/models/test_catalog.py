"""The model catalog: curated entries whose figures agree with their configs, filters, offline availability, CLI."""

from __future__ import annotations

import json
import shutil

import pytest

from tuneforge.cli.main import main
from tuneforge.models.catalog import (
    DOMAINS,
    FAMILIES,
    TASKS,
    build_catalog,
    filter_catalog,
    find_entry,
    known_models,
    suggest,
)
from tuneforge.models.shapes import build_meta_model, shape_of

# Sizes as the model cards publish them (rounded), to catch a wrong hyperparameter in known_models.yaml.
PUBLISHED = {
    "google-bert/bert-base-uncased": 110e6, "google-bert/bert-large-uncased": 340e6,
    "FacebookAI/roberta-base": 125e6, "FacebookAI/roberta-large": 355e6, "distilbert/distilbert-base-uncased": 66e6,
    "microsoft/deberta-v3-base": 184e6, "FacebookAI/xlm-roberta-large": 560e6, "google-t5/t5-small": 60e6,
    "google/flan-t5-small": 77e6, "google/mt5-small": 300e6, "facebook/bart-large": 406e6,
    "openai-community/gpt2": 124e6, "openai-community/gpt2-medium": 355e6, "meta-llama/Llama-3.2-1B": 1.24e9,
    "meta-llama/Llama-3.1-8B": 8.03e9, "Qwen/Qwen2.5-0.5B": 0.49e9, "Qwen/Qwen2.5-7B": 7.61e9,
    "mistralai/Mistral-7B-v0.3": 7.25e9, "microsoft/Phi-3-mini-4k-instruct": 3.8e9,
    "HuggingFaceTB/SmolLM2-135M": 135e6, "HuggingFaceTB/SmolLM2-1.7B": 1.7e9,
}


def test_every_entry_is_complete_and_unique():
    entries = known_models()
    assert len(entries) >= 45
    names = [entry.name for entry in entries]
    assert len(names) == len(set(names))
    aliases = [alias.lower() for entry in entries for alias in entry.aliases]
    assert len(aliases) == len(set(aliases))
    for entry in entries:
        assert entry.family in FAMILIES and entry.domain in DOMAINS, entry.name
        assert entry.languages and entry.parameters and entry.config, entry.name
        assert set(entry.tasks) <= set(TASKS), entry.name
        assert entry.availability in ("hub", "bundled"), entry.name


def test_published_sizes_agree_with_the_catalog():
    for name, size in PUBLISHED.items():
        entry = find_entry(name)
        assert entry is not None, name
        assert entry.parameters == pytest.approx(size, rel=0.03), name


@pytest.mark.parametrize("entry", known_models(), ids=lambda entry: entry.name)
def test_parameters_match_the_model_built_from_the_stored_config(entry):
    family_task = {"encoder": "token-classification", "decoder": "generation", "encoder-decoder": "generation"}
    model = build_meta_model({"model_type": entry.architecture, **entry.config}, family_task[entry.family])
    shape = shape_of(model, entry.name, family_task[entry.family], targets=())
    expected = entry.parameters
    if entry.family == "encoder":
        expected += shape.head_parameters  # the token-classification head on top of the body
    if entry.config.get("tie_word_embeddings") is False and entry.architecture in ("t5", "mt5"):
        # The checkpoint has its own LM head; transformers 5 always ties T5's to the embeddings.
        expected -= entry.config["vocab_size"] * entry.config["d_model"]
    assert shape.parameters == pytest.approx(expected, rel=0.01)


def test_filters_combine():
    entries = known_models()
    swahili = filter_catalog(entries, language="sw")
    assert swahili and all(entry.supports_language("sw") for entry in swahili)
    assert {"FacebookAI/xlm-roberta-base", "Davlan/afro-xlmr-base", "google/mt5-small"} <= {e.name for e in swahili}
    legal = filter_catalog(entries, domain="legal", family="encoder")
    assert [entry.name for entry in legal] == ["nlpaueb/legal-bert-base-uncased"]
    decoders = filter_catalog(entries, family="decoder", task="generation")
    assert decoders and all(entry.family == "decoder" for entry in decoders)
    assert not filter_catalog(entries, family="decoder", task="token-classification")
    assert filter_catalog(entries, language="iw") == filter_catalog(entries, language="he")  # old code for Hebrew


def test_find_and_suggest():
    assert find_entry("minilm").name == "sentence-transformers/all-MiniLM-L6-v2"
    assert find_entry("ROBERTA-BASE").name == "FacebookAI/roberta-base"
    assert find_entry("no-such-model") is None
    assert "FacebookAI/roberta-base" in suggest("robeta-base")


def test_offline_availability(tiny_model, tmp_path):
    from transformers import BertConfig, BertModel

    models_dir = tmp_path / "models"
    shutil.copytree(tiny_model, models_dir / "tiny")
    snapshot = tmp_path / "hub" / "models--FacebookAI--roberta-base" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                         intermediate_size=8)).save_pretrained(snapshot)
    entries = {entry.name: entry for entry in build_catalog([models_dir], tmp_path / "hub")}
    minilm = entries["sentence-transformers/all-MiniLM-L6-v2"]
    assert minilm.availability == "bundled" and minilm.offline and "minilm" in minilm.aliases
    assert entries["FacebookAI/roberta-base"].availability == "hub-cache"
    assert entries["google-bert/bert-base-uncased"].availability == "hub" and not entries[
        "google-bert/bert-base-uncased"].offline
    local = entries[str(models_dir / "tiny")]
    assert local.availability == "local" and local.family == "encoder" and local.languages == ()
    offline = filter_catalog(entries.values(), offline=True)
    assert {entry.availability for entry in offline} == {"bundled", "hub-cache", "local"}


def test_cli_json_filters(capsys):
    assert main(["models", "--language", "sw", "--family", "encoder", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all("sw" in row["languages"] and row["family"] == "encoder" for row in rows)
    assert {"name", "parameters", "licence", "context_length", "tasks", "available_offline"} <= set(rows[0])
    assert main(["models", "--offline", "--json"]) == 0
    offline = json.loads(capsys.readouterr().out)
    assert "sentence-transformers/all-MiniLM-L6-v2" in {row["name"] for row in offline}
    assert all(row["available_offline"] for row in offline)


def test_cli_table_and_bad_filter(capsys, monkeypatch):
    from tuneforge.cli.display import console

    monkeypatch.setattr(console, "_width", 200)  # a wide terminal: every column, no folded names
    assert main(["models", "--domain", "legal"]) == 0
    out = capsys.readouterr().out
    assert "nlpaueb/legal-bert-base-uncased" in out and "cc-by-sa-4.0" in out and "cls reg tok qa" in out
    assert main(["models", "--family", "encodr"]) == 1
    err = capsys.readouterr().err
    assert "unknown family 'encodr'" in err and "encoder-decoder" in err and "Traceback" not in err
