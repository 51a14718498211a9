"""One fine-tuning run, from a validated recipe to a finished run directory.

The loop itself is the Transformers Trainer; this module only wires data, model, loss, freezing and
callbacks together and writes every artifact into the run directory.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from tuneforge import artifacts
from tuneforge.data.conll import TAG_FIELD, TOKEN_FIELD
from tuneforge.data.prepare import LABEL_FIELD, WEIGHT_FIELD, PreparedData, prepare_data
from tuneforge.data.token_data import prepare_token_data
from tuneforge.errors import Problem, TuneforgeError
from tuneforge.evaluate.calibration import fit_temperature, reliability_diagram, write_temperature
from tuneforge.evaluate.plugins import load_plugins
from tuneforge.evaluate.scoring import analyse_predictions
from tuneforge.models.freezing import apply_freezing, count_parameters
from tuneforge.models.loading import load_sequence_model, load_tokenizer
from tuneforge.models.peft import MERGEABLE, apply_peft, quantized_loading, save_adapter, write_merged_model
from tuneforge.models.resolve import resolve_model
from tuneforge.recipe import GENERATIVE_TASKS, Recipe
from tuneforge.report import plots
from tuneforge.run import Run, RunLayout
from tuneforge.runtime import pick_device, resolve_precision
from tuneforge.tasks import get_task
from tuneforge.tasks.text import tokenize_dataset
from tuneforge.tasks.token_classification import AlignLabels, decode_words
from tuneforge.train import distributed
from tuneforge.train.callbacks import GradualUnfreezeCallback, JsonlLogCallback
from tuneforge.train.domain import adapt_to_domain
from tuneforge.train.finishing import finish_run
from tuneforge.train.losses import build_loss, resolve_class_weights
from tuneforge.train.optimizers import trainer_optimizer
from tuneforge.train.sampling import SeededLengthGroupedSampler
from tuneforge.train.sizing import choose_batch_size

logger = logging.getLogger(__name__)


class TrainingInterrupted(TuneforgeError):
    exit_code = 130


class TuneforgeTrainer(Trainer):
    """Trainer whose optimiser also holds parameters that a gradual-unfreezing schedule opens later.

    The stock Trainer builds its optimiser from the parameters trainable at the start only, so layers
    unfrozen after epoch 1 would never be updated. Frozen parameters have no gradient, so AdamW skips them
    until they open.
    """

    def __init__(self, *args: Any, optimise_all_parameters: bool = False, count_tokens: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.optimise_all_parameters = optimise_all_parameters
        self.count_tokens = count_tokens  # tagging: the loss is a mean over labelled tokens, the stock count

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        # The stock compute_loss hands a compute_loss_func only (outputs, labels); per-example weights
        # (fairness reweighting) have to reach the loss too, so the call is made here.
        labels = inputs.pop("labels")
        weights = inputs.pop(WEIGHT_FIELD, None)
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


def default_run_dir(recipe: Recipe) -> Path:
    return Path("runs") / f"{recipe.task}-{time.strftime('%Y%m%d-%H%M%S')}"


def _prepare_run_dir(recipe: Recipe, resume: bool) -> tuple[RunLayout, Path | None]:
    layout = RunLayout(Path(recipe.output.dir or default_run_dir(recipe)))
    if resume:
        checkpoint = layout.last_checkpoint()
        if checkpoint is None:
            raise TuneforgeError(f"there is no checkpoint to resume in {layout.checkpoints}",
                                 fix="start the run again without --resume")
        return layout, checkpoint
    if layout.root.exists() and (layout.is_finished() or layout.last_checkpoint() is not None):
        if not recipe.output.overwrite:
            raise TuneforgeError(f"{layout.root} already holds a run",
                                 fix="pass --resume to continue it, --overwrite to replace it, or choose another "
                                     "--output")
        shutil.rmtree(layout.root)
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.log.unlink(missing_ok=True)
    return layout, None


def _scalar_metrics(task: Any, labels: list[str] | None):
    def compute(prediction: Any) -> dict[str, float]:
        metrics = task.compute_metrics(prediction.predictions, prediction.label_ids, labels)
        return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None}
    return compute


def _training_arguments(recipe: Recipe, layout: RunLayout, device: torch.device, has_eval: bool,
                        metric: str, greater_is_better: bool, batch_size: int | None = None) -> TrainingArguments:
    spec = recipe.train
    precision = resolve_precision(spec.precision, device)
    interval = "epoch" if has_eval else "no"
    save = "epoch" if spec.save_checkpoints else "no"
    early = recipe.early_stopping
    return TrainingArguments(
        output_dir=str(layout.checkpoints),
        learning_rate=spec.learning_rate,
        per_device_train_batch_size=batch_size or int(spec.batch_size),  # `auto` is resolved by train.sizing
        optim=trainer_optimizer(spec.optimizer, device),
        per_device_eval_batch_size=spec.eval_batch_size,
        num_train_epochs=spec.epochs,
        max_steps=spec.max_steps if spec.max_steps > 0 else -1,
        warmup_steps=spec.warmup_ratio,
        lr_scheduler_type=spec.lr_scheduler,
        weight_decay=spec.weight_decay,
        max_grad_norm=spec.max_grad_norm,
        gradient_accumulation_steps=spec.gradient_accumulation_steps,
        seed=spec.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device.type == "cpu",
        eval_strategy=interval,
        save_strategy=save if has_eval or save == "no" else "epoch",
        save_total_limit=spec.save_total_limit,
        logging_strategy="steps",
        logging_steps=spec.logging_steps,
        logging_first_step=True,
        load_best_model_at_end=has_eval and early.restore_best and save != "no",
        metric_for_best_model=metric if has_eval else None,
        greater_is_better=greater_is_better if has_eval else None,
        train_sampling_strategy="group_by_length" if spec.group_by_length else "random",
        dataloader_num_workers=spec.dataloader_workers,
        report_to="none",  # TensorBoard is attached as a callback writing into the run directory
        disable_tqdm=True,
        save_only_model=False,
        activation_checkpointing=spec.gradient_checkpointing,
        # Non-reentrant checkpointing also back-propagates when every input of a segment is frozen (PEFT).
        activation_checkpointing_kwargs={"use_reentrant": False} if spec.gradient_checkpointing else None,
        # Datasets hold only model inputs, labels and optional example weights, which the forward pass must
        # not receive but the loss must; dropping "unused" columns would drop the weights.
        remove_unused_columns=False,
        **distributed.trainer_arguments(spec.distributed),  # fsdp / deepspeed / backend under torchrun
    )


def tensorboard_callback(setting: str, folder: Path) -> TrainerCallback | None:
    installed = importlib.util.find_spec("tensorboard") is not None
    if setting == "off" or (setting == "auto" and not installed):
        return None
    if not installed:
        raise TuneforgeError("output.tensorboard is on but the tensorboard package is not installed",
                             fix="pip install tensorboard, or set output.tensorboard: auto")
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(folder)))


def _write_predictions(path: Path, texts: list[Any], truths: list[Any], rows: list[dict[str, Any]]) -> None:
    from tuneforge.predict.io import predictions_frame

    frame = predictions_frame(texts, rows, truths)
    artifacts.write_with(path, lambda target: frame.to_csv(target, index=False))


def fine_tune(recipe: Recipe, *, resume: bool = False, callbacks: Sequence[TrainerCallback] = (),
              on_warnings: Callable[[list[Problem]], None] | None = None) -> Run:
    """Train, evaluate and write the run directory; returns the finished `Run`.

    `on_warnings` receives the data warnings (e.g. texts shared between splits) before training starts.
    """
    if recipe.task in GENERATIVE_TASKS:  # text-writing models have their own data, loss and evaluation
        from tuneforge.train.generative import fine_tune_generative

        return fine_tune_generative(recipe, resume=resume, callbacks=callbacks, on_warnings=on_warnings)
    if recipe.features.enabled:  # typed feature columns: the multimodal model (train/multimodal.py)
        from tuneforge.train.multimodal import fine_tune_multimodal

        return fine_tune_multimodal(recipe, resume=resume, callbacks=callbacks, on_warnings=on_warnings)
    if recipe.tasks:  # several tasks over one shared encoder (train/multitask.py)
        from tuneforge.train.multitask import fine_tune_multitask

        return fine_tune_multitask(recipe, resume=resume, callbacks=callbacks, on_warnings=on_warnings)
    recipe = recipe.model_copy(deep=True)
    # Under torchrun only rank 0 prepares and writes the run directory; other ranks write to scratch.
    layout, checkpoint = distributed.prepare_run_dir(functools.partial(_prepare_run_dir, recipe, resume),
                                                     pick_device(recipe.train.device))
    recipe.output.dir = str(layout.root)
    artifacts.write_text(layout.recipe, recipe.to_yaml())

    load_plugins(recipe.evaluation.plugins)  # a misnamed plug-in fails now, not after hours of training
    device = pick_device(recipe.train.device)
    quantization = quantized_loading(recipe.peft, device)  # QLoRA on a machine that cannot run it fails now
    set_seed(recipe.train.seed)
    tagging = recipe.task == "token-classification"
    with distributed.main_process_first(device):  # rank 0 fills the datasets cache, the others then read it
        data = prepare_token_data(recipe) if tagging else prepare_data(recipe)
    if on_warnings is not None and data.warnings:
        on_warnings(data.warnings)
    task = get_task(recipe.task)
    resolved = resolve_model(recipe.model.name)
    tokenizer = load_tokenizer(recipe.model, resolved)
    domain = adapt_to_domain(recipe, layout.root, resolved, tokenizer,  # rules, new words, continued pretraining
                             data.train[recipe.data.text_column] if not tagging else [], device.type == "cpu")
    resolved, tokenizer = domain.resolved, domain.tokenizer
    model = load_sequence_model(recipe.model, recipe.task, data.labels, resolved, tokenizer.pad_token_id,
                                **quantization)
    domain.resize(model)
    if recipe.peft.enabled:  # the recipe forbids freeze settings with PEFT, which freezes the base itself
        model = apply_peft(model, tokenizer, recipe.peft, recipe.train.gradient_checkpointing)
    else:
        apply_freezing(model, recipe.freeze)
    total_parameters, trainable_parameters = count_parameters(model)

    counts = list(data.class_counts().values()) if not tagging else []
    class_weights = (resolve_class_weights(recipe, data.labels, counts, rows=len(data.train))
                     if data.labels and counts else None)
    spec = recipe.data
    splits = [(role, split) for role, split in (("train", data.train), ("validation", data.validation),
                                                 ("test", data.test)) if split is not None]
    if tagging:
        align = AlignLabels(tokenizer, {tag: i for i, tag in enumerate(data.labels)}, recipe.train.max_length)
        tokenized = {role: split.map(align, batched=True, remove_columns=split.column_names,
                                     desc=f"tokenizing {role}") for role, split in splits}
    else:
        tokenized = {role: tokenize_dataset(split, tokenizer, spec.text_column, spec.text_pair_column,
                                            recipe.train.max_length, keep=(LABEL_FIELD, WEIGHT_FIELD),
                                            desc=f"tokenizing {role}", rules=domain.rules) for role, split in splits}
    _write_data_summary(layout, data, class_weights, tokenized, recipe.train.max_length)

    has_eval = "validation" in tokenized
    metric, greater_is_better = recipe.early_stopping_metric()
    batch = choose_batch_size(recipe, model, device, len(tokenized["train"]),
                              resolve_precision(recipe.train.precision, device), checkpoint)
    logger.info("batch size %d (%s: %s)", batch.size, batch.method, batch.reason)
    args = _training_arguments(recipe, layout, device, has_eval, metric, greater_is_better, batch.size)
    run_callbacks: list[TrainerCallback] = [JsonlLogCallback(layout.log)]
    if has_eval and recipe.early_stopping.enabled:
        run_callbacks.append(EarlyStoppingCallback(recipe.early_stopping.patience, recipe.early_stopping.min_delta))
    if recipe.freeze.gradual_unfreeze:
        run_callbacks.append(GradualUnfreezeCallback(model, recipe.freeze.embeddings))
    tensorboard = tensorboard_callback(recipe.output.tensorboard, layout.root / "tensorboard")
    if tensorboard is not None:
        run_callbacks.append(tensorboard)
    run_callbacks.extend(callbacks)

    trainer = TuneforgeTrainer(
        model=model,
        args=args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized.get("validation"),
        processing_class=tokenizer,
        data_collator=(DataCollatorForTokenClassification if tagging else DataCollatorWithPadding)(
            tokenizer, pad_to_multiple_of=8 if device.type == "cuda" else None),
        compute_metrics=_scalar_metrics(task, data.labels),
        compute_loss_func=build_loss(recipe, class_weights),
        callbacks=run_callbacks,
        optimise_all_parameters=recipe.freeze.gradual_unfreeze,
        count_tokens=tagging,
    )
    for noisy in (ProgressCallback, PrinterCallback):  # core functions never print; the CLI shows progress
        trainer.remove_callback(noisy)

    started = time.time()
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except KeyboardInterrupt:
        if recipe.train.save_checkpoints and trainer.state.global_step > 0:
            trainer._save_checkpoint(trainer.model, trial=None)  # exact-step checkpoint so nothing is lost
        raise TrainingInterrupted(
            f"training was interrupted at step {trainer.state.global_step}; "
            f"checkpoints are in {layout.checkpoints}",
            fix=f"resume with the same command plus --resume (output: {layout.root})",
        ) from None

    if not distributed.writes_run(layout):
        pass  # a rank other than 0: rank 0 saves the one model
    else:
        save_trained(trainer, tokenizer, recipe, layout)

    metrics: dict[str, Any] = {
        "task": recipe.task,
        "model": recipe.model.name,
        "labels": data.labels,
        "training": {
            "runtime_seconds": round(time.time() - started, 2),
            "train_samples_per_second": result.metrics.get("train_samples_per_second"),
            "batch_size": batch.size,
            "batch_size_choice": batch.to_json(),
            "optimizer": recipe.train.optimizer,
            "global_steps": trainer.state.global_step,
            "epochs_completed": trainer.state.epoch,
            "stopped_early": trainer.state.global_step < trainer.state.max_steps,
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "best_metric": {metric: trainer.state.best_metric} if has_eval else None,
            "parameters": total_parameters,
            "trainable_parameters": trainer_trainable(trainer) or trainable_parameters,
            "device": device.type,
            "processes": trainer.args.world_size,
            "precision": resolve_precision(recipe.train.precision, device),
            "train_examples": len(data.train),
            "class_weights": dict(zip(data.labels, class_weights, strict=True)) if class_weights else None,
        },
    }
    if domain.report:
        metrics["domain"] = domain.report
    multilabel = recipe.task == "multilabel"
    if tagging:  # entity-level metrics; calibration and error analysis are about whole-text classes
        temperature, thresholds = 1.0, None
        for role, split in (("validation", data.validation), ("test", data.test)):
            if split is not None:
                metrics[role] = _evaluate_tagging(trainer, tokenizer, tokenized[role], split, data.labels, role,
                                                  layout.test_predictions_jsonl if role == "test" else None,
                                                  recipe.train.max_length)
    else:
        temperature, thresholds = _evaluate_texts(trainer, recipe, data, tokenized, layout, metrics)
    if multilabel and not layout.thresholds.is_file():
        task.write_thresholds(layout.thresholds, data.labels, thresholds)
    metrics["training"]["temperature"] = temperature if recipe.task == "classification" else None
    if multilabel:
        metrics["training"]["thresholds"] = dict(zip(data.labels, thresholds, strict=True))
    artifacts.write_json(layout.metrics, metrics)
    _write_plots(layout, trainer.state.log_history, metrics, metric,
                 data.labels if recipe.task == "classification" else None)
    del trainer, model  # the finishing steps reload the saved model; free the training copy first
    if not distributed.writes_run(layout):
        return Run(layout.root, recipe, metrics)  # the merge and the finishing steps read rank 0's files
    if recipe.peft.method in MERGEABLE:  # every consumer of model/ then works unchanged (see models/peft.py)
        artifacts.write_directory(layout.model, functools.partial(write_merged_model, layout.root))
    finish_run(layout, recipe, data.test, on_warnings)
    return Run(layout.root, recipe, metrics)


def _evaluate_texts(trainer: Trainer, recipe: Recipe, data: PreparedData, tokenized: dict[str, Any],
                    layout: RunLayout, metrics: dict[str, Any]) -> tuple[float, list[float] | None]:
    """Validation and test metrics of a whole-text task, with the temperature (classification) or per-label
    thresholds (multilabel) fitted on validation; returns (temperature, thresholds)."""
    task = get_task(recipe.task)
    spec = recipe.data
    multilabel = recipe.task == "multilabel"
    temperature = 1.0
    thresholds: list[float] | None = [0.5] * len(data.labels) if multilabel else None
    for role, split in (("validation", data.validation), ("test", data.test)):
        if split is None:
            continue
        output = trainer.predict(tokenized[role], metric_key_prefix=role)
        logits = np.asarray(output.predictions)
        truth = np.asarray(split[LABEL_FIELD])
        if not np.array_equal(np.asarray(output.label_ids).reshape(truth.shape), truth):
            raise TuneforgeError(f"predictions on the {role} split came back out of order",
                                 fix="report this as a bug; run with train.group_by_length: false meanwhile")
        if role == "validation" and multilabel:
            thresholds = task.tune_thresholds(logits, truth)
        if multilabel:  # written before the test split is scored, with 0.5 each when nothing was tuned
            task.write_thresholds(layout.thresholds, data.labels, thresholds)
        elif role == "validation" and data.labels is not None and recipe.calibration.temperature_scaling:
            temperature = fit_temperature(logits, truth)
            write_temperature(layout.calibration, temperature)
        texts = split[spec.text_column]
        pairs = split[spec.text_pair_column] if spec.text_pair_column else None
        sensitive = {name: split[name] for name in recipe.fairness.sensitive_columns
                     if name in split.column_names}
        metrics[role] = analyse_predictions(recipe, data.labels, logits, truth, texts, pairs, temperature,
                                            sensitive, thresholds=thresholds)
        metrics[role]["loss"] = output.metrics.get(f"{role}_loss")
        if role == "test" and multilabel:
            truths = ["|".join(names) for names in _multilabel_names(split[LABEL_FIELD], data.labels)]
            _write_predictions(layout.test_predictions, texts, truths,
                               task.decode(logits, data.labels, thresholds))
        elif role == "test":
            scaled = logits / temperature if data.labels is not None else logits
            _write_predictions(layout.test_predictions, texts, split[spec.label_column],
                               task.decode(scaled, data.labels))
    return temperature, thresholds


def _evaluate_tagging(trainer: Trainer, tokenizer: Any, tokenized: Any, split: Any, labels: list[str], role: str,
                      predictions_path: Path | None, max_length: int) -> dict[str, Any]:
    """Entity-level metrics of one split and, for the test split, one JSON line per sentence with its words,
    true and predicted tags and predicted entities."""
    task = get_task("token-classification")
    output = trainer.predict(tokenized, metric_key_prefix=role)
    logits, label_ids = np.asarray(output.predictions), np.asarray(output.label_ids)
    result = task.compute_metrics(logits, label_ids, labels)
    result["loss"] = output.metrics.get(f"{role}_loss")
    if predictions_path is not None:
        words, tags = list(split[TOKEN_FIELD]), list(split[TAG_FIELD])
        encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
        rows = []
        for index, (sentence, truth) in enumerate(zip(words, tags, strict=True)):
            word_ids = encoded.word_ids(index)
            decoded = decode_words(logits[index][:len(word_ids)], word_ids, sentence, labels)
            rows.append({"tokens": sentence, "tags": truth, "predicted": decoded["tags"],
                         "entities": decoded["entities"]})
        artifacts.write_text(predictions_path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return result


def _multilabel_names(targets: list[list[float]], labels: list[str]) -> list[list[str]]:
    """Multi-hot rows back to label names, for the predictions file's truth column."""
    return [[name for name, value in zip(labels, row, strict=True) if value >= 0.5] for row in targets]


