"""`tuneforge train --nproc 2`: two processes through torchrun (DDP over gloo on the CPU) finish one run whose
metrics.json has the single-process schema, written once by rank 0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import tuneforge
from tests.conftest import tiny_recipe
from tuneforge.cli.main import main
from tuneforge.errors import TuneforgeError
from tuneforge.recipe import recipe_from_dict
from tuneforge.train import distributed

QUICK = {"train": {"epochs": 1, "batch_size": 8}, "evaluation": {"explain_examples": 0},
         "fairness": {"counterfactual": False, "identity_categories": []}}


def quick_recipe(model: Path, files: dict[str, Path], output: Path) -> dict[str, Any]:
    recipe = tiny_recipe(model, files, output, **QUICK)
    recipe["output"]["tensorboard"] = "off"
    return recipe


def schema(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON document, with per-class and per-label names left out (they are data)."""
    if not isinstance(value, dict):
        return set()
    keys = set()
    for key, child in value.items():
        path = f"{prefix}.{key}" if prefix else key
        keys.add(path)
        if key not in ("per_class", "class_weights", "members"):
            keys |= schema(child, path)
    return keys


def test_two_processes_on_cpu_finish_with_the_single_process_schema(tiny_model, classification_files, tmp_path):
    single = tuneforge.fine_tune(quick_recipe(tiny_model, classification_files, tmp_path / "single"))
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(quick_recipe(tiny_model, classification_files, tmp_path / "ddp")))

    assert main(["train", str(recipe_file), "--nproc", "2"]) == 0

    run = tmp_path / "ddp"
    metrics = json.loads((run / "metrics.json").read_text())
    assert schema(metrics) == schema(single.metrics)
    assert metrics["training"]["processes"] == 2 and single.metrics["training"]["processes"] == 1
    # Each process sees half of the 90 rows per epoch: ceil(45 / 8) steps instead of ceil(90 / 8).
    assert metrics["training"]["global_steps"] == 6 and single.metrics["training"]["global_steps"] == 12
    assert metrics["validation"]["examples"] == 30 and metrics["test"]["examples"] == 30
    assert (run / "model" / "model.safetensors").is_file() and (run / "report.html").is_file()
    assert yaml.safe_load((run / "recipe.yaml").read_text())["output"]["dir"] == str(run.resolve())
    assert not list(run.glob(".*staging*"))
    predictor = tuneforge.load(run, device="cpu")
    assert len(predictor.predict(["good great food"])) == 1


def test_trainer_arguments_follow_the_strategy(monkeypatch):
    spec = recipe_from_dict({"train": {"distributed": {"strategy": "fsdp", "backend": "gloo"}}}).train.distributed
    assert distributed.trainer_arguments(spec) == {"ddp_backend": "gloo"}  # one process: nothing to shard
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    arguments = distributed.trainer_arguments(spec)
    assert arguments["fsdp"] == "full_shard auto_wrap" and arguments["ddp_backend"] == "gloo"
    zero = recipe_from_dict({"train": {"distributed": {"strategy": "deepspeed", "zero_stage": 3}}}).train.distributed
    monkeypatch.setattr(distributed.importlib.util, "find_spec", lambda name: object())
    assert distributed.trainer_arguments(zero)["deepspeed"]["zero_optimization"]["stage"] == 3


def test_deepspeed_without_the_package_is_a_clear_error(monkeypatch):
    spec = recipe_from_dict({"train": {"distributed": {"strategy": "deepspeed"}}}).train.distributed
    monkeypatch.setattr(distributed.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TuneforgeError, match="deepspeed package is not installed") as refused:
        distributed.check_strategy(spec)
    assert "pip install deepspeed" in refused.value.fix


def test_launch_recipe_makes_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = recipe_from_dict({"data": {"train": "train.csv"}})
    resolved = distributed.launch_recipe(recipe, Path("runs/x"))
    assert resolved.data.train == str(tmp_path / "train.csv")
    assert resolved.output.dir == str(tmp_path / "runs" / "x")
    command = distributed.launch_command(Path("r.yaml"), 2, ["--resume"])
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    assert command[-3:] == ["train", "r.yaml", "--resume"]


@pytest.mark.slow
def test_two_process_run_resumes_from_its_checkpoint(tiny_model, classification_files, tmp_path):
    recipe = quick_recipe(tiny_model, classification_files, tmp_path / "ddp")
    recipe["early_stopping"] = {"enabled": False}
    recipe["train"] = {**recipe["train"], "keep_checkpoints": True}  # to continue the finished run below
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(recipe_file), "--nproc", "2"]) == 0
    assert (tmp_path / "ddp" / "checkpoints" / "checkpoint-6" / "rng_state_1.pth").is_file()  # every rank's RNG

    # Continue the finished one-epoch run for a second epoch, from its checkpoint, in two processes again.
    assert main(["train", str(recipe_file), "--nproc", "2", "--resume", "--force", "--set", "train.epochs=2"]) == 0
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["training"]["global_steps"] == 12 and metrics["training"]["processes"] == 2
    steps = [json.loads(line)["step"] for line in (tmp_path / "ddp" / "logs.jsonl").read_text().splitlines()]
    assert min(steps) <= 2 and max(steps) == 12  # one history across the resume


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["multilabel", "token-classification", "generative"])
def test_every_kind_that_declares_nproc_trains_in_two_processes(kind, tiny_model, tiny_gpt2, tmp_path):
    from tests.train.test_skeleton import recipe_for
    from tuneforge.kinds import KINDS

    assert KINDS[kind].nproc
    recipe = recipe_for(kind, tmp_path / "data", {"bert": tiny_model, "gpt2": tiny_gpt2}, tmp_path / "ddp")
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(recipe_file), "--nproc", "2"]) == 0
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["training"]["processes"] == 2 and "validation" in metrics
    assert (tmp_path / "ddp" / "report.html").is_file()
