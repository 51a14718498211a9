"""A tiny run whose label is decided by one planted word, so a correct explanation method must point at it."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FILLER, WORDS, build_tiny_bert, tiny_recipe, write_csv

TRIGGER = "zorblax"
VOCABULARY = FILLER + WORDS["neutral"]


def trigger_rows(count: int, seed: int) -> list[dict[str, str]]:
    """Random filler; every other row is positive and carries the trigger at a random position.

    Negative rows get one more filler word so both classes have the same length: otherwise the model can
    (and does) learn the label from the position of [SEP] instead of from the trigger.
    """
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        positive = index % 2 == 0
        words = rng.sample(VOCABULARY, 6 if positive else 7)
        if positive:
            words.insert(rng.randrange(len(words) + 1), TRIGGER)
        rows.append({"text": " ".join(words), "label": "positive" if positive else "negative"})
    return rows


@pytest.fixture(scope="session")
def trigger_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import tuneforge

    root = tmp_path_factory.mktemp("trigger")
    # The tokenizer learns its vocabulary from texts with the trigger, so the trigger is one word piece.
    model = build_tiny_bert(root / "bert", [row["text"] for row in trigger_rows(200, seed=0)])
    files = {"train": write_csv(root / "train.csv", trigger_rows(80, seed=1)),
             "validation": write_csv(root / "val.csv", trigger_rows(20, seed=2)),
             "test": write_csv(root / "test.csv", trigger_rows(20, seed=3))}
    run = tuneforge.fine_tune(tiny_recipe(model, files, root / "run",
                                          train={"epochs": 20, "learning_rate": 5e-3}))
    # The explanation tests only mean something if the model really decides by the trigger.
    assert run.metrics["test"]["accuracy"] == 1.0
    return run.directory


@pytest.fixture(scope="session")
def trigger_predictor(trigger_run: Path) -> Any:
    import tuneforge

    return tuneforge.load(trigger_run)
