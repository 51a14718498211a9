"""The one training skeleton, checked for every run kind it trains: batch_size auto, an exact stop on Ctrl-C and
SIGTERM that --resume continues to the uninterrupted weights, --nproc trained or refused before start, a report,
and one class-weights decision that data.json and metrics.json agree on."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

import tuneforge
from tests.conftest import make_regression_rows, make_rows, tiny_recipe, write_csv
from tests.multimodal_fixtures import multimodal_recipe, write_multimodal_files
from tests.tiny_generative import echo_rows
from tests.train.test_multilabel_run import rows as multilabel_rows
from tests.train.test_token_classification_run import sentences, write_conll
from tuneforge.errors import TuneforgeError
from tuneforge.kinds import KINDS, kind_of
from tuneforge.recipe import recipe_from_dict
from tuneforge.run import KIND_FILE
from tuneforge.train.distributed import launch
from tuneforge.train.trainer import TrainingInterrupted

KINDS_TRAINED = ["text", "multilabel", "token-classification", "generative", "multimodal", "multitask"]
FAST = {"epochs": 2, "batch_size": 8, "learning_rate": 1e-2, "max_length": 24, "warmup_ratio": 0.0,
        "logging_steps": 2}


def recipe_for(kind: str, folder: Path, models: dict[str, Path], output: Path) -> dict:
    """A tiny recipe of `kind` whose data lives in `folder` (written once per folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    quiet = {"early_stopping": {"enabled": False}, "evaluation": {"explain_examples": 0}}
    if kind == "text":
        files = {"train": write_csv(folder / "train.csv", make_rows(40, 2)),
                 "validation": write_csv(folder / "val.csv", make_rows(12, 3)),
                 "test": write_csv(folder / "test.csv", make_rows(12, 4))}
        return tiny_recipe(models["bert"], files, output, train=FAST, **quiet)
    if kind == "multilabel":
        files = {"train": write_csv(folder / "train.csv", multilabel_rows(40, 1)),
                 "validation": write_csv(folder / "val.csv", multilabel_rows(12, 2))}
        return {**tiny_recipe(models["bert"], files, output, train=FAST, **quiet), "task": "multilabel"}
    if kind == "token-classification":
        files = {"train": write_conll(folder / "train.txt", sentences(40, 1)),
                 "validation": write_conll(folder / "dev.txt", sentences(12, 2))}
        return {**tiny_recipe(models["bert"], files, output, train=FAST, **quiet), "task": "ner"}
    if kind == "generative":
        files = {"train": write_csv(folder / "train.csv", echo_rows(40, seed=1)),
                 "validation": write_csv(folder / "val.csv", echo_rows(8, seed=2))}
        recipe = tiny_recipe(models["gpt2"], files, output, train=FAST, **quiet)
        return {**recipe, "task": "causal-lm", "generation": {"max_new_tokens": 4}}
    if kind == "multimodal":
        files = write_multimodal_files(folder, "numeric", media=False, sizes=(40, 12, 12))
        recipe = multimodal_recipe(models["bert"], files, output, {"text": ["text"], "numeric": ["size"]}, **FAST)
        recipe["evaluation"] = {"explain_examples": 0}
        return recipe
    sentiment = {role: write_csv(folder / f"s-{role}.csv", make_rows(count, seed))
                 for role, count, seed in (("train", 32, 2), ("validation", 12, 3))}
    score = {role: write_csv(folder / f"r-{role}.csv", make_regression_rows(count, seed))
             for role, count, seed in (("train", 24, 2), ("validation", 12, 3))}
    return {"model": {"name": str(models["bert"])},
            "tasks": [{"name": "s", "data": {k: str(v) for k, v in sentiment.items()}},
                      {"name": "r", "task": "regression",
                       "data": {**{k: str(v) for k, v in score.items()}, "label_column": "score"}}],
            "train": FAST, "output": {"dir": str(output), "tensorboard": "off"}, **quiet}


@pytest.fixture(scope="module")
def models(tiny_model: Path, tiny_gpt2: Path) -> dict[str, Path]:
    return {"bert": tiny_model, "gpt2": tiny_gpt2}


# Trained by TRL's trainers through the same skeleton; their resume, metrics and loading are checked in
# tests/train/test_preference.py, and they declare neither batch_size: auto nor several processes.
TRL_KINDS = ["preference", "reward"]


def test_every_declared_trainable_kind_is_covered_here() -> None:
    assert set(KINDS_TRAINED) | set(TRL_KINDS) == set(KINDS) - {"ensemble"}
    assert not any(KINDS[kind].nproc or KINDS[kind].batch_size_auto for kind in TRL_KINDS)


@pytest.mark.parametrize("kind", KINDS_TRAINED)
def test_batch_size_auto_report_kind_file_and_one_class_weights_decision(kind: str, models: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    recipe = recipe_for(kind, tmp_path / "data", models, tmp_path / "run")
    recipe["train"] = {**recipe["train"], "batch_size": "auto"}
    recipe["imbalance"] = {"class_weights": "on"} if kind in ("text", "multimodal") else {}
    assert kind_of(recipe_from_dict(recipe)).name == kind
    run = tuneforge.fine_tune(recipe)
    choice = run.metrics["training"]["batch_size_choice"]
    assert choice["method"] == "estimated" and choice["size"] >= 1
    assert json.loads((run.directory / KIND_FILE).read_text())["kind"] == kind
    assert (run.directory / "report.html").is_file()
    data = json.loads((run.directory / "data.json").read_text())
    assert data["class_weights"] == run.metrics["training"]["class_weights"]
    if kind in ("text", "multimodal"):  # switched on: the same weights reached the loss's record
        assert data["class_weights"] and set(data["class_weights"]) == set(run.metrics["labels"])
    assert "report" in run.metrics["post_training_seconds"]


class SendSignalAt(TrainerCallback):
    """Delivers a real signal to this process after a given optimisation step, as Ctrl-C or `kill` would."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    found: dict[str, torch.Tensor] = {}
    for path in sorted((run_dir / "model").glob("*.safetensors")):
        found.update({f"{path.name}:{k}": v for k, v in load_file(path).items()})
    assert found, f"no weights in {run_dir}"
    return found


@pytest.mark.parametrize(("kind", "signum"), [("text", signal.SIGINT), ("text", signal.SIGTERM),
                                              ("multilabel", signal.SIGINT), ("token-classification", signal.SIGTERM),
                                              ("generative", signal.SIGINT), ("multimodal", signal.SIGTERM),
                                              ("multitask", signal.SIGINT)])
def test_a_signal_stops_at_a_step_and_resume_reaches_the_same_weights(kind: str, signum: int,
                                                                      models: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    reference = tuneforge.fine_tune(recipe_for(kind, tmp_path / "data", models, tmp_path / "reference"))
    steps = reference.metrics["training"]["global_steps"]
    recipe = recipe_for(kind, tmp_path / "data", models, tmp_path / "run")
    with pytest.raises(TrainingInterrupted):
        tuneforge.fine_tune(recipe, callbacks=[SendSignalAt(steps // 2 + 1, signum)])
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("checkpoint-*"))
    assert checkpoints and checkpoints[-1].name == f"checkpoint-{steps // 2 + 2}"  # the step in flight finished
    assert (checkpoints[-1] / "rng_state.pth").is_file()
    resumed = tuneforge.fine_tune(recipe, resume=True)
    assert resumed.metrics["training"]["global_steps"] == steps
    ours, theirs = _weights(tmp_path / "run"), _weights(tmp_path / "reference")
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert torch.allclose(ours[key], theirs[key], atol=1e-6), key
    logged = [json.loads(line)["step"] for line in (tmp_path / "run" / "logs.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(logged) == len(set(logged))  # no step logged twice


@pytest.mark.parametrize("kind", KINDS_TRAINED)
def test_nproc_is_trained_or_refused_before_start(kind: str, models: dict[str, Path], tmp_path: Path) -> None:
    recipe = recipe_from_dict(recipe_for(kind, tmp_path / "data", models, tmp_path / "run"))
    if KINDS[kind].nproc:
        pytest.skip("trained in two processes by tests/train/test_distributed.py (marked slow: torchrun)")
    with pytest.raises(TuneforgeError, match="train in one process"):
        launch(recipe, 2, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything started


def test_a_second_writer_is_refused_with_the_holders_pid(models: dict[str, Path], tmp_path: Path) -> None:
    from tuneforge.train.rundir import RunDirectoryBusy, run_lock

    recipe = recipe_for("text", tmp_path / "data", models, tmp_path / "run")
    with run_lock(tmp_path / "run"), pytest.raises(RunDirectoryBusy, match=f"PID {os.getpid()}"):
        tuneforge.fine_tune(recipe)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_finished_runs_resume_only_when_forced_and_keep_what_the_user_wrote(models: dict[str, Path],
                                                                            tmp_path: Path) -> None:
    recipe = recipe_for("text", tmp_path / "data", models, tmp_path / "run")
    recipe["train"] = {**recipe["train"], "keep_checkpoints": True}
    recipe["fairness"] = {"sensitive_columns": []}
    first = tuneforge.fine_tune(recipe)
    with pytest.raises(TuneforgeError, match="finished run") as refused:
        tuneforge.fine_tune(recipe, resume=True)
    assert "--force" in refused.value.fix
    mine = first.directory / "fairness.json"
    mine.write_text('{"written": "by the user"}')
    recipe["train"]["epochs"] = 3
    again = tuneforge.fine_tune(recipe, resume=True, force=True)
    assert again.metrics["training"]["epochs_completed"] == pytest.approx(3)
    assert json.loads(mine.read_text()) == {"written": "by the user"}


def test_resume_into_a_copied_run_writes_the_copy(models: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    from tuneforge.cli.main import main

    recipe = recipe_for("text", tmp_path / "data", models, tmp_path / "run")
    with pytest.raises(TrainingInterrupted):
        tuneforge.fine_tune(recipe, callbacks=[SendSignalAt(3, signal.SIGINT)])
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "run", copy)
    assert main(["train", "--resume", "--output", str(copy)]) == 0
    assert (copy / "metrics.json").is_file() and not (tmp_path / "run" / "metrics.json").exists()


def test_a_full_disk_while_checkpointing_says_so_and_the_last_checkpoint_resumes(models: dict[str, Path],
                                                                                 tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch
                                                                                 ) -> None:
    from transformers import Trainer

    recipe = recipe_for("text", tmp_path / "data", models, tmp_path / "run")
    real_save = Trainer._save_checkpoint

    def save(self, model, trial=None):  # noqa: ANN001
        if self.state.global_step > 5:  # the second epoch's checkpoint hits a full disk
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
        return real_save(self, model, trial)

    monkeypatch.setattr(Trainer, "_save_checkpoint", save)
    with pytest.raises(TuneforgeError, match="the disk is full") as full:
        tuneforge.fine_tune(recipe)
    assert "free" in full.value.fix
    monkeypatch.setattr(Trainer, "_save_checkpoint", real_save)
    resumed = tuneforge.fine_tune(recipe, resume=True)  # from checkpoint-5, the last one that was written whole
    assert resumed.metrics["training"]["global_steps"] == 10
