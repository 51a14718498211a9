"""The pipeline of multi-task runs: one shared encoder (AutoModel), one head per task, each batch from one task.

The loop is still the Transformers Trainer, because checkpoints, `--resume`, the learning-rate schedule, early
stopping, best-model restore and logging all carry over unchanged. What the Trainer lacks for several tasks is
written here and kept small: a batch sampler that picks the task of each batch by the recipe's rule, and an
evaluation that scores every task and early-stops on their mean (the model is models/multitask.py).

Run directory: model/ is the shared encoder in the Transformers layout (safetensors, tokenizer) plus
model/heads.safetensors; multitask.json names the tasks, their kinds, labels and temperatures.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import datasets
import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer, DataCollatorWithPadding, Trainer

from tuneforge import artifacts
from tuneforge.data.prepare import LABEL_FIELD, PreparedData, prepare_data
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.calibration import fit_temperature
from tuneforge.evaluate.scoring import analyse_predictions
from tuneforge.models.multitask import HEADS_FILE, MultiTaskModel, save_multitask
from tuneforge.models.resolve import resolve_model
from tuneforge.predict.multitask import task_recipe
from tuneforge.recipe import Recipe
from tuneforge.tasks import get_task
from tuneforge.tasks.text import tokenize_dataset
from tuneforge.train.pipelines.base import RunPipeline, RunState, Warnings, split_rows

TASK_FIELD = "task_id"
MEAN_SCORE = "mean_score"


class MultitaskPipeline(RunPipeline):
    """Two or more classification/regression tasks trained together over one encoder."""

    def prepare(self, state: RunState, on_warnings: Warnings) -> None:
        recipe = state.recipe
        singles = [task_recipe(recipe, spec) for spec in recipe.tasks]
        names = [spec.name for spec in recipe.tasks]
        prepared = [prepare_data(single) for single in singles]
        warnings = [w for data in prepared for w in data.warnings]
        if on_warnings is not None and warnings:
            on_warnings(warnings)
        resolved = resolve_model(recipe.model.name)
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, revision=recipe.model.revision,
                                                  trust_remote_code=recipe.model.trust_remote_code,
                                                  local_files_only=resolved.offline)
        encoder = AutoModel.from_pretrained(resolved.path, revision=recipe.model.revision, dtype=torch.float32,
                                            trust_remote_code=recipe.model.trust_remote_code, use_safetensors=True,
                                            local_files_only=resolved.offline)
        widths = [len(data.labels) if single.task == "classification" else 1
                  for single, data in zip(singles, prepared, strict=True)]
        weights = [recipe.multitask.loss_weights.get(name, 1.0) for name in names]
        dropout = float(getattr(encoder.config, "hidden_dropout_prob", 0.1) or 0.1)
        state.model = MultiTaskModel(encoder, names, [s.task for s in singles], widths, weights, dropout)
        state.tokenizer = tokenizer
        state.parameters = (sum(p.numel() for p in state.model.parameters()),) * 2
        tokenized = [_tokenized(data, single, tokenizer, index)
                     for index, (single, data) in enumerate(zip(singles, prepared, strict=True))]
        state.splits = {"train": datasets.concatenate_datasets([parts["train"] for parts in tokenized])}
        validation = {name: parts["validation"] for name, parts in zip(names, tokenized, strict=True)
                      if "validation" in parts}
        if len(validation) == len(names):
            state.splits["validation"] = validation
        state.extras.update(singles=singles, names=names, prepared=prepared, tokenized=tokenized, weights=weights)
        state.data = prepared[0]  # labels are per task; the first task's data stands for `state.data`
        artifacts.write_json(state.layout.data_summary, {
            "tasks": {name: {"sources": data.sources, "rows": split_rows(data), "labels": data.labels,
                             "warnings": [str(w) for w in data.warnings]}
                      for name, data in zip(names, prepared, strict=True)}})

    def target_metric(self, state: RunState) -> tuple[str, bool]:
        return MEAN_SCORE, True

    def collator(self, state: RunState) -> Any:
        return DataCollatorWithPadding(state.tokenizer)

    def compute_metrics(self, state: RunState) -> None:
        return None  # per task, inside MultiTaskTrainer.evaluate

    def sizing_model(self, state: RunState) -> Any:
        return state.model.encoder

    def probe_inputs(self, state: RunState) -> Callable[[int, int, torch.device], dict[str, Any]] | None:
        vocab = int(getattr(state.model.encoder.config, "vocab_size", 1000) or 1000)

        def inputs(batch: int, length: int, device: torch.device) -> dict[str, Any]:
            ids = torch.randint(min(5, vocab - 1), vocab, (batch, length), device=device)
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                    "task_id": torch.zeros(batch, dtype=torch.long, device=device)}
        return inputs

    def build_trainer(self, state: RunState, args: Any, callbacks: list[Any]) -> Trainer:
        singles, names, prepared = (state.extras[key] for key in ("singles", "names", "prepared"))
        return MultiTaskTrainer(
            model=state.model, args=args, train_dataset=state.splits["train"],
            eval_dataset=state.splits.get("validation"), processing_class=state.tokenizer,
            data_collator=self.collator(state), callbacks=callbacks,
            task_sizes=[len(parts["train"]) for parts in state.extras["tokenized"]],
            sampling=state.recipe.multitask.sampling, temperature=state.recipe.multitask.temperature,
            task_metrics={name: _task_metric_fn(single.task, data.labels)
                          for name, single, data in zip(names, singles, prepared, strict=True)},
            task_targets={name: single.early_stopping_metric() for name, single in zip(names, singles, strict=True)})

    def save(self, trainer: Trainer, state: RunState) -> None:
        trained = trainer.accelerator.unwrap_model(trainer.model)
        artifacts.write_directory(state.layout.model, functools.partial(save_multitask, trained, state.tokenizer))

    def metrics_header(self, state: RunState) -> dict[str, Any]:
        return {"task": "multitask", "model": state.recipe.model.name, "tasks": {}}

    def training_metrics(self, trainer: Trainer, state: RunState) -> dict[str, Any]:
        names, recipe = state.extras["names"], state.recipe
        shares = task_probabilities(trainer.task_sizes, recipe.multitask.sampling, recipe.multitask.temperature)
        return {"sampling": recipe.multitask.sampling, "task_shares": dict(zip(names, shares.tolist(), strict=True)),
                "loss_weights": dict(zip(names, state.extras["weights"], strict=True)),
                "train_examples": {name: len(data.train)
                                   for name, data in zip(names, state.extras["prepared"], strict=True)}}

    def evaluate(self, trainer: Trainer, state: RunState, metrics: dict[str, Any]) -> None:
        names, singles, prepared = (state.extras[key] for key in ("names", "singles", "prepared"))
        targets = {name: single.early_stopping_metric() for name, single in zip(names, singles, strict=True)}
        described = []
        for index, (name, single, data) in enumerate(zip(names, singles, prepared, strict=True)):
            entry = _evaluate_task(trainer, state, single, data, state.extras["tokenized"][index])
            metrics["tasks"][name] = entry
            described.append({"name": name, "task": single.task, "labels": data.labels,
                              "temperature": entry["temperature"], "text_column": single.data.text_column,
                              "text_pair_column": single.data.text_pair_column})
        for role in ("validation", "test"):
            scores = [_oriented(metrics["tasks"][name].get(role), *targets[name]) for name in names]
            if all(score is not None for score in scores):
                metrics[role] = {MEAN_SCORE: float(np.mean(scores)),
                                 **{f"{name}_{targets[name][0]}": metrics["tasks"][name][role][targets[name][0]]
                                    for name in names}}
        artifacts.write_json(state.layout.multitask, {"format": 1, "pooling": "mean", "heads": f"model/{HEADS_FILE}",
                                                      "tasks": described})


def _evaluate_task(trainer: Trainer, state: RunState, single: Recipe, data: PreparedData,
                   tokenized: dict[str, Any]) -> dict[str, Any]:
    """One task's validation and test metrics, with its temperature fitted on its validation split."""
    entry: dict[str, Any] = {"task": single.task, "labels": data.labels}
    temperature = 1.0
    for role in ("validation", "test"):
        split = getattr(data, role)
        if split is None:
            continue
        output = trainer.predict(tokenized[role], metric_key_prefix=role)
        logits = np.asarray(output.predictions)
        truth = np.asarray(split[LABEL_FIELD])
        if role == "validation" and single.task == "classification" and state.recipe.calibration.temperature_scaling:
            temperature = fit_temperature(logits, truth)
        spec = single.data
        entry[role] = analyse_predictions(single, data.labels, logits, truth, split[spec.text_column],
                                          split[spec.text_pair_column] if spec.text_pair_column else None,
                                          temperature)
        entry[role]["loss"] = output.metrics.get(f"{role}_loss")
    entry["temperature"] = temperature
    return entry