def save_trained(trainer: Trainer, tokenizer: Any, recipe: Recipe, layout: RunLayout) -> None:
    """The trained weights into the run: the adapter alone for PEFT runs, otherwise the whole model."""
    if recipe.peft.enabled:
        trained = trainer.accelerator.unwrap_model(trainer.model)
        artifacts.write_directory(layout.adapter, functools.partial(save_adapter, trained, tokenizer, recipe.task))
    else:
        artifacts.write_directory(layout.model, functools.partial(_save_model, trainer, tokenizer))


def _save_model(trainer: Trainer, tokenizer: Any, folder: Path) -> None:
    """The Transformers layout (config, safetensors, tokenizer) and nothing pickled, so any tool can load it."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))


def trainer_trainable(trainer: Trainer) -> int:
    return sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)


def _length_statistics(tokenized: dict[str, Any], max_length: int) -> dict[str, dict[str, float]]:
    """Tokens per text per split, and how many texts hit max_length and were cut."""
    stats = {}
    for role, split in tokenized.items():
        lengths = np.asarray([len(ids) for ids in split["input_ids"]])
        stats[role] = {"mean": float(lengths.mean()), "p50": float(np.percentile(lengths, 50)),
                       "p95": float(np.percentile(lengths, 95)), "max": int(lengths.max()),
                       "truncated_share": float((lengths >= max_length).mean())}
    return stats


def _write_data_summary(layout: RunLayout, data: PreparedData, class_weights: list[float] | None,
                        tokenized: dict[str, Any], max_length: int) -> None:
    summary = {
        "sources": data.sources,
        "rows": {role: len(split) for role, split in (("train", data.train), ("validation", data.validation),
                                                       ("test", data.test)) if split is not None},
        "labels": data.labels,
        "train_class_counts": data.class_counts() or None,
        "class_weights": (dict(zip(data.labels, class_weights, strict=True))
                          if class_weights and data.labels else None),
        "text_lengths": _length_statistics(tokenized, max_length),
        "mitigation": data.mitigation,
        "augmentation": data.augmentation,
        "imbalance": getattr(data, "imbalance", None),
        "cleaning": ({role: {k: v for k, v in report.items() if k != "rows"}
                      for role, report in data.cleaning.items()} if getattr(data, "cleaning", None) else None),
        "warnings": [str(w) for w in data.warnings],
    }
    artifacts.write_json(layout.data_summary, summary)
    if getattr(data, "cleaning", None):  # every row cleaning dropped, flagged or masked, with its reason
        artifacts.write_json(layout.root / "data_report.json", data.cleaning)


def _write_plots(layout: RunLayout, history: list[dict[str, Any]], metrics: dict[str, Any], metric: str,
                 labels: list[str] | None) -> None:
    plots.training_curve(history, metric, layout.training_curve)
    if labels is None:
        return
    for role in ("test", "validation"):
        if role in metrics:
            matrix = metrics[role]["confusion_matrix"]["matrix"]
            plots.confusion_matrix(matrix, labels, layout.confusion_matrix, f"Confusion matrix ({role})")
            reliability = (metrics[role].get("calibration") or {}).get("reliability")
            if reliability:
                reliability_diagram(reliability, layout.reliability_diagram, f"Reliability ({role})")
            return
