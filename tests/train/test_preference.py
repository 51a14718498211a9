"""Preference tuning and reward models through the one skeleton, on tiny local decoders and a preference with a
learnable rule (the chosen response always ends with "sun", the rejected one with "moon"): every method widens the
held-out chosen-minus-rejected log-probability margin, a reward model ranks held-out pairs above chance, an
interrupted run resumes to the uninterrupted weights, and a run starts from an earlier SFT run (merged, or its
adapter continued)."""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import tuneforge
from tests.conftest import write_csv
from tests.tiny_generative import WORDS, echo_rows
from tests.train.test_skeleton import SendSignalAt
from tuneforge.errors import TuneforgeError
from tuneforge.train.trainer import TrainingInterrupted

BODY = [word for word in WORDS if word not in ("sun", "moon")]
FAST = {"epochs": 2, "batch_size": 8, "learning_rate": 5e-3, "max_length": 32, "warmup_ratio": 0.0,
        "logging_steps": 2}


def preference_rows(count: int, seed: int, chat: bool = False) -> list[dict]:
    """The same two words end in "sun" when chosen and in "moon" when rejected."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        prompt = "repeat: " + " ".join(rng.sample(BODY, 2)) + "\n"
        body = " ".join(rng.sample(BODY, 2))
        chosen, rejected = f"{body} sun", f"{body} moon"
        if chat:  # implicit prompt: both chats open with the same user turn
            user = {"role": "user", "content": prompt.strip()}
            rows.append({"chosen": [user, {"role": "assistant", "content": chosen}],
                         "rejected": [user, {"role": "assistant", "content": rejected}]})
        else:
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def recipe_for(model: Path, folder: Path, output: Path, task: str = "preference", chat: bool = False,
               **sections: dict) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    write = (lambda name, rows: _jsonl(folder / f"{name}.jsonl", rows)) if chat else \
        (lambda name, rows: write_csv(folder / f"{name}.csv", rows))
    files = {"train": write("train", preference_rows(64, 1, chat)),
             "validation": write("val", preference_rows(16, 2, chat)),
             "test": write("test", preference_rows(16, 3, chat))}
    recipe: dict = {"task": task, "model": {"name": str(model)},
                    "data": {**{role: str(path) for role, path in files.items()},
                             "cache_dir": str(folder / "cache")},
                    "train": dict(FAST), "early_stopping": {"enabled": False},
                    "generation": {"max_new_tokens": 4}, "output": {"dir": str(output), "tensorboard": "off"}}
    for name, values in sections.items():
        recipe[name] = {**recipe.get(name, {}), **values}
    return recipe


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    found: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob("*.safetensors")):
        found.update({f"{path.name}:{k}": v for k, v in load_file(path).items()})
    assert found, f"no weights in {folder}"
    return found


@pytest.mark.parametrize("method", ["dpo", "orpo", "kto", "simpo"])
def test_each_method_widens_the_held_out_margin_and_the_run_generates(method: str, tiny_gpt2: Path,
                                                                      tmp_path: Path) -> None:
    run = tuneforge.fine_tune(recipe_for(tiny_gpt2, tmp_path / "data", tmp_path / "run",
                                         preference={"method": method}))
    for role in ("validation", "test"):
        held = run.metrics[role]
        assert held["logps_margin"] > held["reference_logps_margin"] + 2.0, (role, held)
        assert held["reward_accuracy"] >= 0.75 and held["reward_margin"] > 0 and held["pairs"] == 16
        assert held["logps_chosen"] > held["logps_rejected"]
        assert held["loss"] is not None and held["trl"]  # TRL's own evaluation of the method, beside ours
    if method != "kto":  # TRL's KTO reports no pair accuracy
        assert run.metrics["test"]["trl"]["rewards/accuracies"] >= 0.75
    assert run.metrics["method"] == method and run.metrics["training"]["options"]["beta"] == 0.1
    assert json.loads((run.directory / "run_kind.json").read_text())["kind"] == "preference"
    assert (run.directory / "report.html").is_file()
    predictor = tuneforge.load(run.directory)
    assert predictor.kind.name == "preference"
    [row] = predictor.predict(["repeat: cat dog\n"])
    assert isinstance(row["generated"], str)
    with pytest.raises(TuneforgeError):
        predictor.probabilities(["repeat: cat dog\n"])


def test_kto_trains_on_unpaired_rows(tiny_gpt2: Path, tmp_path: Path) -> None:
    def unpaired(count: int, seed: int) -> list[dict]:
        pairs = preference_rows(count, seed)
        return [{"prompt": row["prompt"], "completion": row[side], "label": side == "chosen"}
                for row in pairs for side in ("chosen", "rejected")]

    folder = tmp_path / "data"
    recipe = recipe_for(tiny_gpt2, folder, tmp_path / "run", preference={"method": "kto"})
    recipe["data"].update(train=str(_jsonl(folder / "u-train.jsonl", unpaired(48, 1))),
                          validation=str(_jsonl(folder / "u-val.jsonl", unpaired(12, 2))), test=None)
    run = tuneforge.fine_tune(recipe)
    held = run.metrics["validation"]
    assert held["pairs"] == 0 and held["reward_accuracy"] is None  # no pairs to count
    assert held["logps_margin"] > held["reference_logps_margin"] + 2.0 and held["reward_margin"] > 0
    assert json.loads((run.directory / "data.json").read_text())["layout"] == "unpaired"


def test_a_reward_model_ranks_held_out_pairs_and_loads_as_a_scorer(tiny_gpt2: Path, tmp_path: Path) -> None:
    run = tuneforge.fine_tune(recipe_for(tiny_gpt2, tmp_path / "data", tmp_path / "run", task="reward",
                                         peft={"method": "lora", "r": 4, "alpha": 8}))
    held = run.metrics["test"]
    assert held["reward_accuracy"] >= 0.75 and held["reward_margin"] > 0, held
    assert held["score_chosen"] > held["score_rejected"] and held["trl"]["accuracy"] >= 0.75
    scorer = tuneforge.load(run.directory)
    assert scorer.kind.name == "reward" and scorer.labels is None
    good, bad = scorer.predict(["repeat: cat dog\n"] * 2, ["red blue sun", "red blue moon"])
    assert good["score"] > bad["score"]
    whole = scorer.predict(["repeat: cat dog\nred blue sun"])[0]["score"]
    assert whole == pytest.approx(good["score"], abs=1e-5)  # prompt + response is the same text
    assert scorer.logits(["a", "b"]).shape == (2, 1)
    with pytest.raises(TuneforgeError, match="one score"):
        scorer.probabilities(["a"])


@pytest.mark.parametrize(("method", "peft", "signum"), [("dpo", "none", signal.SIGINT),
                                                        ("kto", "lora", signal.SIGTERM)])
def test_an_interrupted_run_resumes_to_the_uninterrupted_weights(method: str, peft: str, signum: int,
                                                                 tiny_gpt2: Path, tmp_path: Path) -> None:
    def recipe(output: Path) -> dict:
        return recipe_for(tiny_gpt2, tmp_path / "data", output, preference={"method": method},
                          peft={"method": peft, "r": 4, "alpha": 8} if peft != "none" else {})

    reference = tuneforge.fine_tune(recipe(tmp_path / "reference"))
    steps = reference.metrics["training"]["global_steps"]
    with pytest.raises(TrainingInterrupted):
        tuneforge.fine_tune(recipe(tmp_path / "run"), callbacks=[SendSignalAt(steps // 2 + 1, signum)])
    assert sorted((tmp_path / "run" / "checkpoints").glob("checkpoint-*"))
    resumed = tuneforge.fine_tune(recipe(tmp_path / "run"), resume=True)
    assert resumed.metrics["training"]["global_steps"] == steps
    folders = ["model"] + (["adapter"] if peft != "none" else [])
    for folder in folders:
        ours, theirs = _weights(tmp_path / "run" / folder), _weights(tmp_path / "reference" / folder)
        assert ours.keys() == theirs.keys()
        for key in theirs:
            assert torch.allclose(ours[key], theirs[key], atol=1e-6), key
    assert resumed.metrics["validation"]["reward_margin"] == pytest.approx(
        reference.metrics["validation"]["reward_margin"], abs=1e-5)


def test_dpo_on_chats_starts_from_an_sft_run_with_its_chat_template(tiny_llama_chat_run: Path,
                                                                    tmp_path: Path) -> None:
    run = tuneforge.fine_tune(recipe_for(tiny_llama_chat_run, tmp_path / "data", tmp_path / "run", chat=True,
                                         peft={"method": "lora", "r": 8, "alpha": 16},
                                         train={"learning_rate": 2e-2, "epochs": 3, "max_length": 64}))
    summary = json.loads((run.directory / "data.json").read_text())
    assert summary["chat"] and summary["start"] == {"model": str(tiny_llama_chat_run / "model"),
                                                    "run": str(tiny_llama_chat_run), "adapter": "merged"}
    sft = tuneforge.load(tiny_llama_chat_run)
    tuned = tuneforge.load(run.directory)
    assert tuned.tokenizer.chat_template == sft.tokenizer.chat_template
    held = run.metrics["validation"]
    assert held["logps_margin"] > held["reference_logps_margin"] and held["reward_accuracy"] >= 0.75
    [row] = tuned.predict(["repeat: cat dog"])  # a plain text is one user turn under the chat template
    assert isinstance(row["generated"], str)


def test_dpo_continues_an_sft_runs_adapter_against_that_run(tiny_gpt2: Path, tmp_path: Path) -> None:
    from tuneforge.predict.preference import completion_log_probs

    sft_data = write_csv(tmp_path / "sft.csv", echo_rows(48, seed=4))
    sft = tuneforge.fine_tune({
        "task": "causal-lm", "model": {"name": str(tiny_gpt2)}, "peft": {"method": "lora", "r": 4, "alpha": 8},
        "data": {"train": str(sft_data), "validation_split": 0.0, "cache_dir": str(tmp_path / "cache")},
        "train": {**FAST, "epochs": 1, "save_checkpoints": False}, "generation": {"max_new_tokens": 4},
        "output": {"dir": str(tmp_path / "sft"), "tensorboard": "off"}})
    recipe = recipe_for(sft.directory, tmp_path / "data", tmp_path / "run",
                        peft={"method": "lora"}, preference={"start_adapter": "continue"})
    run = tuneforge.fine_tune(recipe)
    assert run.recipe.model.name == str(tiny_gpt2.resolve())  # the adapter's base, so merging rebuilds it
    summary = json.loads((run.directory / "data.json").read_text())
    assert summary["start"]["adapter"] == "continued" and summary["start"]["run"] == str(sft.directory)
    assert not (run.directory / "adapter" / "ref").exists()  # TRL's frozen reference copy is not the result
    # The reference the margins are measured from is the SFT run's model.
    sft_model = tuneforge.load(sft.directory)
    validation = preference_rows(16, 2)
    prompts = [row["prompt"] for row in validation]
    margin = (completion_log_probs(sft_model.model, sft_model.tokenizer, prompts,
                                   [row["chosen"] for row in validation], 32, torch.device("cpu"))
              - completion_log_probs(sft_model.model, sft_model.tokenizer, prompts,
                                     [row["rejected"] for row in validation], 32, torch.device("cpu")))
    held = run.metrics["validation"]
    assert held["reference_logps_margin"] == pytest.approx(float(np.mean(margin)), abs=1e-3)
    assert held["logps_margin"] > held["reference_logps_margin"]
    tuned = tuneforge.load(run.directory)
    assert tuned.kind.name == "preference" and isinstance(tuned.predict(["repeat: cat dog\n"])[0]["generated"], str)


def test_continue_needs_a_run_with_an_adapter_of_the_same_method(tiny_gpt2: Path, tmp_path: Path) -> None:
    recipe = recipe_for(tiny_gpt2, tmp_path / "data", tmp_path / "run", preference={"start_adapter": "continue"})
    with pytest.raises(TuneforgeError, match="is not a tuneforge run"):
        tuneforge.fine_tune(recipe)
