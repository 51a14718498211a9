"""Trainer callbacks tuneforge adds to every run."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from tuneforge.models.freezing import transformer_layers, unfreeze_top_layers


class JsonlLogCallback(TrainerCallback):
    """One JSON object per log event in the run directory, appended and flushed so a crash keeps the history."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, "epoch": state.epoch, "time": time.time(), **logs}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=float) + "\n")


class GradualUnfreezeCallback(TrainerCallback):
    """ULMFiT-style schedule: epoch 1 trains the head, each later epoch opens one more layer from the top."""

    def __init__(self, model: Any, embeddings_stay_frozen: bool = False) -> None:
        self.model = model
        self.embeddings_stay_frozen = embeddings_stay_frozen
        self.total_layers = len(transformer_layers(model))

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        epoch_index = int(math.floor(state.epoch or 0.0))
        unfreeze_top_layers(self.model, epoch_index, self.embeddings_stay_frozen)
