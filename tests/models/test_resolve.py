"""Model names resolve offline first: bundled aliases, local folders, runs; weights only from safetensors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, BertConfig, BertModel

from tuneforge.errors import ModelNotFoundError
from tuneforge.models import resolve
from tuneforge.models.catalog import list_offline_models, safetensors_parameters
from tuneforge.models.loading import load_sequence_model
from tuneforge.models.resolve import resolve_model
from tuneforge.recipe import ModelSpec


@pytest.mark.parametrize("name", ["minilm", "MiniLM", "sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"])
def test_bundled_aliases_resolve_to_the_packaged_folder(name):
    resolved = resolve_model(name)
    assert resolved.source == "bundled"
    assert (Path(resolved.path) / "config.json").is_file()
    assert (Path(resolved.path) / "model.safetensors").is_file()


def test_local_folder_and_run_directory(tiny_model, tmp_path):
    assert resolve_model(str(tiny_model)) == resolve_model(str(tiny_model)).__class__(str(tiny_model),
                                                                                   str(tiny_model), "local")
    run = tmp_path / "run"
    shutil.copytree(tiny_model, run / "model")
    (run / "recipe.yaml").write_text("task: classification\n")
    resolved = resolve_model(str(run))
    assert resolved.source == "run" and resolved.path == str(run / "model")


def test_folder_without_a_model_is_explained(tmp_path):
    with pytest.raises(ModelNotFoundError) as error:
        resolve_model(str(tmp_path))
    assert "no config.json" in error.value.message and error.value.fix


def test_missing_local_path_is_explained():
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model("./no/such/folder")


def test_hub_ids_are_left_to_the_hub_when_it_is_reachable(monkeypatch):
    monkeypatch.setattr(resolve, "hub_reachable", lambda: True)
    resolved = resolve_model("FacebookAI/roberta-base")
    assert resolved.source == "hub" and resolved.path == "FacebookAI/roberta-base" and not resolved.offline


def test_unreachable_hub_fails_at_once_unless_the_model_is_cached(monkeypatch):
    monkeypatch.setattr(resolve, "hub_reachable", lambda: False)
    monkeypatch.setattr(resolve, "in_hub_cache", lambda name: name == "someone/cached")
    with pytest.raises(ModelNotFoundError) as error:
        resolve_model("FacebookAI/roberta-base")
    assert "cannot be reached" in error.value.message and "tuneforge models" in error.value.fix
    cached = resolve_model("someone/cached")
    assert cached.source == "hub" and cached.offline  # loaded with local_files_only: no retries


def test_hf_hub_offline_means_unreachable_without_a_connection_attempt(monkeypatch):
    def no_connection(*args, **kwargs):
        raise AssertionError("must not try to connect")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(resolve.socket, "create_connection", no_connection)
    resolve.hub_reachable.cache_clear()
    try:
        assert resolve.hub_reachable() is False
    finally:
        resolve.hub_reachable.cache_clear()


def test_pickled_weights_are_refused(tiny_model, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model, folder)
    model = AutoModel.from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ModelNotFoundError) as error:
        load_sequence_model(ModelSpec(name=str(folder)), "classification", ["a", "b"])
    assert "safetensors" in error.value.message


def test_head_is_sized_from_the_labels(tiny_model):
    model = load_sequence_model(ModelSpec(name=str(tiny_model)), "classification", ["x", "y", "z", "w"])
    assert model.config.num_labels == 4 and model.config.id2label[3] == "w"
    regression = load_sequence_model(ModelSpec(name=str(tiny_model)), "regression", None)
    assert regression.config.num_labels == 1 and regression.config.problem_type == "regression"


def test_parameter_count_from_the_header_matches_the_loaded_model(tiny_model):
    loaded = BertModel.from_pretrained(tiny_model)
    assert safetensors_parameters(tiny_model / "model.safetensors") == sum(p.numel() for p in loaded.parameters())


def test_catalog_lists_bundled_local_runs_and_hub_cache(tiny_model, tmp_path):
    models_dir = tmp_path / "models"
    shutil.copytree(tiny_model, models_dir / "tiny")
    run = tmp_path / "runs" / "first"
    shutil.copytree(tiny_model, run / "model")
    (run / "recipe.yaml").write_text("task: classification\n")
    snapshot = tmp_path / "hub" / "models--someone--small" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                         intermediate_size=8)).save_pretrained(snapshot)
    found = {info.name: info for info in list_offline_models([models_dir, tmp_path / "runs"], tmp_path / "hub")}
    assert found["minilm"].source == "bundled"
    assert found["minilm"].parameters is not None and 22e6 < found["minilm"].parameters < 23e6
    assert found[str(models_dir / "tiny")].source == "local"
    assert found[str(run)].source == "run"
    assert found["someone/small"].source == "hub-cache"


def test_a_checkpoint_stored_in_bf16_is_trained_in_fp32(tiny_model, tmp_path):
    folder = tmp_path / "bf16"
    shutil.copytree(tiny_model, folder)
    model = AutoModel.from_pretrained(folder).to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    loaded = load_sequence_model(ModelSpec(name=str(folder)), "classification", ["a", "b"])
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
