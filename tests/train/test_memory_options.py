"""Memory options of the one skeleton: the chunked loss (no full logits) trains like the plain one, and the lean
memory plan is chosen, applied and recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

import tuneforge
from tests.conftest import write_csv
from tests.tiny_generative import echo_rows


def _recipe(model: Path, tmp_path: Path, name: str, **train: object) -> dict:
    files = {"train": write_csv(tmp_path / "train.csv", echo_rows(24, seed=1)),
             "validation": write_csv(tmp_path / "val.csv", echo_rows(8, seed=2))}
    return {"task": "causal-lm", "model": {"name": str(model)},
            "data": {**{k: str(v) for k, v in files.items()}, "cache_dir": str(tmp_path / "cache")},
            "train": {"epochs": 1, "batch_size": 4, "learning_rate": 1e-2, "max_length": 24, "warmup_ratio": 0.0,
                      "logging_steps": 1, **train},
            "generation": {"max_new_tokens": 4}, "evaluation": {"explain_examples": 0},
            "early_stopping": {"enabled": False}, "output": {"dir": str(tmp_path / name)}}


def _losses(run: tuneforge.run.Run) -> list[float]:
    import json

    return [json.loads(line)["loss"] for line in (run.directory / "logs.jsonl").read_text().splitlines()
            if "loss" in json.loads(line)]


def test_chunked_loss_trains_like_the_plain_loss(tiny_llama: Path, tmp_path: Path) -> None:
    plain = tuneforge.fine_tune(_recipe(tiny_llama, tmp_path, "plain", chunked_loss="off"))
    chunked = tuneforge.fine_tune(_recipe(tiny_llama, tmp_path, "chunked", chunked_loss="on"))
    assert chunked.metrics["training"]["chunked_loss"] and not plain.metrics["training"]["chunked_loss"]
    assert _losses(chunked) == pytest.approx(_losses(plain), rel=1e-4, abs=1e-5)
    assert chunked.metrics["validation"]["loss"] == pytest.approx(plain.metrics["validation"]["loss"], rel=1e-4)


def test_lean_memory_records_its_plan(tiny_gpt2: Path, tmp_path: Path) -> None:
    run = tuneforge.fine_tune(_recipe(tiny_gpt2, tmp_path, "lean", memory="lean"))
    plan = run.metrics["training"]["memory_plan"]
    assert plan["fits"] and plan["budget_bytes"] > plan["lean_bytes"] > 0 and plan["summary"]
    assert run.metrics["training"]["compiled_blocks"] == 0  # compile: auto stays off on the CPU
