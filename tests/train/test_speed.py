"""bf16 on CPUs with native bf16: mixed-precision training through the normal path, and bf16 prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tuneforge
from tests.conftest import tiny_recipe
from tuneforge.errors import TuneforgeError
from tuneforge.runtime import cpu_bf16_native, resolve_precision

QUICK = {"early_stopping": {"enabled": False}, "evaluation": {"explain_examples": 0},
         "fairness": {"identity_categories": [], "counterfactual": False}}
NATIVE = cpu_bf16_native()
TEXTS = ["good food and friendly service", "the place was dirty and rude", "a table by the window"]


def test_cpu_bf16_follows_the_hardware():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"  # exact by default, on every CPU
    if NATIVE:
        assert resolve_precision("bf16", cpu) == "bf16"
    else:
        with pytest.raises(TuneforgeError, match="AVX-512 BF16"):
            resolve_precision("bf16", cpu)
    with pytest.raises(TuneforgeError):
        resolve_precision("fp16", cpu)


@pytest.mark.skipif(not NATIVE, reason="this CPU has no native bf16")
def test_bf16_training_and_prediction_on_the_cpu(tiny_model, classification_files, tmp_path):
    recipe = tiny_recipe(tiny_model, classification_files, tmp_path / "run",
                         train={"precision": "bf16", "epochs": 2, "save_checkpoints": False}, **QUICK)
    run = tuneforge.fine_tune(recipe)
    assert run.metrics["training"]["precision"] == "bf16"
    assert run.metrics["validation"]["accuracy"] > 0.6  # three classes, learnable from the words
    exact = tuneforge.load(run.directory, device="cpu")
    fast = tuneforge.load(run.directory, device="cpu").use_precision("bf16")
    ours, theirs = fast.logits(TEXTS), exact.logits(TEXTS)
    assert np.allclose(ours, theirs, atol=0.1) and not np.array_equal(ours, theirs)  # autocast did run
    assert (ours.argmax(1) == theirs.argmax(1)).all()
    with pytest.raises(TuneforgeError, match="fp32 or bf16"):
        exact.use_precision("fp16")
