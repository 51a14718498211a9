"""train.optimizer: the names the Trainer gets, 8-bit AdamW through bitsandbytes on the CPU, and the refusal
with its fix when bitsandbytes is missing."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from transformers import TrainerCallback
from transformers.optimization import Adafactor

import tuneforge
from tests.conftest import tiny_recipe
from tuneforge.errors import TuneforgeError
from tuneforge.train import optimizers
from tuneforge.train.optimizers import trainer_optimizer

QUICK = {"early_stopping": {"enabled": False}, "evaluation": {"explain_examples": 0},
         "fairness": {"identity_categories": [], "counterfactual": False}}
HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None


class OptimizerSpy(TrainerCallback):
    """The optimiser the Trainer built, and one of its parameter states after training."""

    def on_train_end(self, args, state, control, optimizer=None, **kwargs):  # noqa: ANN001
        self.optimizer = optimizer
        self.states = [s for s in optimizer.state.values() if s]


def train_with(optimizer: str, model, files, folder):
    spy = OptimizerSpy()
    recipe = tiny_recipe(model, files, folder, train={"optimizer": optimizer, "epochs": 1, "save_checkpoints": False},
                         **QUICK)
    run = tuneforge.fine_tune(recipe, callbacks=[spy])
    return run, spy


def test_names_map_onto_training_arguments():
    cpu = torch.device("cpu")
    assert trainer_optimizer("adamw_torch", cpu) == "adamw_torch"
    assert trainer_optimizer("adamw_torch_fused", cpu) == "adamw_torch_fused"
    assert trainer_optimizer("adafactor", cpu) == "adafactor"
    with pytest.raises(TuneforgeError, match="unknown train.optimizer"):
        trainer_optimizer("lion", cpu)


def test_adafactor_run(tiny_model, classification_files, tmp_path):
    run, spy = train_with("adafactor", tiny_model, classification_files, tmp_path / "run")
    inner = getattr(spy.optimizer, "optimizer", spy.optimizer)  # accelerate wraps the optimiser
    assert isinstance(inner, Adafactor)
    assert run.metrics["training"]["optimizer"] == "adafactor"


@pytest.mark.skipif(not HAS_BNB, reason="bitsandbytes is not installed")
def test_eight_bit_adamw_trains_on_the_cpu(tiny_model, classification_files, tmp_path):
    import bitsandbytes as bnb
    from bitsandbytes.optim.optimizer import Optimizer8bit

    # bitsandbytes' 8-bit states on this CPU, on a matrix above its 4096-element floor for them: the tiny model's
    # matrices are below it (and the Trainer keeps embeddings in 32 bits), so its run checks the optimiser built.
    weight = torch.nn.Parameter(torch.randn(128, 64))
    weight.grad = torch.randn_like(weight)
    single = bnb.optim.AdamW([weight], lr=1e-3, optim_bits=8)
    single.step()
    assert single.state[weight]["state1"].dtype == torch.uint8 and single.state[weight]["state2"].dtype == torch.uint8

    run, spy = train_with("adamw_8bit", tiny_model, classification_files, tmp_path / "run")
    inner = getattr(spy.optimizer, "optimizer", spy.optimizer)
    assert isinstance(inner, Optimizer8bit) and inner.args.optim_bits == 8
    losses = [json.loads(line)["loss"] for line in run.layout.log.read_text().splitlines() if '"loss"' in line]
    assert losses[-1] < losses[0]  # it trains


def test_eight_bit_without_bitsandbytes_names_the_fix(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(optimizers.importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(TuneforgeError) as caught:
        trainer_optimizer("paged_adamw_8bit", torch.device("cpu"))
    assert "not installed" in caught.value.message
    assert "pip install" in caught.value.fix and "adamw_torch_fused" in caught.value.fix
