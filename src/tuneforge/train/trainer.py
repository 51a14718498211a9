"""The training loop: the Transformers Trainer with what tuneforge adds to it, and a clean stop on Ctrl-C/SIGTERM.

Ctrl-C or SIGTERM does not kill a step half-way: the signal sets a flag, the step in flight finishes, a checkpoint
of exactly that step is saved (weights, optimiser, scheduler, RNG states, data position), and training stops with
`TrainingInterrupted`; `--resume` then continues as if nothing happened.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from tuneforge.artifacts import disk_full_error, is_disk_full
from tuneforge.data.prepare import WEIGHT_FIELD
from tuneforge.errors import TuneforgeError
from tuneforge.train.sampling import SeededLengthGroupedSampler

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(TuneforgeError):
    exit_code = 130


class TuneforgeTrainer(Trainer):
    """Trainer whose optimiser also holds parameters that a gradual-unfreezing schedule opens later.

    The stock Trainer builds its optimiser from the parameters trainable at the start only, so layers
    unfrozen after epoch 1 would never be updated. Frozen parameters have no gradient, so AdamW skips them
    until they open.
    """

    def __init__(self, *args: Any, optimise_all_parameters: bool = False, count_tokens: bool = False,
                 shift_labels: bool = False, loss_from_model: Callable[..., Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (model, inputs, labels) -> (summed loss, labelled tokens) without the full logits (tasks/chunked_loss.py)
        self.loss_from_model = loss_from_model
        self.optimise_all_parameters = optimise_all_parameters
        # Tagging and generation: the loss is a mean over labelled tokens, the stock count; decoders' logits at
        # position t predict token t + 1, so their count is shifted by one (read by the stock token count).
        self.count_tokens = count_tokens or shift_labels
        self._loss_shifts_labels = shift_labels

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        # The stock compute_loss hands a compute_loss_func only (outputs, labels); per-example weights
        # (fairness reweighting) have to reach the loss too, so the call is made here.
        labels = inputs.pop("labels")
        weights = inputs.pop(WEIGHT_FIELD, None)
        if self.loss_from_model is not None:
            total, count = self.loss_from_model(model, inputs, labels)
            loss = total / (num_items_in_batch if num_items_in_batch is not None else count.clamp(min=1))
            return (loss, {"loss": loss}) if return_outputs else loss
        outputs = model(**inputs)
        loss = self.compute_loss_func(outputs, labels, num_items_in_batch=num_items_in_batch, weights=weights)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # num_items_in_batch was summed over processes
        return (loss, outputs) if return_outputs else loss

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> Any:
        # The stock count is `labels != -100`, a token-level convention; here every row is one example, and a
        # regression target may well be -100. Count rows, and let the parent handle the multi-device sums.
        if batch_samples and "labels" in batch_samples[0] and not self.count_tokens:
            batch_samples = [{**b, "labels": torch.zeros(b["labels"].shape[:1], dtype=torch.long)}
                             for b in batch_samples]
        return super()._get_num_items_in_batch(batch_samples, device)

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        grouped = self.args.train_sampling_strategy == "group_by_length"
        if grouped and self.args.world_size <= 1 and dataset is not None and "input_ids" in dataset.column_names:
            lengths = [len(ids) for ids in dataset["input_ids"]]
            batch = self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps
            return SeededLengthGroupedSampler(lengths, batch, self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def _get_eval_sampler(self, eval_dataset: Any) -> torch.utils.data.Sampler | None:
        # With length grouping on, the stock Trainer also length-shuffles evaluation batches and returns
        # predictions in that shuffled order; predictions must line up with the rows they belong to. Under
        # several processes accelerate shards the sequential batches in turn and gathers them back in order.
        if eval_dataset is not None:
            return torch.utils.data.SequentialSampler(eval_dataset)
        return super()._get_eval_sampler(eval_dataset)

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if not self.optimise_all_parameters or self.optimizer is not None:
            return super().create_optimizer(model)
        target = model if model is not None else self.model
        frozen = [p for p in target.parameters() if not p.requires_grad]
        for parameter in frozen:
            parameter.requires_grad = True
        try:
            return super().create_optimizer(model)
        finally:
            for parameter in frozen:
                parameter.requires_grad = False


class StopOnSignal(TrainerCallback):
    """Turns Ctrl-C / SIGTERM into a checkpoint at the end of the step in flight, then a stop."""

    def __init__(self) -> None:
        self.received: int | None = None

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if self.received is not None:
            control.should_save = True
            control.should_training_stop = True

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        # The stop leaves the epoch early; the epoch-end evaluation and save would score a half epoch (changing
        # the best checkpoint and early stopping's count) and rewrite the checkpoint just taken.
        if self.received is not None:
            control.should_evaluate = False
            control.should_save = False


@contextmanager
def stopping_on_signals(stop: StopOnSignal) -> Iterator[None]:
    """While training, the first Ctrl-C/SIGTERM asks for a clean stop; a second one stops at once."""
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def handle(signum: int, frame: Any) -> None:
        if stop.received is not None:
            raise KeyboardInterrupt
        stop.received = signum

    try:
        for sig in STOP_SIGNALS:
            signal.signal(sig, handle)
    except ValueError:  # not the main thread (a web worker): signals stay with their owner
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def train_to_end(trainer: Trainer, checkpoint: Path | None, checkpoints: Path, root: Path, save: bool) -> Any:
    """`trainer.train()` under the signal rule; raises `TrainingInterrupted` after a clean (or hard) stop."""
    stop = next((c for c in trainer.callback_handler.callbacks if isinstance(c, StopOnSignal)), None)
    if stop is None:
        stop = StopOnSignal()
        trainer.add_callback(stop)
    try:
        with stopping_on_signals(stop):
            result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except (OSError, RuntimeError) as error:  # a checkpoint write that ran out of space, in torch's or safetensors'
        if not is_disk_full(error):            # words; the checkpoint before it has its trainer_state.json, so
            raise                              # --resume (which skips half-written ones) continues from it
        raise disk_full_error(checkpoints, _checkpoint_size(checkpoints), error) from None
    except KeyboardInterrupt:  # a second signal, or one outside a step: the last saved checkpoint stands
        if save and trainer.state.global_step > 0:
            trainer._save_checkpoint(trainer.model, trial=None)
        raise _interrupted(trainer, checkpoints, root) from None
    if stop.received is not None:
        raise _interrupted(trainer, checkpoints, root)
    return result


def _checkpoint_size(checkpoints: Path) -> int:
    """Bytes of the newest complete checkpoint: about what the next one needs."""
    done = [p for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    if not done:
        return 0
    newest = max(done, key=lambda p: p.stat().st_mtime)
    return sum(f.stat().st_size for f in newest.rglob("*") if f.is_file())


def _interrupted(trainer: Trainer, checkpoints: Path, root: Path) -> TrainingInterrupted:
    return TrainingInterrupted(f"training was interrupted at step {trainer.state.global_step}; checkpoints are in "
                               f"{checkpoints}",
                               fix=f"resume with the same command plus --resume (output: {root})")
