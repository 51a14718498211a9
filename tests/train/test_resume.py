"""A crash or Ctrl-C mid-training loses nothing: `--resume` continues to the same result."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

import tuneforge
from tests.conftest import tiny_recipe
from tuneforge.cli.main import main
from tuneforge.errors import TuneforgeError
from tuneforge.train.trainer import TrainingInterrupted


class InterruptAt(TrainerCallback):
    """Simulates Ctrl-C after a given optimisation step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.global_step == self.step:
            raise KeyboardInterrupt


def recipe_for(model, files, output):
    # 90 rows / batch 8 = 12 steps per epoch; 3 epochs; interrupting at step 17 is mid-epoch 2.
    return tiny_recipe(model, files, output, train={"epochs": 3}, early_stopping={"enabled": False})


def test_interrupted_run_resumes_to_the_uninterrupted_result(tiny_model, classification_files, tmp_path):
    reference = tuneforge.fine_tune(recipe_for(tiny_model, classification_files, tmp_path / "reference"))

    recipe = recipe_for(tiny_model, classification_files, tmp_path / "run")
    with pytest.raises(TrainingInterrupted) as stopped:
        tuneforge.fine_tune(recipe, callbacks=[InterruptAt(17)])
    assert stopped.value.exit_code == 130
    assert "--resume" in stopped.value.fix
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-17").is_dir()
    assert not (tmp_path / "run" / "model").exists()

    resumed = tuneforge.fine_tune(recipe, resume=True)
    assert resumed.metrics["training"]["global_steps"] == reference.metrics["training"]["global_steps"] == 36
    ours = load_file(tmp_path / "run" / "model" / "model.safetensors")
    theirs = load_file(tmp_path / "reference" / "model" / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.allclose(ours[key], theirs[key], atol=1e-5), key
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "logs.jsonl").read_text().splitlines()]
    assert max(steps) == 36 and min(steps) <= 2  # the log kept the history from before the interruption


def test_resume_without_checkpoint_explains(tiny_model, classification_files, tmp_path):
    with pytest.raises(TuneforgeError, match="no checkpoint to resume"):
        tuneforge.fine_tune(recipe_for(tiny_model, classification_files, tmp_path / "new"), resume=True)


def test_cli_resume_from_output_alone(tiny_model, classification_files, tmp_path, capsys):
    recipe = recipe_for(tiny_model, classification_files, tmp_path / "run")
    with pytest.raises(TrainingInterrupted):
        tuneforge.fine_tune(recipe, callbacks=[InterruptAt(5)])
    assert main(["train", "--resume", "--output", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["training"]["global_steps"] == 36