# --- which task each batch comes from -----------------------------------------------------------------------

def task_probabilities(sizes: Sequence[int], sampling: str, temperature: float = 2.0) -> np.ndarray:
    """Share of batches per task: proportional to rows, to rows^(1/T) (temperature), or equal (round_robin)."""
    counts = np.asarray(sizes, dtype=np.float64)
    if sampling == "round_robin":
        weights = np.ones_like(counts)
    elif sampling == "temperature":
        weights = counts ** (1.0 / temperature)
    else:
        weights = counts
    return weights / weights.sum()


def task_schedule(sizes: Sequence[int], batch_size: int, sampling: str, temperature: float,
                  rng: np.random.Generator) -> list[int]:
    """The task of every batch of one epoch; an epoch has as many batches as one pass over every task's data.

    proportional: each task exactly its own number of batches, in shuffled order (one pass over each dataset);
    temperature: tasks drawn independently with rows^(1/T) probabilities; round_robin: tasks in turn.
    """
    batches = [math.ceil(size / batch_size) for size in sizes]
    total = sum(batches)
    if sampling == "round_robin":
        return [step % len(sizes) for step in range(total)]
    if sampling == "temperature":
        return rng.choice(len(sizes), size=total, p=task_probabilities(sizes, sampling, temperature)).tolist()
    schedule = np.repeat(np.arange(len(sizes)), batches)
    rng.shuffle(schedule)
    return schedule.tolist()


class TaskBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of row indices into the concatenated training set, every batch from one task.

    Each task walks through its own shuffled rows and reshuffles when it runs out, so a small task oversampled by
    temperature or round-robin sampling still sees every row before any repeats. Seeded by seed and epoch, so a
    resumed run draws the same batches.
    """

    def __init__(self, sizes: Sequence[int], batch_size: int, sampling: str, temperature: float, seed: int) -> None:
        self.sizes = list(sizes)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(int)
        self.batch_size = batch_size
        self.sampling = sampling
        self.temperature = temperature
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(math.ceil(size / self.batch_size) for size in self.sizes)

    def __iter__(self):  # noqa: ANN204 - a generator of index lists
        rng = np.random.default_rng([self.seed, self.epoch])
        orders = [rng.permutation(size) for size in self.sizes]
        positions = [0] * len(self.sizes)
        for task in task_schedule(self.sizes, self.batch_size, self.sampling, self.temperature, rng):
            size, start = self.sizes[task], positions[task]
            if start >= size:
                orders[task], start = rng.permutation(size), 0
            rows = orders[task][start:start + self.batch_size]
            positions[task] = start + len(rows)
            yield (rows + self.offsets[task]).tolist()



# --- the Trainer -----------------------------------------------------------------------------------------------

class MultiTaskTrainer(Trainer):
    """Trainer with task-pure batches and an evaluation that scores each task and their mean."""

    def __init__(self, *args: Any, task_sizes: Sequence[int], sampling: str, temperature: float,
                 task_metrics: dict[str, Callable[[Any], dict[str, float]]],
                 task_targets: dict[str, tuple[str, bool]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.task_sizes, self.sampling, self.temperature = list(task_sizes), sampling, temperature
        self.task_metrics, self.task_targets = task_metrics, task_targets

    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        sampler = TaskBatchSampler(self.task_sizes, self._train_batch_size, self.sampling, self.temperature,
                                   self.args.seed)
        loader = torch.utils.data.DataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=self.data_collator,
                                             num_workers=self.args.dataloader_num_workers)
        return self.accelerator.prepare(loader)

    def _get_eval_sampler(self, eval_dataset: Any) -> torch.utils.data.Sampler | None:
        return torch.utils.data.SequentialSampler(eval_dataset)  # predictions in row order

    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        """Every task's metrics as `<prefix>_<task>_<metric>`, plus `<prefix>_mean_score`: the mean of each task's
        early-stopping metric, negated where lower is better, which early stopping and best-model restore watch."""
        by_task = eval_dataset if isinstance(eval_dataset, dict) else self.eval_dataset
        metrics: dict[str, float] = {}
        scores = []
        for name, dataset in by_task.items():
            self.compute_metrics = self.task_metrics[name]
            output = self.evaluation_loop(self.get_eval_dataloader(dataset), description=f"Evaluation ({name})",
                                          ignore_keys=ignore_keys, metric_key_prefix=f"{metric_key_prefix}_{name}")
            metrics.update(output.metrics)
            metric, greater_is_better = self.task_targets[name]
            value = output.metrics.get(f"{metric_key_prefix}_{name}_{metric}")
            if value is None:
                raise TuneforgeError(f"task {name} has no metric '{metric}' to early-stop on",
                                     fix="set early_stopping.metric to a metric every task reports (e.g. loss), "
                                         "or auto")
            scores.append(value if greater_is_better else -value)
        self.compute_metrics = None
        metrics[f"{metric_key_prefix}_{MEAN_SCORE}"] = float(np.mean(scores))
        metrics["epoch"] = self.state.epoch
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics



def _tokenized(data: PreparedData, recipe: Recipe, tokenizer: Any, index: int, rules: Any = None
               ) -> dict[str, datasets.Dataset]:
    """Model inputs, float labels (one column type for every task, so the tasks concatenate) and the task id."""
    spec = recipe.data
    result = {}
    for role, split in (("train", data.train), ("validation", data.validation), ("test", data.test)):
        if split is None:
            continue
        tokens = tokenize_dataset(split, tokenizer, spec.text_column, spec.text_pair_column, recipe.train.max_length,
                                  keep=(LABEL_FIELD,), desc=f"tokenizing {role}")
        labels = [float(value) for value in tokens[LABEL_FIELD]]
        tokens = tokens.remove_columns(LABEL_FIELD).add_column(LABEL_FIELD, labels)
        result[role] = tokens.add_column(TASK_FIELD, [index] * len(tokens))
    return result



def _oriented(split: dict[str, Any] | None, metric: str, greater_is_better: bool) -> float | None:
    if not split or split.get(metric) is None:
        return None
    return float(split[metric]) if greater_is_better else -float(split[metric])


def _task_metric_fn(kind: str, labels: list[str] | None) -> Callable[[Any], dict[str, float]]:
    task = get_task(kind)

    def compute(prediction: Any) -> dict[str, float]:
        metrics = task.compute_metrics(prediction.predictions, prediction.label_ids, labels)
        return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None}
    return compute


# --- loading one task back -----------------------------------------------------------------------------------


